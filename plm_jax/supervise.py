"""One process of a multi-process run, watched: main.py re-runs its own command as a child
and turns a death it cannot report itself into one `error:` line.

When a peer of a `jax.distributed` run dies, JAX's distributed runtime ends the survivors
from C++ (after --heartbeat_timeout seconds: "Terminating process because the JAX
distributed service detected fatal errors ... another task died", then an abort with a
stack dump). Python cannot catch that, so main.py, when given --num_processes > 1, runs
the training in a child (the same command line, PLM_JAX_SUPERVISED set) and waits (so does
--distributed without --num_processes, a pod whose processes JAX finds itself):

  - the child's stdout is the parent's own (inherited); its stderr passes through the
    parent as it comes, and the parent keeps its last 64 KiB;
  - SIGINT / SIGTERM / SIGHUP sent to the parent go to the child (it runs in its own process
    group, so a terminal's Ctrl-C reaches it once, through the parent; one the parent
    ignores, as SIGHUP under nohup, the child ignores too); a child the parent stopped
    that way ends the parent with the same signal;
  - the child dies with the parent (Linux: PR_SET_PDEATHSIG; elsewhere a watcher thread),
    so `kill -9` of the parent's pid still stops the training;
  - a child that aborts with a distributed-runtime failure (recognised in its stderr) or is
    killed by a signal the parent did not forward makes the parent print one line,
        error: process 0 of 2 lost its peers (...) after 61 s; the last checkpoint is step
        4 in WORKDIR; rerun the same command on every host to resume
    and exit with EXIT_PEERS_LOST (75, EX_TEMPFAIL: a rerun resumes) or 128 + the signal;
  - any other exit status (0, 2 after a plm_jax `error:` line, ...) is the parent's own.

Standard library only: the parent never imports JAX or TensorFlow.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import List, Optional, Sequence

ENV = "PLM_JAX_SUPERVISED"    # set in the child: the parent's pid
EXIT_PEERS_LOST = 75          # sysexits.h EX_TEMPFAIL: rerunning the command resumes
TAIL_BYTES = 65536
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# What JAX / XLA / gloo print when a peer of the run is gone.
PEER_FAILURE = re.compile(
    r"distributed service detected fatal errors|another task died|heartbeat|"
    r"coordination ?service|task .{0,40}(unhealthy|disconnected|not .{0,10}alive)|"
    r"gloo.{0,200}(connection|closed|reset|timed? ?out)|connection reset by peer",
    re.IGNORECASE)


def flag(argv: Sequence[str], name: str) -> Optional[str]:
  """The value of --name=V / --name V / -name=V on an absl command line (last wins)."""
  value = None
  for i, arg in enumerate(argv):
    for prefix in (f"--{name}", f"-{name}"):
      if arg == prefix and i + 1 < len(argv):
        value = argv[i + 1]
      elif arg.startswith(prefix + "="):
        value = arg[len(prefix) + 1:]
  return value


def _bool_flag(argv: Sequence[str], name: str, default: bool) -> bool:
  value = default
  for arg in argv:
    if arg in (f"--{name}", f"-{name}"):
      value = True
    elif arg in (f"--no{name}", f"-no{name}"):
      value = False
    elif arg.startswith((f"--{name}=", f"-{name}=")):
      value = arg.split("=", 1)[1].lower() in ("1", "true", "t", "yes", "y")
  return value


def wanted(argv: Sequence[str]) -> bool:
  """True for the parent of a multi-process run: --distributed with --num_processes > 1 or
  absent (found by JAX on a pod), not a plan or help command, and not already the
  supervised child."""
  if os.environ.get(ENV):
    return False
  if not _bool_flag(argv, "distributed", os.environ.get("PLM_JAX_DISTRIBUTED", "") == "1"):
    return False
  if _bool_flag(argv, "dry_run", False) or _bool_flag(argv, "config_help", False):
    return False
  try:   # absent: JAX finds the processes itself (a TPU pod, SLURM): several, presumably
    return int(flag(argv, "num_processes") or 2) > 1
  except ValueError:
    return False   # the child's flag parser reports it


def die_with_parent() -> None:
  """In the child: end when the supervising parent ends (even by SIGKILL)."""
  parent = int(os.environ.get(ENV, "0") or 0)
  if not parent:
    return
  try:
    import ctypes  # pylint: disable=import-outside-toplevel
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) != 0:   # PR_SET_PDEATHSIG
      raise OSError("prctl")
  except (OSError, AttributeError):
    def watch():
      while os.getppid() == parent:
        time.sleep(0.5)
      os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=watch, daemon=True).start()
  if os.getppid() != parent:   # the parent ended before prctl took effect
    os.kill(os.getpid(), signal.SIGKILL)


def _committed_steps(workdir: str) -> List[int]:
  d = os.path.join(workdir, "checkpoints")
  try:
    names = os.listdir(d)
  except OSError:
    return []
  return sorted(int(n) for n in names
                if n.isdigit() and os.path.exists(os.path.join(d, n, "_CHECKPOINT_METADATA")))


def _resume_hint(workdir: str) -> str:
  if "://" in workdir:   # a bucket path: the standard library cannot list it
    return f"the checkpoints are in {workdir}/checkpoints"
  steps = _committed_steps(workdir)
  if not steps:
    return f"no checkpoint was written in {workdir} yet"
  return f"the last checkpoint is step {steps[-1]} in {workdir}"


def _signal_name(number: int) -> str:
  try:
    return signal.Signals(number).name
  except ValueError:
    return f"signal {number}"


def describe(argv: Sequence[str], returncode: int, tail: str, seconds: float,
             workdir: str) -> Optional[str]:
  """The parent's one error line for a child's end, or None when its status stands as is
  (success, or a failure the child reported with its own `error:` line)."""
  if returncode == 0:
    return None
  last = [line for line in tail.splitlines() if line.strip()]
  if returncode > 0 and last and last[-1].startswith("error:"):
    return None
  index, count = flag(argv, "process_id"), flag(argv, "num_processes")
  who = f"process {index} of {count}" if index and count else "this process"
  rerun = f"{_resume_hint(workdir)}; rerun the same command on every host to resume"
  if PEER_FAILURE.search(tail):
    heartbeat = flag(argv, "heartbeat_timeout") or "100"
    return (f"{who} lost its peers (JAX's distributed service reported a dead task or "
            f"coordinator; heartbeat timeout {heartbeat} s) after {seconds:.0f} s; {rerun}")
  if returncode < 0:
    return f"{who} was killed by {_signal_name(-returncode)} after {seconds:.0f} s; {rerun}"
  return None


def exit_status(returncode: int, tail: str) -> int:
  """The parent's status after its error line: 75 for lost peers, else the child's."""
  if PEER_FAILURE.search(tail):
    return EXIT_PEERS_LOST
  return returncode if returncode >= 0 else 128 - returncode


def run(argv: Sequence[str], workdir: str) -> int:
  """Runs this interpreter's own command line (its options, then argv: the script and its
  flags) as the supervised child; returns the status to exit with (or ends this process
  with the signal it forwarded)."""
  env = dict(os.environ)
  env[ENV] = str(os.getpid())
  options = list(getattr(sys, "orig_argv", [])[1:-len(argv)] or []) if argv else []
  start = time.time()
  child = subprocess.Popen([sys.executable] + options + list(argv), env=env,
                           stderr=subprocess.PIPE, start_new_session=True)
  forwarded: List[int] = []

  def forward(signum, _frame):
    forwarded.append(signum)
    if child.poll() is None:
      child.send_signal(signum)
  previous = {s: signal.signal(s, forward) for s in FORWARDED
              if signal.getsignal(s) is not signal.SIG_IGN}   # nohup's SIGHUP stays ignored

  tail = b""
  out: Optional[object] = sys.stderr.buffer
  fd = child.stderr.fileno()
  while True:
    chunk = os.read(fd, 65536)
    if not chunk:
      break
    if out is not None:
      try:
        out.write(chunk)
        out.flush()
      except OSError:   # our stderr is gone (a closed pipe): keep draining the child's
        out = None
    tail = (tail + chunk)[-TAIL_BYTES:]
  child.stderr.close()
  returncode = child.wait()
  for s, handler in previous.items():
    signal.signal(s, handler)
  if returncode < 0 and -returncode in forwarded:   # stopped as asked: end the same way
    signal.signal(-returncode, signal.SIG_DFL)
    os.kill(os.getpid(), -returncode)
  text = tail.decode("utf-8", "replace")
  message = describe(argv, returncode, text, time.time() - start, workdir)
  if message is None:
    return exit_status(returncode, "")
  try:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
  except OSError:
    pass
  return exit_status(returncode, text)
