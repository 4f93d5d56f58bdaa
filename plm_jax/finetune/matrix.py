"""The comparison runner: fine-tune every (model, task, seed) cell, then report.

  python -m plm_jax.finetune.matrix --config=configs/matrix.py:smoke --workdir=DIR

The matrix config lists `models` (name -> {hf_dir, family, and optionally config: the
configs/ file of its cells, `glue` by default, `glue_t5` for T5's text-to-text}), `tasks` (GLUE names),
`seeds`, and `base` overrides applied to every cell's configs/glue.py config (and
`task_overrides`: task -> overrides). Each cell runs in DIR/cells/<model>/<task>/seed<k>
through the trainer (resumable: a killed cell continues from its checkpoint) and ends
with a result.json; a rerun skips every cell that has one. Then DIR gets:

  results.json   every cell's dev metrics (best checkpoint by the task's score), steps,
                 time, padding fraction; and the per-(model, task) mean and std over seeds
  report.md      the results table (score mean ± std over seeds, in GLUE points x100),
                 the GLUE average as the BERT paper computes it (partial when the matrix
                 lacks some of its tasks: the table says which are in), per-metric details
  scores.png     dev score per task per model: mean bar, one dot per seed
  curves.png     dev score against training step per task, a line per (model, seed)
"""
from __future__ import annotations

import json
import math
import os
import time
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

from plm_jax.finetune import metrics as metrics_lib

RESULT = "result.json"


def cell_dir(workdir: str, model: str, task: str, seed: int) -> str:
  return os.path.join(workdir, "cells", model, task, f"seed{seed}")


def apply_overrides(config, overrides: Mapping[str, Any], where: str) -> None:
  """Nested {section: {key: value}} overrides onto a run config (unknown keys: an error
  naming `where`.key); a dict value onto a section recurses, anything else replaces."""
  for key, value in overrides.items():
    if key not in config:
      raise ValueError(f"{where}.{key}: unknown key in the run config")
    if hasattr(value, "items") and hasattr(config[key], "items"):
      apply_overrides(config[key], value, f"{where}.{key}")
    else:
      config[key] = value


def cell_config(matrix, model: str, task: str, seed: int):
  """configs/glue.py:<task> with the matrix's base and task overrides, the model and seed."""
  import importlib  # pylint: disable=import-outside-toplevel
  if model not in matrix.models:
    raise ValueError(f"matrix: unknown model {model!r}")
  module = matrix.models[model].get("config", "glue")     # configs/<module>.py, e.g. glue_t5
  try:
    glue_config = importlib.import_module(f"configs.{module}")
  except ModuleNotFoundError:
    raise ValueError(f"config.models.{model}.config: no config file configs/{module}.py"
                     ) from None
  c = glue_config.get_config(task)
  apply_overrides(c, dict(matrix.get("base", {})), "config.base")
  apply_overrides(c, dict(matrix.get("task_overrides", {}).get(task, {})), f"config.task_overrides.{task}")
  spec = matrix.models[model]
  c.init.hf_dir = spec.get("hf_dir", "")
  c.model.family = spec.get("family", "bert")
  apply_overrides(c, dict(spec.get("overrides", {})), f"config.models.{model}.overrides")
  c.seed = int(seed)
  return c


def run_cell(matrix, model: str, task: str, seed: int, workdir: str) -> Dict[str, Any]:
  """Trains one cell (or resumes it) and writes its result.json."""
  from plm_jax.train import trainer  # pylint: disable=import-outside-toplevel
  from plm_jax.train.config import validate_config  # pylint: disable=import-outside-toplevel
  directory = cell_dir(workdir, model, task, seed)
  config = cell_config(matrix, model, task, seed)
  start = time.time()
  final = trainer.train_and_evaluate(config, directory)
  run, objective = validate_config(config)
  dev = {k[len("best/"):]: v for k, v in final.items() if k.startswith("best/")}
  if not dev:
    dev = {k[len("eval/"):]: v for k, v in final.items() if k.startswith("eval/")}
  result = {"model": model, "task": task, "seed": int(seed), "dev": dev,
            "steps": int(final["step"]), "seconds": round(time.time() - start, 1),
            "padding_fraction": round(objective.padding_fraction(run.train.batch_size,
                                                                 run.seed), 4),
            "config": _plain(config)}
  with open(os.path.join(directory, RESULT), "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1)
  return result


def _plain(config) -> Dict[str, Any]:
  """A run config as JSON values (tuples as lists), for result.json and comparison."""
  return json.loads(config.to_json())


def _flat(d: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, Mapping):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def check_finished(path: str, config) -> None:
  """A finished cell's recorded config must be the one the matrix asks for now: a changed
  matrix (learning rate, steps, checkpoint) would otherwise mix old results into the report."""
  with open(path, encoding="utf-8") as f:
    recorded = json.load(f).get("config")
  if recorded is None:           # written before configs were recorded
    return
  old, new = _flat(recorded), _flat(_plain(config))
  diff = sorted(k for k in set(old) | set(new) if old.get(k, "<absent>") != new.get(k, "<absent>"))
  if diff:
    k = diff[0]
    raise ValueError(f"{path}: this cell finished with a different config (config.{k}: "
                     f"{old.get(k, '<absent>')!r} then, {new.get(k, '<absent>')!r} now"
                     f"{f'; {len(diff) - 1} more' if len(diff) > 1 else ''}); delete "
                     f"{os.path.dirname(path)} to rerun it, or restore the matrix config")


def run_matrix(matrix, workdir: str) -> Dict[str, Any]:
  cells = [(m, t, int(s)) for m in matrix.models for t in matrix.tasks for s in matrix.seeds]
  for model, task, seed in cells:
    path = os.path.join(cell_dir(workdir, model, task, seed), RESULT)
    if os.path.isfile(path):
      check_finished(path, cell_config(matrix, model, task, seed))
  for i, (model, task, seed) in enumerate(cells):
    path = os.path.join(cell_dir(workdir, model, task, seed), RESULT)
    if os.path.isfile(path):
      print(f"[{i + 1}/{len(cells)}] {model} {task} seed {seed}: finished, skipped", flush=True)
      continue
    print(f"[{i + 1}/{len(cells)}] {model} {task} seed {seed}: running", flush=True)
    run_cell(matrix, model, task, seed, workdir)
  return write_report(workdir, list(matrix.models), list(matrix.tasks), list(matrix.seeds))


def _load_results(workdir: str, models, tasks, seeds) -> List[Dict[str, Any]]:
  out = []
  for m in models:
    for t in tasks:
      for s in seeds:
        path = os.path.join(cell_dir(workdir, m, t, int(s)), RESULT)
        if os.path.isfile(path):
          with open(path, encoding="utf-8") as f:
            out.append(json.load(f))
  return out


def summarize(results: Sequence[Mapping[str, Any]]) -> Dict[str, Dict[str, Dict[str, Any]]]:
  """model -> task -> {metric: {mean, std, values}} over seeds (std: sample, ddof=1)."""
  table: Dict[str, Dict[str, Dict[str, Any]]] = {}
  for r in results:
    cell = table.setdefault(r["model"], {}).setdefault(r["task"], {})
    for k, v in r["dev"].items():
      cell.setdefault(k, {"values": []})["values"].append(float(v))
  for tasks in table.values():
    for metrics in tasks.values():
      for stats in metrics.values():
        v = np.asarray(stats["values"])
        stats["mean"] = float(np.mean(v))
        stats["std"] = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
  return table


def _fmt(stats: Mapping[str, Any]) -> str:
  if math.isnan(stats["mean"]):
    return "nan"
  if len(stats["values"]) > 1:
    return f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f}"
  return f"{100 * stats['mean']:.1f}"


def glue_averages(summary, models, tasks) -> Dict[str, float]:
  """Per model: the BERT-paper GLUE average over the matrix's tasks (mean of seed means)."""
  out = {}
  for m in models:
    res = {t: {k: s["mean"] for k, s in summary.get(m, {}).get(t, {}).items()}
           for t in tasks if t in summary.get(m, {})}
    try:
      out[m] = metrics_lib.glue_average(res, convention="bert")
    except ValueError:
      out[m] = float("nan")
  return out


def write_report(workdir: str, models, tasks, seeds) -> Dict[str, Any]:
  results = _load_results(workdir, models, tasks, seeds)
  summary = summarize(results)
  averages = glue_averages(summary, models, tasks)
  in_avg = [t for t in tasks if metrics_lib.canonical_task(t) in metrics_lib.BERT_REPORTED]
  data = {"cells": results, "summary": summary, "glue_average_bert": averages,
          "glue_average_tasks": in_avg, "seeds": list(seeds)}
  with open(os.path.join(workdir, "results.json"), "w", encoding="utf-8") as f:
    json.dump(data, f, indent=1)
  names = metrics_lib.report_names(tasks)
  lines = ["# Fine-tuning results", "",
           f"Dev-set scores x100 (the best evaluation of each run by the task's GLUE score), "
           f"mean ± sample std over seeds {list(seeds)}. Score: CoLA MCC, STS-B mean of "
           f"Pearson and Spearman, MRPC/QQP mean of F1 and accuracy, accuracy elsewhere. "
           f"GLUE avg: as in the BERT paper (Table 1's columns: STS-B Spearman, MRPC/QQP F1), "
           f"over {', '.join(metrics_lib.report_names(in_avg)) or 'none'}"
           f"{' (partial: not all nine columns)' if len(in_avg) < 9 else ''}.", "",
           "| model | " + " | ".join(names) + " | GLUE avg |",
           "|---|" + "---|" * (len(names) + 1)]
  for m in models:
    row = [m]
    for t in tasks:
      stats = summary.get(m, {}).get(t, {}).get("score")
      row.append(_fmt(stats) if stats else "—")
    avg = averages.get(m, float("nan"))
    row.append("nan" if math.isnan(avg) else f"{100 * avg:.1f}")
    lines.append("| " + " | ".join(row) + " |")
  lines += ["", "## Every metric", "", "| model | task | metric | mean ± std | seeds |",
            "|---|---|---|---|---|"]
  for m in models:
    for t, name in zip(tasks, names):
      for k, stats in sorted(summary.get(m, {}).get(t, {}).items()):
        if k in ("loss", "examples", "step"):
          continue
        vals = ", ".join(f"{100 * v:.1f}" for v in stats["values"])
        lines.append(f"| {m} | {name} | {k} | {_fmt(stats)} | {vals} |")
  pads = {(r["model"], r["task"]): r.get("padding_fraction") for r in results}
  lines += ["", "## Cost", "", "| model | task | seconds per run (mean) | steps | padding |",
            "|---|---|---|---|---|"]
  for m in models:
    for t, name in zip(tasks, names):
      rs = [r for r in results if r["model"] == m and r["task"] == t]
      if rs:
        lines.append(f"| {m} | {name} | {np.mean([r['seconds'] for r in rs]):.0f} | "
                     f"{rs[0]['steps']} | {100 * (pads.get((m, t)) or 0):.1f}% |")
  lines += ["", "![dev scores](scores.png)", "", "![training curves](curves.png)", ""]
  with open(os.path.join(workdir, "report.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines))
  plot_scores(os.path.join(workdir, "scores.png"), summary, models, tasks)
  plot_curves(os.path.join(workdir, "curves.png"), workdir, models, tasks, seeds)
  return data


def plot_scores(path: str, summary, models, tasks, metric=None) -> None:
  """Bars of each model's mean per task with one dot per seed. metric(task) names the metric
  plotted (default: each task's GLUE `score`); a bar that is nan on every seed (an undefined
  correlation) is marked 'undefined' instead of left out silently."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  metric = metric or (lambda task: "score")
  fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(tasks), 4))
  width = 0.8 / max(len(models), 1)
  x = np.arange(len(tasks))
  for j, m in enumerate(models):
    means, errs = [], []
    offset = (j - (len(models) - 1) / 2) * width
    for i, t in enumerate(tasks):
      stats = summary.get(m, {}).get(t, {}).get(metric(t))
      values = 100 * np.asarray(stats["values"], float) if stats else np.zeros(0)
      defined = values[~np.isnan(values)]
      means.append(float(np.mean(defined)) if len(defined) else np.nan)
      errs.append(float(np.std(defined, ddof=1)) if len(defined) > 1 else 0)
      if len(defined):
        ax.scatter(np.full(len(defined), x[i] + offset), defined, color="black", s=10, zorder=3)
      elif len(values):
        ax.text(x[i] + offset, 1, "undefined", rotation=90, ha="center", va="bottom",
                fontsize=7)
    ax.bar(x + offset, means, width, yerr=errs, capsize=3, label=m)
  ax.set_xticks(x)
  ax.set_xticklabels([f"{n}\n({metric(t)})" if metric(t) != "score" else n
                      for n, t in zip(metrics_lib.report_names(tasks), tasks)])
  ax.set_ylabel("dev score x100 (dots: seeds)")
  ax.axhline(0, color="gray", linewidth=0.5)
  ax.legend(fontsize=8)
  ax.set_title("GLUE dev scores")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_curves(path: str, workdir: str, models, tasks, seeds) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  from plm_jax.train.reporting import read_history  # pylint: disable=import-outside-toplevel
  fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3), squeeze=False)
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for i, (t, name) in enumerate(zip(tasks, metrics_lib.report_names(tasks))):
    ax = axes[0][i]
    for j, m in enumerate(models):
      for k, s in enumerate(seeds):
        rows = [r for r in read_history(cell_dir(workdir, m, t, int(s)))
                if r["split"] == "eval" and "score" in r]
        if rows:
          ax.plot([r["step"] for r in rows], [100 * r["score"] for r in rows],
                  color=colors[j % len(colors)], alpha=0.8, marker=".",
                  label=m if k == 0 else None)
    ax.set_title(name)
    ax.set_xlabel("step")
    if i == 0:
      ax.set_ylabel("dev score x100")
      ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv=None) -> None:
  from absl import app, flags  # pylint: disable=import-outside-toplevel
  from ml_collections import config_flags  # pylint: disable=import-outside-toplevel
  config = config_flags.DEFINE_config_file("config", None, "Matrix config, e.g. "
                                           "configs/matrix.py:smoke.", lock_config=False)
  workdir = flags.DEFINE_string("workdir", None, "Matrix directory (cells, report).")

  def run(args):
    from absl import logging  # pylint: disable=import-outside-toplevel
    logging.set_verbosity(logging.WARNING)   # Orbax logs every save at INFO
    from plm_jax import startup  # pylint: disable=import-outside-toplevel
    startup.quiet_tensorflow()
    startup.enable_compilation_cache()       # every cell of one model reuses its compiles
    if len(args) > 1:
      raise app.UsageError(f"unexpected arguments {args[1:]}")
    if config.value is None or not workdir.value:
      raise app.UsageError("--config and --workdir are required")
    try:
      data = run_matrix(config.value, workdir.value)
    except (ValueError, FileNotFoundError) as e:
      raise SystemExit(f"error: {str(e).splitlines()[0]}") from None
    print(f"wrote {os.path.join(workdir.value, 'report.md')} "
          f"({len(data['cells'])} cells)", flush=True)

  app.run(run, argv=argv)


if __name__ == "__main__":
  main()
