"""Resume time at an early step and at a step 100x later: restoring the data iterator's state
against replaying the consumed batches (plm_jax.train.data_state).

  python bench/bench_resume.py [--early=1] [--factor=100] [--threads=2]

The default config (configs/bert.py, its default size 'tiny': batch 256 x 128 tokens, the
builtin corpus, shuffle buffer 10,000) is checkpointed at step E=--early and at step
L=E*--factor: the train state is a fresh one stamped with that step (resume time does not
depend on the weights), the data iterator is the real pipeline's, advanced E (then L) batches.
Each step is saved twice, in two workdirs: with the iterator's state (the new path) and without
it (what older checkpoints hold: resume replays). Each of the four resumes then runs in its own
process (harness.pin: --threads cores, one device), as `main.py` would: train_and_evaluate with
num_steps = step + 1.

Timed, per resume: from the call into the trainer (workdir open) to the first train batch in
hand: checkpoint read and verified, pipeline built, iterator restored or replayed (and, apart,
the trainer's own figure for that last part: "restored ... in" / "replayed ... in"). The first
step's compile + run (the trainer's "train step compiled in" figure) is measured too and
reported apart; it is the same for every resume. The train state saved after that first step
(the same stamped state on the next batch) must have the same bytes restored as replayed, at
both steps, or the bench exits non-zero.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  pylint: disable=wrong-import-position

MODES = ("restore", "replay")


def _config(num_steps: int):
  from configs import bert  # pylint: disable=import-outside-toplevel
  c = bert.get_config()
  c.train.update(num_steps=num_steps, log_every=1, eval_every=-1, params_export=False,
                 checkpoint_every=0)
  return c


def prepare(root: str, steps) -> None:
  """workdir root/<mode>/<step> holding one checkpoint at `step` (see the module doc)."""
  import jax  # pylint: disable=import-outside-toplevel
  from plm_jax.train import checkpointing, data_state, trainer  # pylint: disable=import-outside-toplevel
  config = _config(max(steps) + 1)
  setup = trainer.build_setup(config, jax.devices()[:1])
  state = trainer.initial_state(setup, config.seed)
  t = setup.run.train
  iterator = data_state.TrainIterator(
      setup.objective.get_dataset("train", t.batch_size, config.seed, 0, 1), "train")
  consumed = 0
  for step in sorted(steps):
    start = time.perf_counter()
    iterator.replay(step - consumed)
    consumed = step
    print(f"prepare: iterator advanced to batch {step} "
          f"({time.perf_counter() - start:.1f} s)", flush=True)
    stamped = state.replace(step=jax.numpy.asarray(step, state.step.dtype))
    for mode in MODES:
      ckpt = checkpointing.Checkpointer(os.path.join(root, mode, str(step)), keep=1)
      ckpt.save(step, stamped, {"batches_consumed": step, "seed": config.seed},
                iterator if mode == "restore" else None)
      ckpt.close()


class _Stamped:
  """stdout that records when each line was written."""

  def __init__(self, out):
    self.out, self.lines, self._part = out, [], ""

  def write(self, text):
    self.out.write(text)
    self._part += text
    while "\n" in self._part:
      line, self._part = self._part.split("\n", 1)
      self.lines.append((time.perf_counter(), line))

  def flush(self):
    self.out.flush()


def worker(workdir: str, step: int) -> dict:
  """One resume of `workdir` (checkpoint at `step`) by the trainer; its timings."""
  from plm_jax.train import trainer  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  config = _config(step + 1)
  stamped = _Stamped(sys.stdout)
  sys.stdout = stamped
  start = time.perf_counter()
  try:
    trainer.train_and_evaluate(config, workdir, jax.devices()[:1])
  finally:
    sys.stdout = stamped.out
  first = [(t, l) for t, l in stamped.lines if l.startswith(f"step {step + 1}/")]
  assert first and "train step compiled in " in first[0][1], stamped.lines
  compile_s = float(first[0][1].split("train step compiled in ")[1].split()[0])
  replayed = any(l.startswith("WARNING: resume replays") for _, l in stamped.lines)
  # The trainer's own figure for restoring / replaying the data position (data_state.resume).
  position = [l for _, l in stamped.lines
              if l.startswith(("restored the train data iterator", "replayed "))]
  assert len(position) == 1, stamped.lines
  return {"resume_s": first[0][0] - start - compile_s, "compile_s": compile_s,
          "position_s": float(position[0].rsplit(" in ", 1)[1].split()[0]),
          "replayed": replayed, "loss": first[0][1].split(" | loss ")[1].split()[0],
          "state_sha256": _state_digest(os.path.join(workdir, "checkpoints", str(step + 1),
                                                     "state"))}


def _state_digest(path: str) -> str:
  """sha256 over the bytes of every leaf (params, optimizer state, step) of a saved state."""
  import hashlib  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  digest = hashlib.sha256()
  for leaf in jax.tree_util.tree_leaves(ocp.StandardCheckpointer().restore(path)):
    digest.update(np.asarray(leaf).tobytes())
  return digest.hexdigest()


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--early", type=int, default=1, help="the early checkpoint's step")
  p.add_argument("--factor", type=int, default=100, help="the late step is early * factor")
  p.add_argument("--threads", type=int, default=2)
  p.add_argument("--root", default="", help="where the workdirs go (default: a temporary "
                                             "directory, removed at the end)")
  p.add_argument("--worker", nargs=2, metavar=("WORKDIR", "STEP"), help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  harness.pin(args.threads)
  if args.worker:
    print("RESULT " + json.dumps(worker(args.worker[0], int(args.worker[1]))))
    return 0
  steps = (args.early, args.early * args.factor)
  root = args.root or tempfile.mkdtemp(prefix="bench_resume_")
  try:
    prepare(root, steps)
    results = {}
    for mode in MODES:
      for step in steps:
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), f"--threads={args.threads}",
             "--worker", os.path.join(root, mode, str(step)), str(step)],
            capture_output=True, text=True, check=False)
        lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
        if proc.returncode or not lines:
          sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
          sys.exit(f"bench_resume: the {mode} worker at step {step} failed "
                   f"(exit {proc.returncode})")
        results[(mode, step)] = json.loads(lines[-1][len("RESULT "):])
        assert results[(mode, step)]["replayed"] == (mode == "replay"), (mode, step)
    for step in steps:   # the same state and the same next batch: the same train state after it
      restored, replayed = (results[(m, step)]["state_sha256"] for m in MODES)
      if restored != replayed:
        sys.exit(f"bench_resume: at step {step} the train state after one step from the "
                 f"restored iterator (sha256 {restored[:12]}) differs from the replayed one "
                 f"({replayed[:12]})")
  finally:
    if not args.root:
      shutil.rmtree(root, ignore_errors=True)
  early, late = steps
  print(f"resume of configs/bert.py (default 'tiny': batch 256 x 128 tokens), "
        f"{args.threads} CPU threads; timed: workdir open -> first train batch in hand "
        f"(checkpoint read + verified, pipeline built, iterator restored or replayed), "
        f"excluding the first step's compile + run")
  for mode in MODES:
    a, b = results[(mode, early)], results[(mode, late)]
    label = ("iterator state restored" if mode == "restore"
             else "replay (no iterator state)")
    print(f"{label:28s}: step {early}: {a['resume_s']:6.1f} s   step {late}: "
          f"{b['resume_s']:6.1f} s   ratio {b['resume_s'] / a['resume_s']:5.2f}   "
          f"(of which the data position {a['position_s']:.1f} / {b['position_s']:.1f} s; "
          f"first step compile+run {a['compile_s']:.1f} / {b['compile_s']:.1f} s)")
  for step in steps:
    r = results[("restore", step)]
    print(f"step {step + 1} after resuming at {step}: loss {r['loss']}, train state (params, "
          f"optimizer, step) sha256 {r['state_sha256'][:16]}, restored = replayed bit for bit")
  gain = results[("replay", late)]["resume_s"] / results[("restore", late)]["resume_s"]
  print(f"at step {late}: restoring is {gain:.1f}x as fast as replaying")
  return 0


if __name__ == "__main__":
  sys.exit(main())
