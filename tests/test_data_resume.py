"""Constant-time resume: the train data iterator's own state is checkpointed with the train
state (plm_jax.train.data_state) and restored without replaying the stream; replay remains
for checkpoints without it (older ones, sources tf.data cannot checkpoint), with a warning.

The trainer runs in-process on the tiny fake objective (tests/train_fakes.py)."""
import logging
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow as tf

import train_fakes
from plm_jax.train import checkpointing, data_state, trainer


def _run(workdir, objective="fake_tiny_lm", **train):
  c = train_fakes.fake_config(params_export=False, **train)
  c.objective = objective
  return trainer.train_and_evaluate(c, workdir, devices=jax.devices()[:2])


def _saved_state(workdir, step):
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  return ocp.StandardCheckpointer().restore(path)


def _assert_same_state(a, b):
  la, lb = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
  assert [p for p, _ in la] == [p for p, _ in lb] and len(la) > 4
  for (path, x), (_, y) in zip(la, lb):   # params, AdamW moments, step
    assert np.asarray(x).tobytes() == np.asarray(y).tobytes(), jax.tree_util.keystr(path)


class _ReplaySpy:
  """Counts the batches replayed through TrainIterator.replay (calls through)."""

  def __init__(self, monkeypatch):
    self.batches = []
    original = data_state.TrainIterator.replay

    def replay(it, n):
      self.batches.append(n)
      return original(it, n)
    monkeypatch.setattr(data_state.TrainIterator, "replay", replay)


def test_resume_restores_the_iterator_and_an_old_checkpoint_replays(tmp_path, monkeypatch,
                                                                    capsys):
  """A workdir resumed with its iterator state (no replay at all) and a copy of it without
  that state (a checkpoint of an older plm_jax: replayed, with the warning) end bit-identical.
  (That resuming is exact against an uninterrupted run: test_train_checkpointing.py.)"""
  workdir, old = str(tmp_path / "w"), str(tmp_path / "old")
  _run(workdir, num_steps=2, checkpoint_every=2)
  item = os.path.join(workdir, "checkpoints", "2", data_state.ITEM)
  assert {"process_0_of_1", "process_0_of_1.json"} <= set(os.listdir(item))
  shutil.copytree(workdir, old)
  shutil.rmtree(os.path.join(old, "checkpoints", "2", data_state.ITEM))

  spy = _ReplaySpy(monkeypatch)
  capsys.readouterr()
  _run(workdir, num_steps=4, checkpoint_every=2)
  out = capsys.readouterr().out
  assert "restored the train data iterator at batch 2 (process_0_of_1)" in out, out
  assert "replay" not in out and spy.batches == [], out

  _run(old, num_steps=4, checkpoint_every=2)
  out = capsys.readouterr().out
  assert ("WARNING: resume replays 2 batches of the train data (time grows with the step): "
          "the checkpoint holds no iterator state (written by an older plm_jax)") in out, out
  assert spy.batches == [2]
  _assert_same_state(_saved_state(old, 4), _saved_state(workdir, 4))
  # The replayed run saved its iterator: its next resume restores it.
  assert os.path.isdir(os.path.join(old, "checkpoints", "4", data_state.ITEM))


def test_restored_iterator_yields_the_next_batches(tmp_path):
  """Saved mid-stream with the train state, restored in a new Checkpointer: the next batches
  are those the original iterator goes on to yield."""
  objective = train_fakes.FakeObjective(train_fakes.fake_config())
  original = data_state.TrainIterator(objective.get_dataset("train", 4, 0))
  for _ in range(5):
    next(original)
  state = {"w": jax.numpy.arange(3.0)}
  ckpt = checkpointing.Checkpointer(str(tmp_path), keep=2)
  ckpt.save(5, state, {"batches_consumed": 5, "seed": 0}, original)
  expected = [next(original) for _ in range(3)]   # the loop goes on while the save commits
  ckpt.close()
  ckpt = checkpointing.Checkpointer(str(tmp_path), keep=2)
  step, _, data = ckpt.restore_latest({"w": jax.ShapeDtypeStruct((3,), np.float32)})
  ckpt.close()
  assert step == 5 and ckpt.restored_iterator.prefix is not None
  fresh = data_state.TrainIterator(objective.get_dataset("train", 4, 0))
  assert data_state.resume(fresh, ckpt.restored_iterator, data["batches_consumed"]) == "restored"
  got = [next(fresh) for _ in range(3)]
  for a, b in zip(expected, got):
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
  # Not trivially equal: the stream moves on from batch to batch.
  assert not np.array_equal(expected[0]["ids"], expected[1]["ids"])


def test_from_generator_source_falls_back_to_replay_with_one_warning(tmp_path, capsys, caplog):
  """tf.data cannot save a from_generator iterator: the step records why, and the resume
  replays (exactly) after one WARNING line saying how many batches and why."""
  objective = train_fakes.FakeGeneratorObjective(train_fakes.fake_config())
  original = data_state.TrainIterator(objective.get_dataset("train", 4, 0))
  ckpt = checkpointing.Checkpointer(str(tmp_path), keep=5)
  with caplog.at_level(logging.WARNING):
    for step in (1, 2):
      next(original)
      ckpt.save(step, {"w": jax.numpy.zeros(2)}, {"batches_consumed": step, "seed": 0}, original)
  ckpt.close()
  cannot = [r for r in caplog.records if "cannot be checkpointed" in r.getMessage()]
  assert len(cannot) == 1, [r.getMessage() for r in caplog.records]   # once, not per save
  manifest = os.path.join(str(tmp_path), "checkpoints", "2", data_state.ITEM,
                          "process_0_of_1.json")
  assert '"format": "none"' in open(manifest).read()
  expected = [next(original) for _ in range(2)]
  ckpt = checkpointing.Checkpointer(str(tmp_path), keep=5)
  step, _, data = ckpt.restore_latest({"w": jax.ShapeDtypeStruct((2,), np.float32)})
  ckpt.close()
  fresh = data_state.TrainIterator(objective.get_dataset("train", 4, 0))
  capsys.readouterr()
  assert data_state.resume(fresh, ckpt.restored_iterator, data["batches_consumed"]) == "replayed"
  out = capsys.readouterr().out
  warnings = [l for l in out.splitlines() if l.startswith("WARNING")]
  assert len(warnings) == 1, out
  assert warnings[0].startswith("WARNING: resume replays 2 batches of the train data "
                                "(time grows with the step): the pipeline's iterator could "
                                "not be checkpointed (")
  assert "stateful" in warnings[0], warnings
  for a, b in zip(expected, [next(fresh) for _ in range(2)]):
    assert all(np.array_equal(a[k], b[k]) for k in a)


def _tiny_iterator():
  return data_state.TrainIterator(tf.data.Dataset.range(1000).batch(4))


def _save_two_steps(workdir):
  it = _tiny_iterator()
  ckpt = checkpointing.Checkpointer(workdir, keep=5)
  for step in (1, 2):
    next(it)
    ckpt.save(step, {"w": jax.numpy.full((2,), float(step))},
              {"batches_consumed": step, "seed": 0}, it)
  ckpt.close()


@pytest.mark.parametrize("damage", ["flip_data", "flip_index", "manifest_position",
                                    "manifest_garbage", "missing_file"])
def test_damaged_iterator_state_is_corruption_and_falls_back(tmp_path, caplog, damage):
  workdir = str(tmp_path)
  _save_two_steps(workdir)
  files = os.path.join(workdir, "checkpoints", "2", data_state.ITEM, "process_0_of_1")
  manifest = files + ".json"
  data_file = [f for f in os.listdir(files) if ".data-" in f][0]
  if damage in ("flip_data", "flip_index"):
    path = os.path.join(files, data_file if damage == "flip_data" else "iterator.index")
    with open(path, "r+b") as f:
      f.seek(os.path.getsize(path) // 2)
      byte = f.read(1)
      f.seek(os.path.getsize(path) // 2)
      f.write(bytes([byte[0] ^ 0x01]))
  elif damage == "manifest_position":
    text = open(manifest).read()
    assert '"batches_consumed": 2' in text
    open(manifest, "w").write(text.replace('"batches_consumed": 2', '"batches_consumed": 1'))
  elif damage == "manifest_garbage":
    open(manifest, "w").write("{not json")
  else:
    os.remove(os.path.join(files, data_file))
  ckpt = checkpointing.Checkpointer(workdir, keep=5)
  with caplog.at_level(logging.WARNING):
    step, _, data = ckpt.restore_latest({"w": jax.ShapeDtypeStruct((2,), np.float32)})
  ckpt.close()
  assert step == 1 and data["batches_consumed"] == 1, damage
  warned = [r.getMessage() for r in caplog.records if "is corrupt" in r.getMessage()]
  assert warned and "data iterator state" in warned[0], (damage, warned)
  assert os.path.isdir(os.path.join(workdir, checkpointing.UNREADABLE_DIR, "2"))
  it = _tiny_iterator()
  assert data_state.resume(it, ckpt.restored_iterator, 1) == "restored"
  assert next(it).tolist() == [4, 5, 6, 7]


def test_staging_left_by_a_killed_process_is_removed(tmp_path):
  """A process killed between serializing its iterator and committing it leaves
  plm_jax_iterator_<pid>_* behind; only the directories of dead processes are removed."""
  import subprocess  # pylint: disable=import-outside-toplevel
  dead_pid = subprocess.Popen(["true"])     # a pid that has exited (and been reaped)
  dead_pid.wait()
  dead = tmp_path / f"plm_jax_iterator_{dead_pid.pid}_abc"
  live = tmp_path / f"plm_jax_iterator_{os.getpid()}_def"
  other = tmp_path / "plm_jax_iterator_notapid"
  for d in (dead, live, other):
    d.mkdir()
    (d / "iterator.index").write_bytes(b"x")
  assert data_state.remove_stale_staging(str(tmp_path)) == 1
  assert not dead.exists() and live.exists() and other.exists()
