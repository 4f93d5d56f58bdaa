"""Keeping the best params by an eval metric (config.train.best_metric).

workdir/best/ is a params export (plm_jax.convert.export) of the evaluation
with the best value so far, plus best.json {"step", "metric", "value",
"metrics"}. A new best is written to best.tmp/ and then swapped in, so a run
killed mid-write leaves the previous best intact; a resumed run reads
best.json and keeps comparing against it.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from typing import Any, Dict, Optional

import jax

BEST_DIR = "best"
BEST_FILE = "best.json"


class BestTracker:
  def __init__(self, workdir: str, metric: str, mode: str = "max"):
    self.metric, self.mode = metric, mode
    self.directory = os.path.join(workdir, BEST_DIR)
    self.record: Optional[Dict[str, Any]] = None
    path = os.path.join(self.directory, BEST_FILE)
    if metric and os.path.isfile(path):
      with open(path, encoding="utf-8") as f:
        self.record = json.load(f)
      if self.record.get("metric") != metric:
        raise ValueError(f"config.train.best_metric={metric!r}: {path} holds the best by "
                         f"{self.record.get('metric')!r}; use the same metric or a new --workdir")

  @property
  def enabled(self) -> bool:
    return bool(self.metric)

  def _better(self, value: float) -> bool:
    if not math.isfinite(value):
      return False
    if self.record is None:
      return True
    old = float(self.record["value"])
    return value > old if self.mode == "max" else value < old

  def update(self, step: int, metrics: Dict[str, float], params: Any, objective) -> bool:
    """Saves params as the new best when metrics[metric] beats the record."""
    if not self.enabled:
      return False
    if self.metric not in metrics:
      raise ValueError(f"config.train.best_metric={self.metric!r}: not an eval metric of "
                       f"objective {objective.name!r}; eval metrics: {sorted(metrics)}")
    value = float(metrics[self.metric])
    if not self._better(value):
      return False
    from plm_jax.convert import export  # pylint: disable=import-outside-toplevel
    exports = objective.export_models(params)
    if "" not in exports:
      raise ValueError(f"config.train.best_metric: objective {objective.name!r} exports no "
                       "single model to keep")
    model_config, model_params = exports[""]
    tmp = self.directory + ".tmp"
    if jax.process_index() == 0 and os.path.isdir(tmp):
      shutil.rmtree(tmp)
    export.save_export(tmp, model_params, model_config, objective.family)
    record = {"step": int(step), "metric": self.metric, "value": value,
              "metrics": {k: float(v) for k, v in metrics.items()}}
    if jax.process_index() == 0:
      with open(os.path.join(tmp, BEST_FILE), "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
      old = self.directory + ".old"
      if os.path.isdir(self.directory):
        os.replace(self.directory, old)
      os.replace(tmp, self.directory)
      shutil.rmtree(old, ignore_errors=True)
    self.record = record
    return True

  def summary(self) -> Dict[str, float]:
    if self.record is None:
      return {}
    out = {f"best/{k}": float(v) for k, v in self.record["metrics"].items()}
    out["best/step"] = float(self.record["step"])
    return out

  def params(self) -> Optional[Any]:
    """Host params of the best export, or None."""
    if self.record is None:
      return None
    from plm_jax.convert import export  # pylint: disable=import-outside-toplevel
    _, _, params = export.load_export(self.directory)
    return params
