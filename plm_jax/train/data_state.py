"""The train data iterator's own position, checkpointed with the train state (one per host).

Resume restores the tf.data iterator itself (as t5x does: `tf.train.Checkpoint(ds=iterator)`)
instead of replaying the pipeline up to the consumed batches, so its cost does not grow with
the step. Each checkpoint step holds the item

  checkpoints/<step>/data_iterator/
    process_<i>_of_<n>.json     manifest: {"version": 1, "format": "tf.data",
                                "batches_consumed": N, "files": {name: crc32}}, or
                                {"version": 1, "format": "none", "reason": why not saved}
    process_<i>_of_<n>/iterator.index, iterator.data-00000-of-00001   (tf.train.Checkpoint)

Every process writes and reads only its own pair (the name carries its index and the process
count). The item is saved by `IteratorHandler` inside the same Orbax Composite save as the
train state, so it is written into the step's temporary directory and committed by the same
finalize (rename, after Orbax's barrier across processes): a crash mid-save leaves no step, and
a step's iterator is always the one of its train state (the manifest's batches_consumed must
equal the step's `data` record, or the step is corrupt). The handler serializes the iterator
while `save()` runs (so the loop cannot advance it meanwhile), into a local staging directory
`plm_jax_iterator_<pid>_*` under the system temp dir, and copies it into the step once Orbax
has created the step's directory. A process killed in between leaves its staging directory
behind; the next TrainIterator removes those of processes that no longer exist.

On restore, the manifest's CRC-32 of every file is checked (a mismatch is a CorruptCheckpoint,
handled like any corrupt step: moved away, the previous step tried). Without iterator state
(a checkpoint from an older plm_jax, another process count, or a pipeline that cannot be
checkpointed) the trainer replays the consumed batches (exact, O(steps)) after one WARNING
line saying how many and why.

External state: tf.data refuses to serialize an iterator whose pipeline holds a function it
considers stateful (`tf.data.Dataset.from_generator`, whose position lives in a Python
generator; a `tf.numpy_function(..., stateful=True)`). The data modules' numpy functions are
pure given their inputs (the per-element seqio seeds come in as tensors) and are declared
`stateful=False`, which is what lets tf.data save their pipelines; `_options()` sets the
external-state policy to FAIL deliberately (never WARN / IGNORE): with those, a generator's
iterator would be "saved" without its position and a resume would silently restart the
stream. FAIL makes such a source fall back to replay instead.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
import zlib
from typing import Any, Dict, Optional

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp
import tensorflow as tf

from plm_jax.train import integrity

ITEM = "data_iterator"
VERSION = 1
_PREFIX = "iterator"


def process_name(index: Optional[int] = None, count: Optional[int] = None) -> str:
  index = jax.process_index() if index is None else index
  count = jax.process_count() if count is None else count
  return f"process_{index}_of_{count}"


def _options() -> tf.data.Options:
  options = tf.data.Options()
  options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.FAIL
  return options


def _file_crc(path: str) -> str:
  crc = 0
  with tf.io.gfile.GFile(path, "rb") as f:
    while True:
      chunk = f.read(1 << 22)
      if not chunk:
        return f"{crc:08x}"
      crc = zlib.crc32(chunk, crc)


_STAGING_PREFIX = "plm_jax_iterator_"


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True          # someone else's live process
  return True


def remove_stale_staging(root: Optional[str] = None) -> int:
  """Removes the staging directories of processes that no longer exist (a kill between
  serializing an iterator and committing it); returns how many."""
  root = root or tempfile.gettempdir()
  removed = 0
  for name in os.listdir(root):
    if not name.startswith(_STAGING_PREFIX):
      continue
    pid = name[len(_STAGING_PREFIX):].split("_", 1)[0]
    if pid.isdigit() and not _pid_alive(int(pid)):
      shutil.rmtree(os.path.join(root, name), ignore_errors=True)
      removed += 1
  return removed


class TrainIterator:
  """Host-local numpy batches of a tf.data pipeline, whose position can be saved/restored."""

  def __init__(self, dataset: tf.data.Dataset, split: str = "train"):
    self.split = split
    self.dataset = dataset.with_options(_options())
    self._it = iter(self.dataset)
    self._warned = False
    remove_stale_staging()

  def __iter__(self):
    return self

  def _next_tensors(self):
    try:
      return next(self._it)
    except StopIteration:
      raise ValueError(f"data ({self.split}): the dataset ran out of batches") from None

  def __next__(self) -> Dict[str, np.ndarray]:
    return tf.nest.map_structure(lambda t: t.numpy(), self._next_tensors())

  def replay(self, batches: int) -> None:
    """Advances past `batches` batches by reading them (the fallback: exact, O(batches)). The
    same iterator is advanced (not a `dataset.skip`), so that its later saves restore into a
    fresh iterator of the same pipeline."""
    for _ in range(batches):
      self._next_tensors()

  def reset(self) -> None:
    self._it = iter(self.dataset)

  def stage(self, batches_consumed: int) -> "_Staged":
    """Serializes the iterator now, into a local temporary directory (the step's directory
    may not exist yet: Orbax creates it asynchronously); `_Staged.commit` moves it there."""
    staging = tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{os.getpid()}_")
    try:
      tf.train.Checkpoint(ds=self._it).write(os.path.join(staging, _PREFIX))
    except (tf.errors.FailedPreconditionError, tf.errors.UnimplementedError) as e:
      shutil.rmtree(staging, ignore_errors=True)
      reason = " ".join(str(e.message).split())[:300]
      if not self._warned:
        self._warned = True
        logging.warning("the %s data iterator cannot be checkpointed (%s); checkpoints hold "
                        "its position only as a batch count, and a resume replays the "
                        "consumed batches", self.split, reason)
      return _Staged(None, {"version": VERSION, "format": "none", "reason": reason})
    files = {f: _file_crc(os.path.join(staging, f)) for f in sorted(os.listdir(staging))}
    return _Staged(staging, {"version": VERSION, "format": "tf.data",
                             "batches_consumed": int(batches_consumed), "files": files})

  def restore(self, prefix: str) -> None:
    tf.train.Checkpoint(ds=self._it).read(prefix).assert_consumed()


# ---- the Orbax item ----------------------------------------------------------------------
@dataclasses.dataclass
class _Staged:
  staging: Optional[str]          # local directory holding the tf.train.Checkpoint files
  manifest: Dict[str, Any]

  def commit(self, directory: str) -> None:
    """This process's files, then its manifest, into the item `directory`."""
    name = process_name()
    tf.io.gfile.makedirs(directory)
    if self.staging is not None:
      tf.io.gfile.makedirs(os.path.join(directory, name))
      for f in self.manifest["files"]:
        tf.io.gfile.copy(os.path.join(self.staging, f), os.path.join(directory, name, f),
                         overwrite=True)
      shutil.rmtree(self.staging, ignore_errors=True)
    with tf.io.gfile.GFile(os.path.join(directory, name + ".json"), "w") as f:
      f.write(json.dumps(self.manifest, sort_keys=True))


class IteratorHandler(ocp.AsyncCheckpointHandler):
  """Saves this process's iterator into the step's (temporary) item directory: serialized
  when `async_save` is called (before CheckpointManager.save returns), written by the commit
  future once Orbax has created the directory. Restores go through `find` +
  `TrainIterator.restore` (the iterator is built after the state is read)."""

  async def async_save(self, directory, args: "IteratorSave"):
    staged = args.iterator.stage(args.batches_consumed)

    async def commit():
      staged.commit(str(directory))

    return [ocp.future.CommitFutureAwaitingContractedSignals(commit(),
                                                             name="plm_jax_iterator_save")]

  def save(self, directory, args: "IteratorSave") -> None:
    staged = args.iterator.stage(args.batches_consumed)
    staged.commit(str(directory))

  def restore(self, directory, args: Any = None) -> None:
    raise NotImplementedError("restore the data iterator with plm_jax.train.data_state.find")

  def metadata(self, directory) -> None:
    return None

  def finalize(self, directory) -> None:
    pass

  def close(self) -> None:
    pass


@ocp.args.register_with_handler(IteratorHandler, for_save=True)
@dataclasses.dataclass
class IteratorSave(ocp.args.CheckpointArgs):
  iterator: TrainIterator
  batches_consumed: int


@ocp.args.register_with_handler(IteratorHandler, for_restore=True)
@dataclasses.dataclass
class IteratorRestore(ocp.args.CheckpointArgs):
  """Registered because Orbax needs a pair; restores use `find` (see IteratorHandler)."""


# ---- restore -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Saved:
  """This process's iterator state in one step: `prefix` to restore from, or None and why."""
  prefix: Optional[str]
  reason: str = ""


def _corrupt(where: str, what: str) -> integrity.CorruptCheckpoint:
  return integrity.CorruptCheckpoint(f"{where}: the data iterator state {what}")


def find(step_dir: str, batches_consumed: int) -> Saved:
  """This process's saved iterator in `step_dir`, its files verified against the manifest.

  Raises CorruptCheckpoint for a damaged manifest, a file that does not match its CRC-32, or a
  position other than the step's; returns Saved(None, reason) when there is none to restore."""
  item = os.path.join(step_dir, ITEM)
  name = process_name()
  manifest_path = os.path.join(item, name + ".json")
  if not tf.io.gfile.isdir(item):
    return Saved(None, "the checkpoint holds no iterator state (written by an older plm_jax)")
  if not tf.io.gfile.exists(manifest_path):
    others = sorted(f[:-5] for f in tf.io.gfile.listdir(item) if f.endswith(".json"))
    return Saved(None, f"the checkpoint holds no iterator state for {name}"
                       + (f" (it has {', '.join(others[:4])})" if others else ""))
  try:
    with tf.io.gfile.GFile(manifest_path, "r") as f:
      manifest = json.loads(f.read())
  except (ValueError, UnicodeDecodeError) as e:
    raise _corrupt(step_dir, f"manifest {name}.json cannot be read ({e})") from None
  if (not isinstance(manifest, dict) or manifest.get("version") != VERSION
      or manifest.get("format") not in ("tf.data", "none")):
    raise _corrupt(step_dir, f"manifest {name}.json is damaged")
  if manifest["format"] == "none":
    return Saved(None, f"the pipeline's iterator could not be checkpointed "
                       f"({manifest.get('reason', '?')})")
  files = manifest.get("files")
  if (manifest.get("batches_consumed") != batches_consumed or not isinstance(files, dict)
      or not files):
    raise _corrupt(step_dir, f"manifest {name}.json does not match the step (its position "
                             f"{manifest.get('batches_consumed')!r}, the step's "
                             f"{batches_consumed})")
  for fname, crc in sorted(files.items()):
    path = os.path.join(item, name, fname)
    if not tf.io.gfile.exists(path):
      raise _corrupt(step_dir, f"file {name}/{fname} is missing")
    if _file_crc(path) != crc:
      raise _corrupt(step_dir, f"file {name}/{fname} does not match its digest")
  return Saved(os.path.join(item, name, _PREFIX))


def find_everywhere(step_dir: str, batches_consumed: int) -> Saved:
  """`find` on every process, agreeing: when any process finds its state corrupt, every
  process raises CorruptCheckpoint (so all of them move on to the previous step together)."""
  try:
    found, error = find(step_dir, batches_consumed), None
  except integrity.CorruptCheckpoint as e:
    found, error = None, e
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    bad = np.asarray(multihost_utils.process_allgather(np.asarray(error is not None)))
    if error is None and bad.any():
      raise _corrupt(step_dir, f"of process {int(np.argmax(bad))} is damaged")
  if error is not None:
    raise error
  return found


def resume(iterator: TrainIterator, saved: Optional[Saved], batches_consumed: int) -> str:
  """Puts `iterator` at `batches_consumed`: restores its saved state, or replays (with a
  WARNING line saying how many batches and why). Returns 'restored' or 'replayed'."""
  if batches_consumed <= 0:
    return "restored"
  start = time.perf_counter()
  reason = "no iterator state was found" if saved is None else saved.reason
  if saved is not None and saved.prefix is not None:
    try:
      iterator.restore(saved.prefix)
      print(f"restored the {iterator.split} data iterator at batch {batches_consumed} "
            f"({process_name()}) in {time.perf_counter() - start:.2f} s", flush=True)
      return "restored"
    except (tf.errors.OpError, AssertionError, ValueError) as e:
      # Digests matched, so the files are as written: the pipeline changed (data config).
      reason = ("its saved state does not fit this pipeline (was config.data changed?): "
                + " ".join(str(e).split())[:200])
      iterator.reset()
  print(f"WARNING: resume replays {batches_consumed} batches of the {iterator.split} data "
        f"(time grows with the step): {reason}", flush=True)
  iterator.replay(batches_consumed)
  print(f"replayed {batches_consumed} {iterator.split} batches in "
        f"{time.perf_counter() - start:.1f} s", flush=True)
  return "replayed"
