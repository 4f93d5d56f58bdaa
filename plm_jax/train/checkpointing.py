"""Orbax checkpoints of the train state plus the data iterator's state.

Layout: `workdir/checkpoints/<step>/{state,data,integrity,data_iterator}`:
  state          the TrainState (StandardSave; restored straight into its sharded layout)
  data           JSON {'batches_consumed': int, 'seed': int}: the iterator's position as a
                 count of host-local batches of the same stream
  integrity      JSON digests of every array and of `data` (plm_jax.train.integrity)
  data_iterator  each process's tf.data iterator state, with its own CRC-32 digests
                 (plm_jax.train.data_state): resume restores it, in a time that does not
                 grow with the step; without it (older checkpoints, a pipeline that cannot
                 be checkpointed, such as a from_generator source) the trainer replays
                 `batches_consumed` batches, after a WARNING line
plus `workdir/checkpoint_history.txt`, written with the first checkpoint: this
workdir has held checkpoints.

Resume rules:
  * the latest step is restored automatically;
  * before restoring, every parameter's saved shape is compared with the
    config's (one-line ValueError naming the parameter and both shapes);
  * every restored array is checked against its digest, and this process's iterator
    state against its manifest (whose position must be the step's);
  * a corrupt step (digest mismatch, damaged metadata, undecodable data) is
    moved to `workdir/checkpoints_unreadable/` with a WARNING naming the
    failure, and the previous one is tried;
  * an I/O error that may be transient (EIO, permission, timeouts...) stops the
    run with a one-line error and moves nothing;
  * a workdir that has ever held checkpoints (checkpoint_history.txt, or anything in
    checkpoints_unreadable/) never starts fresh when none can be restored: every
    run stops with the same one-line error until the user repairs the workdir
    or sets config.train.allow_fresh_start=True.
Saves are atomic (Orbax writes a temporary directory and renames it): the iterator
state is an item of the same save, so a step never holds a train state without the
iterator state it was saved with.
"""
from __future__ import annotations

import errno
import os
import shutil
from typing import Any, Dict, Optional, Tuple

from absl import logging
import jax
import orbax.checkpoint as ocp

from plm_jax.train import data_state, integrity

CHECKPOINT_DIR = "checkpoints"
UNREADABLE_DIR = "checkpoints_unreadable"
HISTORY_FILE = "checkpoint_history.txt"


class CheckpointError(ValueError):
  """A checkpoint problem the user has to resolve (bad workdir/config)."""


class CheckpointIOError(CheckpointError):
  """A checkpoint could not be read for a reason that is not (known to be) corruption."""


# errno values of a read that may succeed later or that is not about the bytes on disk.
_TRANSIENT_ERRNOS = {errno.EIO, errno.EAGAIN, errno.EBUSY, errno.ETIMEDOUT, errno.EINTR,
                     errno.EACCES, errno.EPERM, errno.ENOMEM, errno.ENFILE, errno.EMFILE,
                     errno.ESTALE, errno.ECONNRESET, errno.ECONNABORTED, errno.ENETDOWN,
                     errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENOLINK}
# Status codes tensorstore puts in its messages for the same situations.
_TRANSIENT_STATUS = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "PERMISSION_DENIED",
                     "RESOURCE_EXHAUSTED", "ABORTED", "Input/output error")


def is_transient(error: BaseException) -> bool:
  """Whether a read failure may be an I/O problem rather than a damaged checkpoint."""
  seen = set()
  e: Optional[BaseException] = error
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno in _TRANSIENT_ERRNOS:
      return True
    if not isinstance(e, OSError) and any(s in str(e) for s in _TRANSIENT_STATUS):
      return True
    e = e.__cause__ or e.__context__
  return False


def prepare_workdir(workdir: str) -> None:
  """Creates the workdir; a file in its place or a read-only one is a one-line CheckpointError."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise CheckpointError(f"--workdir {workdir} is a file, not a directory")
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test.{os.getpid()}")
    with open(probe, "w"):
      pass
    os.remove(probe)
  except OSError as e:
    raise CheckpointError(f"--workdir {workdir} is not writable ({e.strerror or e}); a run "
                          f"writes checkpoints there: choose another --workdir") from None


def _flat_shapes(tree: Any) -> Dict[str, Tuple[int, ...]]:
  return {name: tuple(leaf.shape) for name, leaf in integrity.flat_leaves(tree).items()}


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

  def __init__(self, workdir: str, keep: int, allow_fresh_start: bool = False):
    self.workdir = workdir
    self.allow_fresh_start = allow_fresh_start
    self.directory = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
    self.unreadable = os.path.join(os.path.abspath(workdir), UNREADABLE_DIR)
    options = ocp.CheckpointManagerOptions(max_to_keep=max(int(keep), 1), create=True)
    # Handlers named up front, so metadata can be read before any restore.
    self.manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "data": ocp.JsonCheckpointHandler(),
                       "integrity": ocp.JsonCheckpointHandler(),
                       data_state.ITEM: data_state.IteratorHandler()})
    # This process's iterator state in the step restore_latest returned (data_state.find).
    self.restored_iterator: Optional[data_state.Saved] = None

  def steps(self):
    return sorted(self.manager.all_steps())

  def save(self, step: int, state: Any, data_position: Dict[str, Any],
           iterator: Optional[data_state.TrainIterator] = None) -> None:
    """One step; `iterator` (at data_position's batches_consumed) is saved with it."""
    record = integrity.make_record(state, data_position)
    self._write_history(step)
    items = dict(state=ocp.args.StandardSave(state),
                 data=ocp.args.JsonSave(dict(data_position)),
                 integrity=ocp.args.JsonSave(record))
    if iterator is not None:
      items[data_state.ITEM] = data_state.IteratorSave(
          iterator, int(data_position["batches_consumed"]))
    self.manager.save(int(step), args=ocp.args.Composite(**items))

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()

  # ---- history: has this workdir ever held checkpoints? ------------------------------
  def _write_history(self, step: int) -> None:
    path = os.path.join(self.workdir, HISTORY_FILE)
    if jax.process_index() == 0 and not os.path.exists(path):
      with open(path, "w") as f:
        f.write(f"checkpoints were written here, the first at step {step}\n")

  def has_history(self) -> bool:
    return (os.path.exists(os.path.join(self.workdir, HISTORY_FILE))
            or (os.path.isdir(self.unreadable) and bool(os.listdir(self.unreadable))))

  def _none_restorable(self) -> CheckpointError:
    return CheckpointError(
        f"workdir {self.workdir}: it has held checkpoints but none can be restored (the "
        f"unreadable ones are in {self.unreadable}); repair or remove them, use a new --workdir, "
        f"or set --config.train.allow_fresh_start=True to start from scratch here")

  # ---- restore -----------------------------------------------------------------------
  def _read(self, step: int, **items) -> Dict[str, Any]:
    """The named items of one step (the one place that reads checkpoint data)."""
    return dict(self.manager.restore(step, args=ocp.args.Composite(**items)))

  def _restore_step(self, step: int, abstract_state: Any):
    where = os.path.join(self.directory, str(step))
    record = None
    if os.path.isdir(os.path.join(where, "integrity")):
      record = integrity.check_record_format(
          self._read(step, integrity=ocp.args.JsonRestore())["integrity"], where)
    else:
      logging.warning("checkpoint %s has no integrity record (written by an older plm_jax); "
                      "restoring it unverified", where)
    metadata = self.manager.item_metadata(step)["state"]
    saved = getattr(metadata, "tree", metadata)
    if saved is None:
      raise integrity.CorruptCheckpoint(f"{where}: no state metadata")
    if record is not None:
      integrity.check_metadata(record, saved, where)
    check_shapes(saved, abstract_state, where)  # config errors propagate, no fallback
    restored = self._read(step, state=ocp.args.StandardRestore(abstract_state),
                          data=ocp.args.JsonRestore())
    data = restored["data"]
    if not isinstance(data, dict) or not isinstance(data.get("batches_consumed"), int):
      raise integrity.CorruptCheckpoint(f"{where}: the data-iterator position is damaged")
    if record is not None:
      integrity.check_values(record, restored["state"], data, where)
    self.restored_iterator = data_state.find_everywhere(where, data["batches_consumed"])
    return restored["state"], dict(data)

  def restore_latest(self, abstract_state: Any) -> Optional[Tuple[int, Any, Dict[str, Any]]]:
    """(step, state, data_position) of the newest restorable checkpoint, or None for a
    workdir that never held one (or allow_fresh_start)."""
    steps = self.steps()
    for step in reversed(steps):
      bad = os.path.join(self.directory, str(step))
      try:
        state, data = self._restore_step(step, abstract_state)
        return step, state, data
      except CheckpointError:
        raise
      except Exception as e:  # pylint: disable=broad-except
        msg = " ".join(str(e).split()) or type(e).__name__
        if is_transient(e):
          raise CheckpointIOError(
              f"checkpoint {bad} could not be read ({type(e).__name__}: {msg[:300]}); this "
              f"looks like an I/O problem, not corruption, so nothing was moved: rerun when "
              f"the storage is healthy") from None
        logging.warning("checkpoint %s is corrupt (%s: %s); moving it to %s and trying the "
                        "previous one", bad, type(e).__name__, msg[:300], self.unreadable)
        self._quarantine(step)
    if self.has_history():
      if not self.allow_fresh_start:
        raise self._none_restorable()
      logging.warning("workdir %s: no checkpoint can be restored; starting from scratch as "
                      "config.train.allow_fresh_start asks (unreadable ones stay in %s)",
                      self.workdir, self.unreadable)
    return None

  def _quarantine(self, step: int) -> None:
    """Moves a corrupt step out of the way so a later save of that step works."""
    if jax.process_index() == 0:
      src = os.path.join(self.directory, str(step))
      dst = os.path.join(self.unreadable, str(step))
      suffix = 0
      while os.path.exists(dst):
        suffix += 1
        dst = os.path.join(self.unreadable, f"{step}.{suffix}")
      try:
        os.makedirs(self.unreadable, exist_ok=True)
        shutil.move(src, dst)
      except OSError as e:
        raise CheckpointError(f"checkpoint {src} is corrupt and cannot be moved to {dst} "
                              f"({e.strerror or e}); move it away by hand") from None
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
      multihost_utils.sync_global_devices(f"plm_jax_quarantine_{step}")
    self.manager.reload()
