"""GLUE metrics as the benchmark defines them, in numpy only, and the GLUE average.

API (every metric takes predictions first, labels second, 1-D arrays of equal length,
and returns a Python float as a fraction, not a percentage):

  accuracy(preds, labels)        share of exact matches
  f1(preds, labels)              binary F1 of the positive class 1 (MRPC, QQP)
  matthews_corr(preds, labels)   Matthews correlation; multi-class R_K (Gorodkin 2004)
                                 for more than two classes (CoLA binary, AX 3-class)
  pearson(preds, labels)         Pearson r (STS-B)
  spearman(preds, labels)        Spearman rho with average ranks for ties (STS-B)
  canonical_task(name)           'SST-2', 'sst2', 'STS-B', 'MNLI-mm', 'diagnostic', ... ->
                                 the TFDS glue config name (sst2, stsb, mnli_mismatched, ax)
  task_metrics(task, preds, labels) -> {metric: value, ..., 'score': the task's single score}
  task_score(task, metrics)      the GLUE leaderboard score of a task from its metrics dict
  glue_average(results, convention='bert')   the GLUE average over {task: metrics dict}

Degenerate inputs, the same as scikit-learn / scipy return them: F1 is 0.0 when there is
no positive label and no positive prediction; Matthews correlation is 0.0 when either side
is constant; Pearson and Spearman are nan when either side is constant (the correlation
is undefined; a report should print it as nan, not 0). Empty inputs, unequal lengths,
and NaN/Inf values are ValueErrors.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

# Task -> (metric names, how the task's single score is formed from them).
# The score is the GLUE leaderboard's: for a task with two metrics their unweighted mean.
TASK_METRICS: Dict[str, Tuple[str, ...]] = {
    "cola": ("mcc",),
    "sst2": ("accuracy",),
    "mrpc": ("f1", "accuracy"),
    "qqp": ("f1", "accuracy"),
    "stsb": ("pearson", "spearman"),
    "mnli_matched": ("accuracy",),
    "mnli_mismatched": ("accuracy",),
    "qnli": ("accuracy",),
    "rte": ("accuracy",),
    "wnli": ("accuracy",),
    "ax": ("mcc",),
    "chnsenticorp": ("accuracy",),   # not GLUE: ERNIE's Chinese sentiment task
}
REGRESSION_TASKS = ("stsb",)

_ALIASES = {"mnli": "mnli_matched", "mnlim": "mnli_matched", "mnlimatched": "mnli_matched",
            "mnlimm": "mnli_mismatched", "mnlimismatched": "mnli_mismatched",
            "diagnostic": "ax", "glueax": "ax", "glue_diagnostic": "ax"}

# The BERT paper (Devlin et al. 2019, Table 1) reports one number per task: F1 for MRPC
# and QQP, Spearman for STS-B, Matthews correlation for CoLA, accuracy for the rest, with
# MNLI matched and mismatched as two columns, and WNLI left out ("the problematic WNLI
# set"). Its "Average" is the plain mean of those nine numbers (BERT-large:
# 86.7, 85.9, 72.1, 92.7, 94.9, 60.5, 86.5, 89.3, 70.1 -> 82.1).
BERT_REPORTED = {"mnli_matched": "accuracy", "mnli_mismatched": "accuracy", "qqp": "f1",
                 "qnli": "accuracy", "sst2": "accuracy", "cola": "mcc", "stsb": "spearman",
                 "mrpc": "f1", "rte": "accuracy"}
# The GLUE leaderboard score: the mean over the nine tasks of each task's score (pair
# metrics averaged), MNLI counted once as the mean of matched and mismatched, WNLI in,
# the diagnostic AX out (BERT-large on the leaderboard: 80.5).
GLUE_TASKS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
# ELECTRA's "GLUE score" (Clark et al. 2020, section 3.1 and Table 1): the mean over the eight
# tasks other than WNLI of Spearman for STS-B, MCC for CoLA and accuracy for the rest (MRPC
# and QQP by accuracy, MNLI by its matched dev set).
ELECTRA_REPORTED = {"cola": "mcc", "sst2": "accuracy", "mrpc": "accuracy", "stsb": "spearman",
                    "qqp": "accuracy", "mnli_matched": "accuracy", "qnli": "accuracy",
                    "rte": "accuracy"}
CONVENTIONS = ("bert", "glue", "electra")
_REPORTED = {"bert": BERT_REPORTED, "electra": ELECTRA_REPORTED}


def _pair(preds, labels, name: str) -> Tuple[np.ndarray, np.ndarray]:
  p = np.asarray(preds)
  y = np.asarray(labels)
  if p.ndim != 1 or y.ndim != 1:
    raise ValueError(f"{name}: predictions and labels must be 1-D, got shapes "
                     f"{p.shape} and {y.shape}")
  if p.shape != y.shape:
    raise ValueError(f"{name}: {p.shape[0]} predictions for {y.shape[0]} labels")
  if p.size == 0:
    raise ValueError(f"{name}: no examples")
  for a, what in ((p, "predictions"), (y, "labels")):
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
      raise ValueError(f"{name}: {what} contain NaN or Inf")
  return p, y


def accuracy(preds, labels) -> float:
  p, y = _pair(preds, labels, "accuracy")
  return float(np.mean(p == y))


def f1(preds, labels, positive=1) -> float:
  """F1 of the positive class: 2 tp / (2 tp + fp + fn); 0.0 when that is 0 / 0."""
  p, y = _pair(preds, labels, "f1")
  pp, yp = p == positive, y == positive
  tp = np.sum(pp & yp)
  denom = 2 * tp + np.sum(pp & ~yp) + np.sum(~pp & yp)
  return float(2 * tp / denom) if denom else 0.0


def matthews_corr(preds, labels) -> float:
  """Matthews correlation; for K classes Gorodkin's R_K from the confusion matrix C:
  (c s - sum_k p_k t_k) / sqrt((s^2 - sum_k p_k^2) (s^2 - sum_k t_k^2)), c = trace C,
  s = N, t_k / p_k = true / predicted counts of class k. 0.0 when a factor is 0."""
  p, y = _pair(preds, labels, "matthews_corr")
  classes, inv = np.unique(np.concatenate([y, p]), return_inverse=True)
  yi, pi = inv[:y.size], inv[y.size:]
  k = classes.size
  conf = np.zeros([k, k], dtype=np.float64)
  np.add.at(conf, (yi, pi), 1)
  t, q = conf.sum(axis=1), conf.sum(axis=0)
  c, s = np.trace(conf), float(y.size)
  cov_yp = c * s - np.dot(t, q)
  cov_pp = s * s - np.dot(q, q)
  cov_yy = s * s - np.dot(t, t)
  if cov_pp == 0 or cov_yy == 0:
    return 0.0
  return float(cov_yp / np.sqrt(cov_pp * cov_yy))


def pearson(preds, labels) -> float:
  """Pearson r; nan when either side is constant (undefined)."""
  p, y = _pair(preds, labels, "pearson")
  p = p.astype(np.float64) - np.mean(p, dtype=np.float64)
  y = y.astype(np.float64) - np.mean(y, dtype=np.float64)
  denom = np.sqrt(np.dot(p, p) * np.dot(y, y))
  if denom == 0:
    return float("nan")
  return float(np.clip(np.dot(p, y) / denom, -1.0, 1.0))


def average_ranks(x) -> np.ndarray:
  """float64 [N]: 1-based ranks of x, tied values sharing the mean of their ranks."""
  x = np.asarray(x)
  order = np.argsort(x, kind="mergesort")
  xs = x[order]
  starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])      # first sorted index of a run
  ends = np.r_[starts[1:], x.size]                              # one past its last
  group = np.cumsum(np.r_[True, xs[1:] != xs[:-1]]) - 1         # run id of each sorted value
  ranks = np.empty(x.size, dtype=np.float64)
  ranks[order] = ((starts + 1 + ends) / 2.0)[group]
  return ranks


def roc_auc(scores, labels) -> float:
  """Area under the ROC curve of binary labels (1 positive) by scores: the probability that
  a positive outscores a negative, ties counting half (the Mann-Whitney U statistic over
  n_pos * n_neg, from average ranks). One-line ValueError without both classes."""
  s, y = _pair(scores, labels, "roc_auc")
  pos = y.astype(bool)
  n_pos, n_neg = int(pos.sum()), int((~pos).sum())
  if not n_pos or not n_neg:
    raise ValueError(f"roc_auc: needs both classes, got {n_pos} positive and {n_neg} negative")
  rank_sum = float(np.sum(average_ranks(s)[pos]))
  return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def spearman(preds, labels) -> float:
  """Spearman rho: Pearson r of the average ranks; nan when either side is constant."""
  p, y = _pair(preds, labels, "spearman")
  return pearson(average_ranks(p), average_ranks(y))


_METRIC_FNS = {"accuracy": accuracy, "f1": f1, "mcc": matthews_corr, "pearson": pearson,
               "spearman": spearman}


def canonical_task(name: str) -> str:
  """A GLUE task name in any common spelling -> its key in TASK_METRICS."""
  key = str(name).strip().lower().replace("-", "").replace(" ", "")
  key = key[5:] if key.startswith("glue/") else key
  key = _ALIASES.get(key, _ALIASES.get(key.replace("_", ""), key))
  if key not in TASK_METRICS:
    raise ValueError(f"unknown GLUE task {name!r}; known: {', '.join(TASK_METRICS)}")
  return key


def task_score(task: str, metrics: Mapping[str, float]) -> float:
  """The task's single GLUE score: its metric, or the unweighted mean of its two."""
  names = TASK_METRICS[canonical_task(task)]
  missing = [m for m in names if m not in metrics]
  if missing:
    raise ValueError(f"GLUE task {task}: metrics {missing} missing from {sorted(metrics)}")
  return float(np.mean([metrics[m] for m in names]))


def task_metrics(task: str, preds, labels) -> Dict[str, float]:
  """{metric: value} for the task's metrics plus 'score' (see task_score).

  Classification tasks take label ids; STS-B takes the regression outputs and the
  gold similarity scores as floats.
  """
  names = TASK_METRICS[canonical_task(task)]
  out = {m: _METRIC_FNS[m](preds, labels) for m in names}
  out["score"] = task_score(task, out)
  return out


def _by_task(results: Mapping[str, Mapping[str, float]]) -> Dict[str, Mapping[str, float]]:
  out: Dict[str, Mapping[str, float]] = {}
  for name, metrics in results.items():
    key = canonical_task(name)
    if key in out:
      raise ValueError(f"glue_average: task {key} given twice (as {name!r} and another name)")
    out[key] = metrics
  return out


def average_tasks(convention: str = "bert") -> List[str]:
  """The columns the average of `convention` runs over."""
  if convention in _REPORTED:
    return list(_REPORTED[convention])
  if convention == "glue":
    return list(GLUE_TASKS)
  raise ValueError(f"glue_average: unknown convention {convention!r}; choose {CONVENTIONS}")


def glue_average(results: Mapping[str, Mapping[str, float]], convention: str = "bert",
                 strict: bool = False) -> float:
  """The GLUE average over `results` ({task: metrics dict from task_metrics}).

  convention='bert' (default): as the BERT paper's Table 1 computes its "Average": the
  mean of nine numbers, one per column: MNLI-m acc, MNLI-mm acc, QQP F1, QNLI acc, SST-2
  acc, CoLA MCC, STS-B Spearman, MRPC F1, RTE acc. WNLI is excluded, and so is AX.
  convention='glue': the GLUE leaderboard score: the mean over CoLA, SST-2, MRPC, STS-B,
  QQP, MNLI, QNLI, RTE and WNLI of each task's score (task_score: MRPC / QQP mean of F1
  and accuracy, STS-B mean of Pearson and Spearman), MNLI being the mean of its matched
  and mismatched scores; AX excluded.
  convention='electra': as ELECTRA's Table 1 "GLUE score": the mean over CoLA MCC, SST-2
  acc, MRPC acc, STS-B Spearman, QQP acc, MNLI-m acc, QNLI acc and RTE acc.

  Tasks of the convention that `results` lacks are left out of the mean (a partial
  average: say so when reporting it); strict=True makes a missing task a ValueError.
  Results for tasks outside the convention (WNLI under 'bert', AX) are ignored. The unit
  is that of the inputs (fractions in, fraction out).
  """
  columns = average_tasks(convention)
  res = _by_task(results)
  values = []
  missing = []
  for col in columns:
    if convention in _REPORTED:
      if col not in res:
        missing.append(col)
        continue
      metric = _REPORTED[convention][col]
      if metric not in res[col]:
        raise ValueError(f"glue_average: task {col} has no {metric!r} in its metrics "
                         f"{sorted(res[col])}")
      values.append(float(res[col][metric]))
    elif col == "mnli":
      parts = [task_score(k, res[k]) for k in ("mnli_matched", "mnli_mismatched") if k in res]
      if len(parts) == 2:
        values.append(float(np.mean(parts)))
      else:
        missing.append("mnli_matched and mnli_mismatched")
    elif col in res:
      values.append(task_score(col, res[col]))
    else:
      missing.append(col)
  if missing and strict:
    raise ValueError(f"glue_average ({convention}): results lack {', '.join(missing)}")
  if not values:
    raise ValueError(f"glue_average ({convention}): no task of {columns} in results "
                     f"{sorted(results)}")
  return float(np.mean(values))


def report_names(tasks: Sequence[str]) -> List[str]:
  """The benchmark's display names of canonical task keys (for tables)."""
  names = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "qqp": "QQP", "stsb": "STS-B",
           "mnli_matched": "MNLI-m", "mnli_mismatched": "MNLI-mm", "qnli": "QNLI",
           "rte": "RTE", "wnli": "WNLI", "ax": "AX", "chnsenticorp": "ChnSentiCorp"}
  return [names[canonical_task(t)] for t in tasks]
