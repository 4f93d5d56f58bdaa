"""Checkpoint integrity: digests verified on restore, corruption vs I/O errors, no fresh start
over a workdir that held checkpoints. The Checkpointer runs on a small state in-process."""
import errno
import logging
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import train_fakes
from plm_jax.train import checkpointing, trainer


def _state(seed):
  rng = np.random.default_rng(seed)
  return {"params": {"dense": {"kernel": jnp.asarray(rng.normal(size=(16, 24)), jnp.float32),
                               "bias": jnp.asarray(rng.normal(size=(24,)), jnp.float32)}},
          "opt_state": {"mu": jnp.asarray(rng.normal(size=(16, 24)), jnp.float32),
                        "count": jnp.asarray(seed, jnp.int32)},
          "step": jnp.asarray(seed, jnp.int32)}


def _abstract(state):
  return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)


def _save(workdir, steps):
  ckpt = checkpointing.Checkpointer(workdir, keep=5)
  for step in steps:
    ckpt.save(step, _state(step), {"batches_consumed": 10 * step, "seed": 0})
  ckpt.close()


def _restore(workdir, allow_fresh_start=False):
  ckpt = checkpointing.Checkpointer(workdir, keep=5, allow_fresh_start=allow_fresh_start)
  try:
    return ckpt.restore_latest(_abstract(_state(0)))
  finally:
    ckpt.close()


def _bitwise_equal(a, b):
  la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
  return len(la) == len(lb) and all(
      np.asarray(x).dtype == np.asarray(y).dtype and
      np.asarray(x).tobytes() == np.asarray(y).tobytes() for x, y in zip(la, lb))


def _files(root):
  return sorted(os.path.relpath(os.path.join(d, f), root)
                for d, _, fs in os.walk(root) for f in fs)


def _snapshot(root):
  out = {}
  for rel in _files(root):
    with open(os.path.join(root, rel), "rb") as f:
      out[rel] = f.read()
  return out


def _flip_each_file(tmp_path, caplog, fractions):
  pristine = str(tmp_path / "pristine")
  _save(pristine, [1, 2])
  step_dir = os.path.join("checkpoints", "2")
  files = [f for f in _files(pristine) if f.startswith(step_dir + os.sep)]
  assert any("/d/" in f for f in files), files      # array data files are among them
  outcomes = {"harmless": 0, "fell back": 0}
  for rel in files:
    size = os.path.getsize(os.path.join(pristine, rel))
    for pos in sorted({min(int(size * q), size - 1) for q in fractions}):
      work = str(tmp_path / "work")
      shutil.rmtree(work, ignore_errors=True)
      shutil.copytree(pristine, work)
      with open(os.path.join(work, rel), "r+b") as f:
        f.seek(pos)
        byte = f.read(1)
        f.seek(pos)
        f.write(bytes([byte[0] ^ 0x5A]))
      caplog.clear()
      with caplog.at_level(logging.WARNING):
        step, state, data = _restore(work)
      where = f"{rel}@{pos}"
      if step == 2:
        assert _bitwise_equal(state, _state(2)), f"{where}: changed state restored silently"
        assert data["batches_consumed"] == 20, where
        outcomes["harmless"] += 1
      else:
        assert step == 1, where
        assert _bitwise_equal(state, _state(1)), where
        assert data["batches_consumed"] == 10, where
        warned = [r.getMessage() for r in caplog.records if "is corrupt" in r.getMessage()]
        assert warned and os.path.join(work, step_dir) in warned[0], (where, warned)
        assert os.path.isdir(os.path.join(work, checkpointing.UNREADABLE_DIR, "2")), where
        outcomes["fell back"] += 1
  print(f"{len(files)} files; {outcomes}")
  assert outcomes["fell back"] > 0


def test_a_byte_flip_in_each_file_is_harmless_or_detected_and_falls_back(tmp_path, caplog):
  """The middle and the last byte of every file of a checkpoint, array data included."""
  _flip_each_file(tmp_path, caplog, (0.5, 1.0))


@pytest.mark.slow
def test_byte_flips_all_over_each_file(tmp_path, caplog):
  _flip_each_file(tmp_path, caplog, (0.0, 0.1, 0.25, 1 / 3, 0.5, 2 / 3, 0.75, 0.9, 1.0))


def test_changed_array_value_is_detected_by_its_digest(tmp_path, caplog):
  """A flip that decodes fine (raw array bytes) is caught by the digest, naming the array."""
  workdir = str(tmp_path)
  _save(workdir, [1, 2])
  ckpt = checkpointing.Checkpointer(workdir, keep=5)
  # Rewrite step 2's state with different values but keep its integrity record.
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  state_dir = os.path.join(workdir, "checkpoints", "2", "state")
  shutil.rmtree(state_dir)
  changed = _state(2)
  changed["params"]["dense"]["bias"] = changed["params"]["dense"]["bias"].at[3].add(1.0)
  writer = ocp.StandardCheckpointer()
  writer.save(state_dir, changed)
  writer.wait_until_finished()
  ckpt.close()
  with caplog.at_level(logging.WARNING):
    step, state, _ = _restore(workdir)
  assert step == 1 and _bitwise_equal(state, _state(1))
  assert any("params/dense/bias does not match its digest" in r.getMessage()
             for r in caplog.records)


class _FlakyCheckpointer(checkpointing.Checkpointer):
  """Reads fail with EIO, as a storage hiccup would."""

  def _read(self, step, **items):
    raise OSError(errno.EIO, "Input/output error", os.path.join(self.directory, str(step)))


def test_transient_io_error_stops_without_moving_anything(tmp_path):
  workdir = str(tmp_path)
  _save(workdir, [1, 2])
  before = _snapshot(workdir)
  ckpt = _FlakyCheckpointer(workdir, keep=5)
  with pytest.raises(checkpointing.CheckpointIOError, match="nothing was moved"):
    ckpt.restore_latest(_abstract(_state(0)))
  ckpt.close()
  assert _snapshot(workdir) == before
  assert checkpointing.is_transient(OSError(errno.EIO, "x"))
  assert not checkpointing.is_transient(FileNotFoundError(errno.ENOENT, "x"))
  assert not checkpointing.is_transient(ValueError("Unexpected end of data"))


def _corrupt_all(workdir):
  for rel in _files(workdir):
    if "/state/" in rel and "/d/" in rel:
      with open(os.path.join(workdir, rel), "r+b") as f:
        f.seek(os.path.getsize(os.path.join(workdir, rel)) // 2)
        f.write(b"\x00\xff\x00\xff")


def test_all_checkpoints_corrupt_twice_same_error_and_second_run_changes_nothing(tmp_path):
  workdir = str(tmp_path / "w")
  c = train_fakes.fake_config(num_steps=2, checkpoint_every=1, eval_every=-1,
                              params_export=False)
  trainer.train_and_evaluate(c, workdir, devices=jax.devices()[:1])
  _corrupt_all(workdir)
  errors = []
  for _ in range(2):
    before = _snapshot(workdir)
    with pytest.raises(checkpointing.CheckpointError) as e:
      trainer.train_and_evaluate(c, workdir, devices=jax.devices()[:1])
    errors.append(str(e.value))
  assert errors[0] == errors[1]
  assert "none can be restored" in errors[0] and "allow_fresh_start" in errors[0]
  assert "\n" not in errors[0]
  assert _snapshot(workdir) == before                 # the second run wrote nothing
  assert sorted(os.listdir(os.path.join(workdir, checkpointing.UNREADABLE_DIR))) == ["1", "2"]


def test_emptied_checkpoint_directory_is_not_a_fresh_start(tmp_path):
  workdir = str(tmp_path)
  _save(workdir, [1])
  shutil.rmtree(os.path.join(workdir, "checkpoints", "1"))
  with pytest.raises(checkpointing.CheckpointError, match="has held checkpoints"):
    _restore(workdir)
  assert _restore(workdir, allow_fresh_start=True) is None
  assert _restore(str(tmp_path / "never_used")) is None
