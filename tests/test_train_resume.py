"""Exact resume: a run killed (SIGKILL) after a checkpoint and restarted ends with
bit-identical parameters to an uninterrupted run, its data position restored from the
checkpointed iterator (no replay). Every registered objective: tests/test_resume_matrix.py."""
import os
import re
import signal
import time

import jax
import numpy as np

import main_runner

STEPS = ["--config.train.num_steps=120", "--config.train.checkpoint_every=20"]


def test_kill_and_resume_is_bit_exact(tmp_path):
  killed = str(tmp_path / "killed")
  proc = main_runner.popen(killed, *STEPS)
  deadline = time.time() + 600   # generous: a loaded 2-core machine compiles slowly
  while (time.time() < deadline and not main_runner.committed_steps(killed)
         and proc.poll() is None):
    time.sleep(0.05)
  assert proc.poll() is None, "run ended before it could be killed:\n" + proc.stdout.read()
  assert main_runner.committed_steps(killed), "no checkpoint within 600 s"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not os.path.exists(os.path.join(killed, "export")), "killed run had already finished"
  steps_at_kill = main_runner.committed_steps(killed)
  assert 0 < steps_at_kill[-1] < 120

  resumed = main_runner.run(killed, *STEPS)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  match = re.search(r"resumed from step (\d+)", resumed.stdout)
  assert match and int(match.group(1)) >= steps_at_kill[-1], resumed.stdout[-2000:]
  # The data position came from the checkpointed iterator, not from replaying the stream.
  assert f"restored the train data iterator at batch {match.group(1)} (process_0_of_1)" \
      in resumed.stdout, resumed.stdout[-2000:]
  assert "replay" not in resumed.stdout, resumed.stdout[-2000:]

  straight = str(tmp_path / "straight")
  full = main_runner.run(straight, *STEPS)
  assert full.returncode == 0, full.stderr[-3000:]

  a, b = main_runner.load_export(killed), main_runner.load_export(straight)
  la, lb = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
  assert [p for p, _ in la] == [p for p, _ in lb] and len(la) > 10
  for (path, x), (_, y) in zip(la, lb):
    assert np.array_equal(np.asarray(x), np.asarray(y)), jax.tree_util.keystr(path)
