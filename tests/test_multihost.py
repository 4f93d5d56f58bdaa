"""Multi-host runs: two `main.py --distributed` processes on localhost, 4 simulated CPU
devices each, against one process with 8 devices.

Both read the training stream as config.train.data_shards=2 logical shards (each of the
two processes its own shard, the single process both), so every step has the same
global batch. The two-process losses equal the single-process ones to float32
rounding (the gradient all-reduce across processes goes through gloo, whose summation
order differs from the in-process one); a two-process run with one process killed after a
checkpoint stops the other with one `error:` line and status 75 (plm_jax/supervise.py), and
its rerun ends bit-identical to an uninterrupted two-process run.

The fast tests check the pieces in one process; the two-process runs (minutes each on
a 2-core machine) are marked slow.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import main_runner
from plm_jax import supervise
from plm_jax.configlib import ConfigError

STEPS = ["--config.train.num_steps=12", "--config.train.checkpoint_every=4",
         "--config.train.log_every=1", "--config.train.data_shards=2"]
HEARTBEAT_S = 20   # 5 s: a starved process (load 15 on 2 cores) missed its heartbeats
TIMEOUT_S = 1800    # per run: compiling on a loaded 2-core machine takes minutes


def _env(devices: int):
  env = main_runner.env()
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  return env


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _start_pair(workdir, *overrides):
  """Two processes of one run; process 0 coordinates on a free localhost port."""
  port = _free_port()
  procs = []
  for i in range(2):
    cmd = main_runner.command(workdir, *STEPS, *overrides) + [
        "--distributed", f"--coordinator_address=localhost:{port}", "--num_processes=2",
        f"--process_id={i}", f"--heartbeat_timeout={HEARTBEAT_S}"]
    log = open(f"{workdir}.p{i}.log", "w")
    procs.append(subprocess.Popen(cmd, env=_env(4), cwd=main_runner.REPO, stdout=log,
                                  stderr=subprocess.STDOUT, text=True))
    log.close()
  return procs


def _log(workdir, i):
  with open(f"{workdir}.p{i}.log") as f:
    return f.read()


def _run_pair(workdir, *overrides):
  procs = _start_pair(workdir, *overrides)
  for i, p in enumerate(procs):
    try:
      p.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      pytest.fail(f"process {i} still running after {TIMEOUT_S} s:\n{_log(workdir, i)[-3000:]}")
  for i, p in enumerate(procs):
    assert p.returncode == 0, _log(workdir, i)[-3000:]


def _children_of(parent: int):
  """Pids of the live processes main.py started as its supervised child (plm_jax/supervise.py)."""
  out = []
  for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
      with open(f"/proc/{pid}/environ", "rb") as f:
        if f"{supervise.ENV}={parent}".encode() in f.read().split(b"\0"):
          out.append(int(pid))
    except OSError:
      pass
  return out


def _run_single(workdir, *overrides):
  out = subprocess.run(main_runner.command(workdir, *STEPS, *overrides), env=_env(8),
                       cwd=main_runner.REPO, capture_output=True, text=True, timeout=TIMEOUT_S)
  assert out.returncode == 0, out.stderr[-3000:]


def _train_history(workdir):
  """step -> metrics of the last 'train' line written for it (a rerun rewrites steps)."""
  out = {}
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      record = json.loads(line)
      if record["split"] == "train":
        out[record["step"]] = record
  return out


def _params(workdir):
  from plm_jax.convert import export  # pylint: disable=import-outside-toplevel
  return export.load_export(os.path.join(workdir, "export"))[2]


def _max_diff(a, b):
  la, lb = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
  assert [p for p, _ in la] == [p for p, _ in lb] and len(la) > 10
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for (_, x), (_, y)
             in zip(la, lb))


# ---- fast: the pieces, in one process -----------------------------------------------------
def test_data_shards_give_one_host_the_batches_of_two():
  """data_shards=2 in one process: [shard 0 of 2; shard 1 of 2] per step, two different
  halves, which is what two hosts reading one shard each put in the global batch."""
  import train_fakes  # pylint: disable=import-outside-toplevel
  from plm_jax.objectives.base import get_objective  # pylint: disable=import-outside-toplevel
  from plm_jax.train import host_data  # pylint: disable=import-outside-toplevel
  objective = get_objective(train_fakes.fake_config())
  both = list(host_data.train_dataset(objective, 8, 0, data_shards=2).take(3)
              .as_numpy_iterator())
  halves = [list(objective.get_dataset("train", 4, 0, i, 2).take(3).as_numpy_iterator())
            for i in range(2)]
  for step, batch in enumerate(both):
    for key, value in batch.items():
      assert value.shape[0] == 8
      np.testing.assert_array_equal(value, np.concatenate([halves[0][step][key],
                                                           halves[1][step][key]]), key)
    assert not np.array_equal(halves[0][step]["ids"], halves[1][step]["ids"])
  one = next(host_data.train_dataset(objective, 8, 0).as_numpy_iterator())   # 0: one per host
  assert not np.array_equal(one["ids"], both[0]["ids"])


def test_data_shards_must_fit_hosts_and_batch():
  import train_fakes  # pylint: disable=import-outside-toplevel
  from plm_jax.train import config as config_lib  # pylint: disable=import-outside-toplevel
  c = train_fakes.fake_config(data_shards=3)
  with pytest.raises(ConfigError, match=r"config.train.data_shards.*batch_size=8"):
    config_lib.validate_config(c, num_devices=1)
  c.train.data_shards = 4
  with pytest.raises(ConfigError, match=r"config.train.data_shards.*number of hosts 8"):
    config_lib.check_batch_divisibility(config_lib.parse(c), None, process_count=8)


def test_distributed_flags_are_checked(tmp_path):
  out = subprocess.run([sys.executable, main_runner.MAIN, f"--workdir={tmp_path}/w",
                        "--distributed", "--num_processes=2", "--process_id=2"],
                       env=main_runner.env(), cwd=main_runner.REPO, capture_output=True,
                       text=True, timeout=120)
  assert out.returncode == 2
  assert main_runner.error_lines(out.stderr) == [
      "error: --process_id=2: must be below --num_processes=2"], out.stderr[-2000:]
  assert not os.path.exists(tmp_path / "w")


# ---- slow: two processes over localhost ---------------------------------------------------
@pytest.fixture(scope="module")
def dp_pair(tmp_path_factory):
  """The two-process workdir of the data-parallel (8,1,1) run."""
  pair = str(tmp_path_factory.mktemp("multihost_dp") / "pair")
  _run_pair(pair, "--config.mesh.shape=(8,1,1)")
  return pair


@pytest.fixture(scope="module")
def dp_runs(dp_pair, tmp_path_factory):
  """(two-process workdir, one-process workdir) of the data-parallel (8,1,1) run."""
  single = str(tmp_path_factory.mktemp("multihost_dp1") / "single")
  _run_single(single, "--config.mesh.shape=(8,1,1)")
  return dp_pair, single


def _assert_same_run(pair, single):
  a, b = _train_history(pair), _train_history(single)
  assert sorted(a) == sorted(b) == list(range(1, 13))
  for step in a:
    for key in ("loss", "mlm_loss", "nsp_loss", "grad_norm"):
      np.testing.assert_allclose(a[step][key], b[step][key], rtol=1e-5,
                                 err_msg=f"step {step} {key}")
  assert _max_diff(_params(pair), _params(single)) < 1e-6


@pytest.mark.slow
def test_two_processes_data_parallel_match_one(dp_runs):
  pair, single = dp_runs
  _assert_same_run(pair, single)
  # Each process wrote its part of every checkpoint (one OCDBT shard per process).
  for step in (4, 8, 12):
    state = os.path.join(pair, "checkpoints", str(step), "state")
    assert {"ocdbt.process_0", "ocdbt.process_1"} <= set(os.listdir(state)), step


@pytest.mark.slow
def test_two_processes_fsdp_across_hosts_match_one(tmp_path):
  """Mesh (1,8,1): every parameter is split over the 8 devices of both processes."""
  pair, single = str(tmp_path / "pair"), str(tmp_path / "single")
  _run_pair(pair, "--config.mesh.shape=(1,8,1)")
  assert "mesh {'data': 1, 'fsdp': 8, 'tensor': 1}" in _log(pair, 0)
  _run_single(single, "--config.mesh.shape=(1,8,1)")
  _assert_same_run(pair, single)


@pytest.mark.slow
def test_killed_process_stops_the_other_and_rerun_resumes_bit_exactly(dp_pair, tmp_path):
  straight = dp_pair
  killed = str(tmp_path / "killed")
  procs = _start_pair(killed, "--config.mesh.shape=(8,1,1)")
  deadline = time.time() + TIMEOUT_S
  while (time.time() < deadline and 4 not in main_runner.committed_steps(killed)
         and all(p.poll() is None for p in procs)):
    time.sleep(0.05)
  assert all(p.poll() is None for p in procs), "a process ended before the kill:\n" + \
      _log(killed, 0)[-2000:]
  procs[1].send_signal(signal.SIGKILL)
  killed_at = time.time()
  try:
    procs[0].wait(timeout=HEARTBEAT_S + 60)
  except subprocess.TimeoutExpired:
    procs[0].kill()
    pytest.fail("process 0 hung after process 1 was killed:\n" + _log(killed, 0)[-2000:])
  procs[1].wait()
  stopped_after = time.time() - killed_at
  log = _log(killed, 0)
  gone = time.time() + 10
  while _children_of(procs[1].pid) and time.time() < gone:
    time.sleep(0.1)
  assert not _children_of(procs[1].pid), "process 1's training outlived its main.py"
  assert "another task died" in log, log[-3000:]   # JAX's own message, passed through
  assert not os.path.exists(os.path.join(killed, "export"))
  last = main_runner.committed_steps(killed)[-1]
  assert 4 <= last < 12
  # One plm_jax line, the last of the log, and the status that says a rerun resumes.
  assert procs[0].returncode == supervise.EXIT_PEERS_LOST, log[-3000:]
  [error] = main_runner.error_lines(log)
  assert log.rstrip().splitlines()[-1] == error
  assert error.startswith("error: process 0 of 2 lost its peers (") and \
      f"heartbeat timeout {HEARTBEAT_S} s" in error, error
  assert error.endswith(f"the last checkpoint is step {last} in {killed}; rerun the same "
                        "command on every host to resume"), error
  print(f"process 0 stopped {stopped_after:.1f} s after process 1 was killed "
        f"(heartbeat timeout {HEARTBEAT_S} s): {error}")

  _run_pair(killed, "--config.mesh.shape=(8,1,1)")
  assert f"resumed from step {last}" in _log(killed, 0)
  a, b = _train_history(killed), _train_history(straight)
  assert sorted(a) == sorted(b)
  for step in a:
    assert a[step]["loss"] == b[step]["loss"], step
  assert _max_diff(_params(killed), _params(straight)) == 0.0
