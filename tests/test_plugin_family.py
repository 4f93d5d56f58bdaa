"""Plug-in: a family defined outside plm_jax (tests/plugin_causal_lm.py) trains, evaluates with
a host-side metric over every eval example, checkpoints, survives SIGKILL + resume bit-exactly
and exports, through the public trainer API only."""
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import main_runner
import plugin_causal_lm
from plm_jax.convert import export
from plm_jax.train import trainer

HERE = os.path.dirname(os.path.abspath(__file__))


def _eval_examples(config):
  objective = plugin_causal_lm.TinyCausalLMObjective(config)
  ds = objective.get_dataset("validation", 8, 0, num_epochs=1)
  return sum(len(b["targets"]) for b in ds.as_numpy_iterator())


def test_plugin_family_trains_evaluates_and_exports(tmp_path):
  c = plugin_causal_lm.config(num_steps=8, eval_every=4, checkpoint_every=4)
  n_eval = _eval_examples(c)
  # A batch size (even: two devices) that leaves the eval set a partial last batch.
  c.train.batch_size = next(b for b in (8, 6, 10, 4) if n_eval % b)
  assert n_eval % c.train.batch_size, "the eval set should end in a partial batch"
  final = trainer.train_and_evaluate(c, str(tmp_path), devices=jax.devices()[:2])
  # Every eval example is scored exactly once by the host-side metric.
  assert final["eval/eval_examples_scored"] == n_eval == final["eval/examples"]
  assert 0.0 <= final["eval/continuation_accuracy"] <= 1.0
  assert np.isfinite(final["eval/loss"]) and final["step"] == 8
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["4", "8"]
  family, cfg, params = export.load_export(str(tmp_path / "export"))
  assert family == "tiny_causal_lm" and isinstance(cfg, plugin_causal_lm.TinyLMConfig)
  assert cfg.vocab_size > 50 and cfg.max_length == 24
  saved = main_runner.load_export(str(tmp_path))
  for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(saved)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # The objective's decode (key/value cache, one token per step) equals greedy decoding by
  # full forward passes over the growing sequence.
  objective = plugin_causal_lm.TinyCausalLMObjective(c)
  batch = next(objective.get_dataset("validation", 4, 0, num_epochs=1).as_numpy_iterator())
  cached = np.asarray(jax.jit(objective.decode)(params, batch))
  tokens = np.where(np.arange(24) < 16, batch["targets"], 0)
  for t in range(16, 24):
    logits = objective.make_model().apply({"params": params}, jnp.asarray(tokens))
    tokens[:, t] = np.argmax(np.asarray(logits)[:, t - 1], -1)
  np.testing.assert_array_equal(cached, tokens)
  assert (cached[:, :16] == batch["targets"][:, :16]).all()


def _command(workdir, steps):
  # Checkpoints every 20 steps, no evaluation (the test above covers it).
  return [sys.executable, os.path.join(HERE, "plugin_causal_lm.py"), str(workdir), str(steps),
          "20", "-1"]


@pytest.mark.slow   # the fast tier: BERT's kill/resume (test_train_resume) and the carried
                   # state's exact resume (test_spine_hooks) cover the same machinery
def test_plugin_family_kill_and_resume_is_bit_exact(tmp_path):
  steps = 120
  killed, straight = tmp_path / "killed", tmp_path / "straight"
  proc = subprocess.Popen(_command(killed, steps), env=main_runner.env(), cwd=main_runner.REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 180
  while (time.time() < deadline and not main_runner.committed_steps(killed)
         and proc.poll() is None):
    time.sleep(0.05)
  assert proc.poll() is None, "run ended before it could be killed:\n" + proc.stdout.read()
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  at_kill = main_runner.committed_steps(killed)
  assert at_kill and at_kill[-1] < steps and not (killed / "export").exists()
  resumed = subprocess.run(_command(killed, steps), env=main_runner.env(), cwd=main_runner.REPO,
                           capture_output=True, text=True, timeout=600)
  assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
  assert f"resumed from step {at_kill[-1]}" in resumed.stdout
  # The uninterrupted reference runs in this process on one device, as the subprocess does.
  trainer.train_and_evaluate(plugin_causal_lm.config(num_steps=steps, checkpoint_every=20,
                                                     eval_every=-1),
                             str(straight), devices=jax.devices()[:1])
  a, b = main_runner.load_export(str(killed)), main_runner.load_export(str(straight))
  la, lb = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
  assert [p for p, _ in la] == [p for p, _ in lb] and len(la) > 10
  for (path, x), (_, y) in zip(la, lb):
    assert np.array_equal(np.asarray(x), np.asarray(y)), jax.tree_util.keystr(path)
