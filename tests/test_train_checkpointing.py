"""Checkpoint fallback, NaN guard and shape checks, with the tiny fake objective in-process."""
import glob
import logging
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import train_fakes
from plm_jax.train import checkpointing, trainer


def _run(workdir, **train):
  c = train_fakes.fake_config(**train)
  return c, trainer.train_and_evaluate(c, workdir, devices=jax.devices()[:2])


def _saved_params(workdir, step):
  path = os.path.join(workdir, "checkpoints", str(step), "state")
  return ocp.StandardCheckpointer().restore(path)["params"]


def _corrupt(workdir, step):
  for f in glob.glob(os.path.join(workdir, "checkpoints", str(step), "state", "**", "*"),
                     recursive=True):
    if os.path.isfile(f):
      with open(f, "wb") as fh:
        fh.write(b"not a checkpoint")


def test_unreadable_latest_falls_back_to_previous_with_warning(tmp_path, caplog):
  workdir = str(tmp_path)
  _run(workdir, num_steps=6, checkpoint_every=3)
  _corrupt(workdir, 6)
  with caplog.at_level(logging.WARNING):
    _, final = _run(workdir, num_steps=9, checkpoint_every=3)
  bad = os.path.join(workdir, "checkpoints", "6")
  assert any(bad in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
  assert final["step"] == 9
  assert sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints"))) == [3, 6, 9]
  assert os.path.isdir(os.path.join(workdir, checkpointing.UNREADABLE_DIR, "6"))


def test_no_readable_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
  workdir = str(tmp_path)
  _run(workdir, num_steps=3, checkpoint_every=3)
  _corrupt(workdir, 3)
  with pytest.raises(checkpointing.CheckpointError, match=f"workdir {workdir}"):
    _run(workdir, num_steps=6)
  assert not os.path.exists(os.path.join(workdir, "checkpoints", "6"))


def test_nan_loss_stops_and_keeps_the_good_checkpoint(tmp_path):
  workdir = str(tmp_path)
  _run(workdir, num_steps=4, checkpoint_every=2)
  good = _saved_params(workdir, 4)
  c = train_fakes.fake_config(num_steps=12, checkpoint_every=2, log_every=1)
  c.optimizer.learning_rate = 1e30
  with pytest.raises(trainer.NonFiniteLossError, match="NaN/Inf"):
    trainer.train_and_evaluate(c, workdir, devices=jax.devices()[:2])
  steps = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")))
  for s in steps[steps.index(4):]:
    params = _saved_params(workdir, s)
    for a in jax.tree_util.tree_leaves(params):
      assert np.all(np.isfinite(a)), f"checkpoint {s} holds NaN/Inf"
  for a, b in zip(jax.tree_util.tree_leaves(good), jax.tree_util.tree_leaves(_saved_params(workdir, 4))):
    assert np.array_equal(a, b)


def test_shape_check_names_param_and_both_shapes():
  saved = {"params": {"dense": {"kernel": jax.ShapeDtypeStruct((32, 64), np.float32)}}}
  target = {"params": {"dense": {"kernel": jax.ShapeDtypeStruct((48, 64), np.float32)}}}
  with pytest.raises(checkpointing.CheckpointError,
                     match=r"params/dense/kernel has shape \(32, 64\) in the checkpoint but "
                           r"\(48, 64\) in the config"):
    checkpointing.check_shapes(saved, target, "ckpt/2")


def test_changed_optimizer_structure_is_a_config_error_not_corruption(tmp_path):
  workdir = str(tmp_path)
  _run(workdir, num_steps=2, checkpoint_every=2)
  c = train_fakes.fake_config(num_steps=4)
  c.optimizer.name = "lamb"  # an optimizer state of another structure than AdamW's
  with pytest.raises(checkpointing.CheckpointError, match="config.optimizer"):
    trainer.train_and_evaluate(c, workdir, devices=jax.devices()[:2])
  assert os.listdir(os.path.join(workdir, "checkpoints")) == ["2"]  # nothing moved


def test_resume_continues_the_data_stream(tmp_path, capsys):
  """3 + 3 steps with a restart == 6 steps straight (fake objective, bit-exact), the data
  position restored from the checkpointed iterator (plm_jax.train.data_state), not replayed."""
  a, b = str(tmp_path / "a"), str(tmp_path / "b")
  _run(a, num_steps=3, checkpoint_every=3)
  capsys.readouterr()
  _run(a, num_steps=6, checkpoint_every=3)
  out = capsys.readouterr().out
  assert "restored the train data iterator at batch 3" in out and "replay" not in out, out
  _run(b, num_steps=6, checkpoint_every=3)
  assert glob.glob(os.path.join(a, "tensorboard", "events.out.tfevents.*"))
  assert os.path.isdir(os.path.join(a, "export", "params"))
  pa, pb = _saved_params(a, 6), _saved_params(b, 6)
  for x, y in zip(jax.tree_util.tree_leaves(pa), jax.tree_util.tree_leaves(pb)):
    assert np.array_equal(x, y)
