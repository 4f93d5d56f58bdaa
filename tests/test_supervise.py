"""plm_jax/supervise.py, the parent of a multi-process run's training process, with small
Python children standing in for main.py (the two-process runs themselves are in
tests/test_multihost.py, slow): the abort JAX ends a survivor with becomes one `error:` line
and status 75, the child's own output and exit status pass through, signals are forwarded,
and a child dies with its parent."""
import os
import signal
import subprocess
import sys
import time

import main_runner
from plm_jax import supervise

ARGS = ["--distributed", "--num_processes=2", "--process_id=0", "--heartbeat_timeout=5"]
# What JAX's distributed runtime prints before it aborts a process whose peer died.
JAX_ABORT = ("F0000 00:00 client.cc:85] Terminating process because the JAX distributed "
             "service detected fatal errors. This most likely indicates that another task "
             "died; see the other task logs for more details.")


def _supervise(tmp_path, body, workdir=None, wait=True):
  """Runs `body` as the supervised child script (with ARGS) under supervise.run."""
  script = tmp_path / "child.py"
  script.write_text(body)
  workdir = workdir or str(tmp_path / "w")
  parent = ("import sys; from plm_jax import supervise; "
            f"sys.exit(supervise.run([{str(script)!r}] + {ARGS!r}, {workdir!r}))")
  proc = subprocess.Popen([sys.executable, "-c", parent], env=main_runner.env(),
                          cwd=main_runner.REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  if not wait:
    return proc
  out, err = proc.communicate(timeout=60)
  return proc.returncode, out, err


def test_wanted_only_for_a_multi_process_run(monkeypatch):
  monkeypatch.delenv(supervise.ENV, raising=False)
  monkeypatch.delenv("PLM_JAX_DISTRIBUTED", raising=False)
  assert supervise.wanted(ARGS)
  assert supervise.wanted(["--distributed", "--num_processes", "4", "--process_id", "1"])
  assert not supervise.wanted(["--distributed", "--num_processes=1", "--process_id=0"])
  assert not supervise.wanted(["--num_processes=2", "--process_id=0"])
  assert not supervise.wanted(ARGS + ["--nodistributed"])
  assert not supervise.wanted(ARGS + ["--dry_run"])
  assert not supervise.wanted([])
  assert supervise.wanted(["--distributed"])             # a pod: JAX counts the processes
  monkeypatch.setenv(supervise.ENV, "123")                     # the child itself
  assert not supervise.wanted(ARGS)


def test_lost_peers_abort_is_one_error_line_and_status_75(tmp_path):
  ckpt = tmp_path / "w" / "checkpoints"
  for step in (4, 8):
    (ckpt / str(step)).mkdir(parents=True)
  (ckpt / "4" / "_CHECKPOINT_METADATA").write_text("{}")     # 8: its save never completed
  code, out, err = _supervise(tmp_path, (
      "import os, sys\n"
      "print('step 5/12 | loss 7.1', flush=True)\n"
      f"sys.stderr.write({JAX_ABORT!r} + '\\n*** Check failure stack trace: ***\\n')\n"
      "sys.stderr.flush()\n"
      "os.abort()\n"))
  assert code == supervise.EXIT_PEERS_LOST
  assert out == "step 5/12 | loss 7.1\n"                       # stdout untouched
  assert JAX_ABORT in err and "stack trace" in err             # stderr passed through
  errors = main_runner.error_lines(err)
  assert len(errors) == 1 and err.rstrip().endswith(errors[0]), err
  assert errors[0].startswith("error: process 0 of 2 lost its peers"), errors[0]
  assert "heartbeat timeout 5 s" in errors[0]
  assert f"the last checkpoint is step 4 in {tmp_path / 'w'}; rerun the same command on " \
      "every host to resume" in errors[0]


def test_child_status_and_its_own_error_line_pass_through(tmp_path):
  code, out, err = _supervise(tmp_path, "import sys\nprint('done')\n")
  assert (code, out, err) == (0, "done\n", "")
  code, _, err = _supervise(tmp_path, (
      "import sys\nsys.stderr.write('error: config.train.batch_size=3: bad\\n')\nsys.exit(2)\n"))
  assert code == 2 and main_runner.error_lines(err) == ["error: config.train.batch_size=3: bad"]
  code, _, err = _supervise(tmp_path, "raise RuntimeError('a bug')\n")   # a traceback: as is
  assert code == 1 and not main_runner.error_lines(err) and "RuntimeError: a bug" in err


def test_a_signal_kill_names_the_signal(tmp_path):
  code, _, err = _supervise(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
  assert code == 128 + signal.SIGKILL
  [line] = main_runner.error_lines(err)
  assert "process 0 of 2 was killed by SIGKILL" in line and "no checkpoint was written" in line


def _wait_for(path, timeout=30):
  deadline = time.time() + timeout
  while not os.path.exists(path) and time.time() < deadline:
    time.sleep(0.05)
  assert os.path.exists(path), path


def test_sigterm_is_forwarded_and_ends_the_parent_the_same_way(tmp_path):
  ready, got = tmp_path / "ready", tmp_path / "got"
  proc = _supervise(tmp_path, (
      "import os, signal, sys, time\n"
      "def stop(signum, frame):\n"
      f"  open({str(got)!r}, 'w').write(str(signum))\n"
      "  signal.signal(signum, signal.SIG_DFL)\n"
      "  os.kill(os.getpid(), signum)\n"
      "signal.signal(signal.SIGTERM, stop)\n"
      f"open({str(ready)!r}, 'w').close()\n"
      "time.sleep(60)\n"), wait=False)
  _wait_for(ready)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=30)
  assert proc.returncode == -signal.SIGTERM and got.read_text() == str(int(signal.SIGTERM))
  assert not main_runner.error_lines(err)


def test_the_child_dies_with_its_parent(tmp_path):
  pid = tmp_path / "pid"
  proc = _supervise(tmp_path, (
      "import os, time\n"
      f"from plm_jax import supervise\nsupervise.die_with_parent()\n"
      f"open({str(pid)!r} + '.tmp', 'w').write(str(os.getpid()))\n"
      f"os.rename({str(pid)!r} + '.tmp', {str(pid)!r})\n"
      "time.sleep(60)\n"), wait=False)
  _wait_for(pid)
  child = int(pid.read_text())
  proc.kill()                                   # SIGKILL: the parent cannot pass anything on
  proc.communicate(timeout=30)
  deadline = time.time() + 10
  while time.time() < deadline and _alive(child):
    time.sleep(0.05)
  assert not _alive(child), f"child {child} outlived its parent"


def _alive(pid):
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().split(")")[-1].split()[0] != "Z"   # a zombie has ended
  except FileNotFoundError:
    return False
