"""Metrics output: console progress lines, metrics.jsonl and TensorBoard scalars.

Only process 0 writes files and the console. The scalars go through clu's metric
writers (as the Flax examples write them): process 0's writes workdir/tensorboard
event files, the others' only log (absl INFO). Values arrive as plain floats
(sum / weight already divided, see plm_jax.train.step.metrics_to_host).
"""
from __future__ import annotations

import datetime
import json
import os
import time
from typing import Dict, Optional

import jax

# Console order: the headline numbers first, the rest alphabetically.
HISTORY_FILE = "metrics.jsonl"
_FIRST = ("loss", "mlm_loss", "mlm_accuracy", "nsp_loss", "nsp_accuracy")
_SHORT = {"mlm_accuracy": "mlm_acc", "nsp_accuracy": "nsp_acc"}


def format_metrics(metrics: Dict[str, float]) -> str:
  keys = [k for k in _FIRST if k in metrics] + sorted(k for k in metrics if k not in _FIRST)
  return " | ".join(f"{_SHORT.get(k, k)} {metrics[k]:.4f}" for k in keys)


class Reporter:
  """Console + TensorBoard writer with steps/s, tokens/s and ETA."""

  def __init__(self, workdir: str, num_steps: int, tokens_per_step: int,
               tensorboard: bool = True, flops_per_step: Optional[float] = None):
    self.num_steps = num_steps
    self.flops_per_step = flops_per_step   # the objective's count; None: not reported
    self.tokens_per_step = tokens_per_step
    self.is_chief = jax.process_index() == 0
    self._writer = None
    if tensorboard:
      if self.is_chief:
        try:
          import tensorboard  # pylint: disable=import-outside-toplevel,unused-import
        except ImportError as e:
          # Without it tf.summary only fails at the first write, after compiling.
          raise RuntimeError("TensorBoard logging needs the 'tensorboard' package: "
                             "pip install -r requirements.txt") from e
      from clu import metric_writers  # pylint: disable=import-outside-toplevel
      self._writer = metric_writers.create_default_writer(
          os.path.join(workdir, "tensorboard"), just_logging=not self.is_chief,
          asynchronous=False)
    self._history = (open(os.path.join(workdir, HISTORY_FILE), "a", encoding="utf-8")
                     if self.is_chief else None)
    self._last_time: Optional[float] = None
    self._last_step: Optional[int] = None

  def start(self, step: int) -> None:
    self._last_time, self._last_step = time.perf_counter(), step

  def train(self, step: int, metrics: Dict[str, float], learning_rate: float,
            compile_seconds: Optional[float] = None) -> None:
    """A progress line and scalars. `compile_seconds`: this is the run's first step, whose
    time went to compiling: the line shows that time, and rates (steps/s, tokens/s, ETA)
    are measured from the end of this step on."""
    now = time.perf_counter()
    steps = step - (self._last_step or 0)
    elapsed = max(now - (self._last_time or now), 1e-9)
    rate = steps / elapsed if steps > 0 and compile_seconds is None else 0.0
    self._last_time, self._last_step = now, step
    eta = datetime.timedelta(seconds=int((self.num_steps - step) / rate)) if rate else "?"
    scalars = dict(metrics, learning_rate=learning_rate)
    if self.flops_per_step is not None:
      scalars["train_flops"] = self.flops_per_step * step
    if compile_seconds is None:
      scalars.update(steps_per_sec=rate, tokens_per_sec=rate * self.tokens_per_step)
      speed = f"{rate:.2f} steps/s | {rate * self.tokens_per_step:,.0f} tok/s | ETA {eta}"
    else:
      speed = f"train step compiled in {compile_seconds:.1f} s"
    if self.is_chief:
      done = "" if self.flops_per_step is None else f" | {self.flops_per_step * step:.3g} FLOPs"
      print(f"step {step}/{self.num_steps} | {format_metrics(metrics)} | lr {learning_rate:.3g} | "
            f"{speed}{done}", flush=True)
    self._scalars("train", step, scalars)

  def eval(self, step: int, metrics: Dict[str, float]) -> None:
    if self.is_chief:
      print(f"eval  {step}/{self.num_steps} | {format_metrics(metrics)}", flush=True)
    self._scalars("eval", step, metrics)

  def _scalars(self, prefix: str, step: int, values: Dict[str, float]) -> None:
    if self._history is not None:        # one JSON line per log / eval (reports, plots)
      self._history.write(json.dumps({"split": prefix, "step": step, **values}) + "\n")
      self._history.flush()
    if self._writer is None:
      return
    self._writer.write_scalars(step, {f"{prefix}/{k}": v for k, v in values.items()})
    self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
    if self._history is not None:
      self._history.close()


def read_history(workdir: str) -> list:
  """The workdir's metrics history: [{split, step, metric: value, ...}] in write order."""
  path = os.path.join(workdir, HISTORY_FILE)
  if not os.path.isfile(path):
    return []
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]
