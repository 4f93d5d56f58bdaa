"""Orbax checkpoints of the train state plus the data-iterator position.

Layout: `workdir/checkpoints/<step>/{state,data}`:
  state  the TrainState (StandardSave; restored straight into its sharded layout)
  data   JSON {'batches_consumed': int, 'seed': int}: the train iterator resumes
         by skipping `batches_consumed` host-local batches of the same stream.

Resume rules:
  * the latest step is restored automatically;
  * before restoring, every parameter's saved shape is compared with the
    config's (one-line ValueError naming the parameter and both shapes);
  * a step that cannot be read is moved to `workdir/checkpoints_unreadable/`
    with a WARNING and the previous one is tried; if none can be read, a
    one-line error names the workdir: a run never silently starts fresh when
    checkpoints exist.
Saves are atomic (Orbax writes a temporary directory and renames it).
"""
from __future__ import annotations

import os
import shutil
from typing import Any, Dict, Optional, Tuple

from absl import logging
import jax
import orbax.checkpoint as ocp

CHECKPOINT_DIR = "checkpoints"
UNREADABLE_DIR = "checkpoints_unreadable"


class CheckpointError(ValueError):
  """A checkpoint problem the user has to resolve (bad workdir/config)."""


def _key_name(k) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def _flat_shapes(tree: Any) -> Dict[str, Tuple[int, ...]]:
  leaves = jax.tree_util.tree_flatten_with_path(
      tree, is_leaf=lambda x: hasattr(x, "shape") and not isinstance(x, dict))[0]
  return {"/".join(_key_name(k) for k in path): tuple(leaf.shape)
          for path, leaf in leaves if hasattr(leaf, "shape")}


def check_shapes(saved: Any, target: Any, where: str) -> None:
  """Raises CheckpointError when the saved tree does not fit the config's state.

  Parameters are named with both shapes; other entries (optimizer state) point
  at config.optimizer, whose choices (clipping, LAMB/AdamW) shape that state.
  """
  saved_shapes, target_shapes = _flat_shapes(saved), _flat_shapes(target)
  prefix = f"checkpoint {where} does not match the config:"
  for name, shape in target_shapes.items():
    is_param = name.startswith("params/")
    if name not in saved_shapes:
      if is_param:
        raise CheckpointError(f"{prefix} parameter {name} is missing from the checkpoint")
      raise CheckpointError(f"{prefix} train-state entry {name} is missing from the checkpoint "
                            f"(was config.optimizer changed?)")
    if saved_shapes[name] != shape:
      kind = "parameter" if is_param else "train-state entry"
      raise CheckpointError(f"{prefix} {kind} {name} has shape {saved_shapes[name]} in the "
                            f"checkpoint but {shape} in the config")
  extra = sorted(set(saved_shapes) - set(target_shapes))
  extra_params = [n for n in extra if n.startswith("params/")]
  if extra_params:
    raise CheckpointError(f"{prefix} parameter {extra_params[0]} is in the checkpoint but not "
                          f"in the model")
  if extra:
    raise CheckpointError(f"{prefix} train-state entry {extra[0]} is in the checkpoint but not "
                          f"in the config's state (was config.optimizer changed?)")


class Checkpointer:
  """Save / restore-latest for one workdir."""

  def __init__(self, workdir: str, keep: int):
    self.workdir = workdir
    self.directory = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
    options = ocp.CheckpointManagerOptions(max_to_keep=max(int(keep), 1), create=True)
    # Handlers named up front, so metadata can be read before any restore.
    self.manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "data": ocp.JsonCheckpointHandler()})

  def steps(self):
    return sorted(self.manager.all_steps())

  def save(self, step: int, state: Any, data_position: Dict[str, Any]) -> None:
    self.manager.save(int(step), args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=ocp.args.JsonSave(dict(data_position))))

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()

  def _restore_step(self, step: int, abstract_state: Any):
    where = os.path.join(self.directory, str(step))
    metadata = self.manager.item_metadata(step)["state"]
    saved = getattr(metadata, "tree", metadata)
    if saved is None:
      raise IOError(f"no state metadata in {where}")
    check_shapes(saved, abstract_state, where)  # config errors propagate, no fallback
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=ocp.args.JsonRestore()))
    return restored["state"], dict(restored["data"])

  def restore_latest(self, abstract_state: Any) -> Optional[Tuple[int, Any, Dict[str, Any]]]:
    """(step, state, data_position) of the newest readable checkpoint, or None if none exist."""
    steps = self.steps()
    if not steps:
      return None
    for step in reversed(steps):
      try:
        state, data = self._restore_step(step, abstract_state)
        return step, state, data
      except CheckpointError:
        raise
      except Exception as e:  # pylint: disable=broad-except
        bad = os.path.join(self.directory, str(step))
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        logging.warning("checkpoint %s cannot be restored (%s: %s); moving it to %s and "
                        "trying the previous one", bad, type(e).__name__, msg[:200],
                        UNREADABLE_DIR)
        self._quarantine(step)
    raise CheckpointError(f"workdir {self.workdir}: checkpoints exist but none can be "
                          f"restored (moved to {os.path.join(self.workdir, UNREADABLE_DIR)}); "
                          f"use a new --workdir or repair them")

  def _quarantine(self, step: int) -> None:
    """Moves an unreadable step out of the way so a later save of that step works."""
    if jax.process_index() == 0:
      src = os.path.join(self.directory, str(step))
      dst_root = os.path.join(self.workdir, UNREADABLE_DIR)
      os.makedirs(dst_root, exist_ok=True)
      dst = os.path.join(dst_root, str(step))
      suffix = 0
      while os.path.exists(dst):
        suffix += 1
        dst = os.path.join(dst_root, f"{step}.{suffix}")
      shutil.move(src, dst)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
      multihost_utils.sync_global_devices(f"plm_jax_quarantine_{step}")
    self.manager.reload()
