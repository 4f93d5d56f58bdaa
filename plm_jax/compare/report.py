"""The comparison's report: results.json, report.md and four plots in the comparison's workdir.

  results.json          every pretraining run (config, steps, training FLOPs, parameters,
                        checkpoint, export) and every fine-tuning cell (config, seed, steps, dev
                        metrics, and the pretraining run and checkpoint it started from); the
                        per-(family, task) mean and std over seeds and each family's score
  report.md             a table in the form of ELECTRA's Table 1 (model, parameters, training and
                        inference FLOPs, dev score per task as mean ± std over seeds, the GLUE
                        score as ELECTRA computes it), the paper's rows below ours, the other
                        task sets (ERNIE vs BERT on ChnSentiCorp), the pretraining runs, and a
                        generated discussion of the orderings against the papers'
  score_vs_flops.png    GLUE score against training FLOPs: ours and the paper's (labelled)
  scores.png            dev score per task per family: mean bar, one dot per seed
  pretrain_curves.png   each family's pretraining losses against its training FLOPs
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from plm_jax.compare import paper, runner
from plm_jax.finetune import matrix, metrics as metrics_lib


def task_metric(task: str) -> str:
  """The metric ELECTRA's table reports for a task (accuracy for tasks it does not list)."""
  return metrics_lib.ELECTRA_REPORTED.get(metrics_lib.canonical_task(task), "accuracy")


def _load(path: str) -> Dict[str, Any]:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def family_scores(summary, names: Sequence[str], tasks: Sequence[str]) -> Dict[str, Any]:
  """name -> {task: {mean, std, values} of the task's ELECTRA metric, 'average': the mean
  over tasks of the per-task means, 'average_std': the std over seeds of per-seed averages}.

  A correlation is undefined (nan, plm_jax.finetune.metrics) when every dev prediction of a
  seed is the same value. The table prints it as undefined, never as a number; the average
  counts it as 0 (a constant predictor carries no information about the gold scores) and
  lists the task under 'undefined' with the number of seeds, so the report can say so."""
  out: Dict[str, Any] = {}
  for name in names:
    row: Dict[str, Any] = {}
    per_seed: List[List[float]] = []
    for t in tasks:
      stats = summary.get(name, {}).get(t, {}).get(task_metric(t))
      if stats is None:
        continue
      row[t] = {k: stats[k] for k in ("mean", "std", "values")}
      values = [float(v) for v in stats["values"]]
      undefined = sum(math.isnan(v) for v in values)
      if undefined:
        row.setdefault("undefined", {})[t] = undefined
      per_seed.append([0.0 if math.isnan(v) else v for v in values])
    if per_seed and len(per_seed) == len(tasks):
      row["average"] = float(np.mean([np.mean(v) for v in per_seed]))
      n = min(len(v) for v in per_seed)
      seeds_avg = [float(np.mean([v[i] for v in per_seed])) for i in range(n)]
      row["average_std"] = float(np.std(seeds_avg, ddof=1)) if n > 1 else 0.0
    out[name] = row
  return out


def write(cmp, workdir: str, pretrained: Mapping[str, Mapping[str, Any]],
          sets: Sequence[str]) -> Dict[str, Any]:
  sets_data = {}
  for set_name in sets:
    fdir = runner.finetune_dir(workdir, set_name)
    data = _load(os.path.join(fdir, "results.json"))
    names = [n for n in runner.family_names(cmp) if runner.task_set(cmp, n) == set_name]
    tasks = list(cmp.finetune.task_sets[set_name])
    for cell in data["cells"]:
      pre = pretrained[cell["model"]]
      cell["pretrain"] = {k: pre.get(k) for k in ("name", "objective", "steps", "train_flops",
                                                   "checkpoint", "export")}
      cell["workdir"] = matrix.cell_dir(fdir, cell["model"], cell["task"], cell["seed"])
    sets_data[set_name] = {"names": names, "tasks": tasks, "cells": data["cells"],
                           "paper_family": {n: cmp.families[n].get("paper_family", n)
                                            for n in names},
                           "summary": data["summary"],
                           "scores": family_scores(data["summary"], names, tasks)}
  out = {"budget_flops": float(cmp.comparison.budget_flops),
         "seeds": list(cmp.comparison.seeds),
         "score": "ELECTRA's GLUE score: CoLA MCC, STS-B Spearman, accuracy elsewhere "
                  "(plm_jax.finetune.metrics.ELECTRA_REPORTED), mean over the tasks run",
         "pretrain": dict(pretrained), "task_sets": sets_data,
         "paper": {"source": paper.SOURCE, "rows": paper.ELECTRA_TABLE1}}
  with open(os.path.join(workdir, "results.json"), "w", encoding="utf-8") as f:
    json.dump(out, f, indent=1)
  main = sets[0] if sets else None
  if main is not None:
    plot_score_vs_flops(os.path.join(workdir, "score_vs_flops.png"), sets_data[main],
                        pretrained)
    matrix.plot_scores(os.path.join(workdir, "scores.png"), sets_data[main]["summary"],
                       sets_data[main]["names"], sets_data[main]["tasks"], metric=task_metric)
  plot_pretrain_curves(os.path.join(workdir, "pretrain_curves.png"), workdir, pretrained)
  with open(os.path.join(workdir, "report.md"), "w", encoding="utf-8") as f:
    f.write(markdown(cmp, out))
  return out


# ---- markdown -------------------------------------------------------------------------------
def _sci(x: Optional[float]) -> str:
  if x is None or (isinstance(x, float) and math.isnan(x)):
    return "—"
  mant, exp = f"{x:.1e}".split("e")
  return f"{mant}e{int(exp)}"


def _params(n: Optional[float]) -> str:
  if n is None:
    return "—"
  return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n / 1e3:.0f}K"


def _cell(stats: Optional[Mapping[str, Any]]) -> str:
  if not stats:
    return "—"
  values = [float(v) for v in stats["values"]]
  nan = sum(math.isnan(v) for v in values)
  if nan == len(values):
    return "undefined*"
  if nan:   # the defined seeds' mean, marked: the average counts the others as 0
    defined = [v for v in values if not math.isnan(v)]
    return f"{100 * float(np.mean(defined)):.1f}* ({len(defined)} of {len(values)} seeds)"
  if len(values) > 1:
    return f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f}"
  return f"{100 * stats['mean']:.1f}"


def undefined_note(set_data: Mapping[str, Any]) -> List[str]:
  """The footnote for cells marked *, with the fraction of unparseable outputs when the run
  recorded one (text-to-text models: `invalid`)."""
  parts = []
  for name in set_data["names"]:
    for t, k in set_data["scores"].get(name, {}).get("undefined", {}).items():
      n = len(set_data["scores"][name][t]["values"])
      invalid = set_data["summary"].get(name, {}).get(t, {}).get("invalid")
      extra = (f"; {100 * invalid['mean']:.0f}% of its decodes were not numbers and score "
               f"-1, as T5's postprocessor does" if invalid else "")
      parts.append(f"{name} {t}: {k} of {n} seeds{extra}")
  if not parts:
    return []
  return ["", "\\* The correlation is undefined: every dev prediction was the same value ("
          + "; ".join(parts) + "). The score counts an undefined correlation as 0."]


def table(set_data: Mapping[str, Any], pretrained: Mapping[str, Any], with_paper: bool) -> List[str]:
  tasks = set_data["tasks"]
  heads = [f"{n} ({task_metric(t)})" for n, t in zip(metrics_lib.report_names(tasks), tasks)]
  lines = ["| model | params | train FLOPs | inference FLOPs | " + " | ".join(heads)
           + " | score |", "|---|---|---|---|" + "---|" * (len(tasks) + 1)]
  for name in set_data["names"]:
    pre = pretrained[name]
    row = set_data["scores"].get(name, {})
    avg = (f"{100 * row['average']:.1f} ± {100 * row['average_std']:.1f}"
           if "average" in row else "—")
    lines.append(f"| {name} | {_params(pre.get('params'))} | {_sci(pre.get('train_flops'))} | "
                 f"{_sci(pre.get('inference_flops'))} | "
                 + " | ".join(_cell(row.get(t)) for t in tasks) + f" | {avg} |")
  if with_paper:
    for model, (train, infer, params, score) in paper.ELECTRA_TABLE1.items():
      lines.append(f"| paper: {model} | {_params(params)} | {_sci(train)} | {_sci(infer)} | "
                   + " | ".join("" for _ in tasks) + f" | {score:.1f} (8 tasks) |")
  return lines


def ordering(set_data: Mapping[str, Any]) -> List[str]:
  scored = [(row["average"], row.get("average_std", 0.0), n)
            for n, row in set_data["scores"].items() if "average" in row]
  return [n for _, _, n in sorted(scored, reverse=True)]


def discussion(set_data: Mapping[str, Any]) -> List[str]:
  """Each paper ordering between two families of this table: agrees, disagrees, or within
  the seed spread (the difference below the larger of the two seed stds)."""
  by_family = {set_data["paper_family"].get(n, n): n for n in set_data["scores"]}
  scores = {f: set_data["scores"][n] for f, n in by_family.items()
            if "average" in set_data["scores"][n]}
  lines = []
  order = ordering(set_data)
  if order:
    lines.append("Ordering here, by score: " + " > ".join(
        f"{n} {100 * set_data['scores'][n]['average']:.1f}" for n in order) + ".")
  for better, worse, where in paper.PAPER_ORDERINGS:
    if better not in scores or worse not in scores:
      continue
    a, b = scores[better], scores[worse]
    diff = 100 * (a["average"] - b["average"])
    spread = 100 * max(a.get("average_std", 0.0), b.get("average_std", 0.0))
    better_name, worse_name = by_family[better], by_family[worse]
    if abs(diff) <= spread:
      verdict = f"within the seed spread here ({diff:+.1f} points, std up to {spread:.1f})"
    elif diff > 0:
      verdict = f"agrees ({better_name} {diff:+.1f} points over {worse_name})"
    else:
      verdict = f"disagrees ({better_name} {diff:+.1f} points against {worse_name})"
    lines.append(f"- {better_name} above {worse_name} ({where}): {verdict}.")
  return lines


def markdown(cmp, out: Mapping[str, Any]) -> str:
  pretrained = out["pretrain"]
  budget = out["budget_flops"]
  lines = ["# Comparison of the families at equal pretraining compute", ""]
  if budget > 0:
    lines.append(f"Every family pretrained from scratch for {_sci(budget)} training FLOPs "
                 f"(counted by each run with plm_jax.objectives.flops, ELECTRA's conventions: "
                 f"training = 2 x forward), then fine-tuned with seeds {out['seeds']}.")
  else:
    lines.append(f"Every family pretrained with its own config's steps, then fine-tuned with "
                 f"seeds {out['seeds']}.")
  note = cmp.comparison.get("notes", "")
  if note:
    lines += ["", note]
  for i, (set_name, data) in enumerate(out["task_sets"].items()):
    lines += ["", f"## Task set {set_name}", "",
              f"Dev scores x100, mean ± sample std over seeds. Score: {out['score']}."
              if i == 0 else "Dev scores x100, mean ± sample std over seeds.", ""]
    lines += table(data, pretrained, with_paper=(i == 0))
    lines += undefined_note(data)
    if i == 0:
      lines += ["", f"Paper rows: {paper.SOURCE}, GLUE dev over 8 tasks, trained on other data "
                f"at paper scale; for the ordering and the FLOP axis only.", "",
                "![score against training FLOPs](score_vs_flops.png)", "",
                "![dev scores per task](scores.png)"]
    lines += ["", "### Discussion", ""] + (discussion(data) or ["(no complete rows yet)"])
  lines += ["", "## Pretraining runs", "",
            "| model | objective | steps | batch | train FLOPs | seconds | final eval | checkpoint |",
            "|---|---|---|---|---|---|---|---|"]
  for name, pre in pretrained.items():
    ev = ", ".join(f"{k[5:]} {v:.4g}" for k, v in sorted(pre["final"].items())
                   if k.startswith("eval/") and not k.endswith(("examples", "step")))[:160]
    lines.append(f"| {name} | {pre['objective']} | {pre['steps']:,} | "
                 f"{pre['config']['train']['batch_size']} | {_sci(pre.get('train_flops'))} | "
                 f"{pre['seconds']:.0f} | {ev or '—'} | `{pre['checkpoint']}` |")
  lines += ["", "![pretraining curves](pretrain_curves.png)", ""]
  return "\n".join(lines)


# ---- plots ----------------------------------------------------------------------------------
def _pyplot():
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def plot_score_vs_flops(path: str, set_data: Mapping[str, Any],
                        pretrained: Mapping[str, Any]) -> None:
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(8, 5))
  for name in set_data["names"]:
    row = set_data["scores"].get(name, {})
    flops = pretrained[name].get("train_flops")
    if "average" in row and flops:
      # Ours share one budget: a legend, not labels that would overlap at one x.
      ax.errorbar([flops], [100 * row["average"]], yerr=[100 * row["average_std"]], fmt="o",
                  capsize=3, label=f"{name} {100 * row['average']:.1f}")
  for model, (train, _, _, score) in paper.ELECTRA_TABLE1.items():
    ax.scatter([train], [score], marker="s", facecolors="none", edgecolors="gray")
    ax.annotate(f"paper: {model}", (train, score), textcoords="offset points", xytext=(5, -9),
                fontsize=7, color="gray")
  ax.set_xscale("log")
  ax.set_xlabel("training FLOPs")
  ax.set_ylabel("GLUE dev score (ELECTRA's)")
  ax.set_title("score against pretraining compute (squares: the paper's, 8 tasks)")
  if ax.get_legend_handles_labels()[0]:
    ax.legend(title="ours (mean ± seed std)", fontsize=7, title_fontsize=7, loc="upper left")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_pretrain_curves(path: str, workdir: str, pretrained: Mapping[str, Any]) -> None:
  from plm_jax.train.reporting import read_history  # pylint: disable=import-outside-toplevel
  plt = _pyplot()
  names = list(pretrained)
  cols = min(len(names), 4) or 1
  rows = max(math.ceil(len(names) / cols), 1)
  fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.7 * rows), squeeze=False)
  for ax in axes.flat[len(names):]:
    ax.axis("off")
  for ax, name in zip(axes.flat, names):
    per_step = pretrained[name].get("train_flops_per_step") or 1.0
    history = read_history(runner.pretrain_dir(workdir, name))
    for split, style in (("train", "-"), ("eval", "o-")):
      pts = [(r["step"] * per_step, r["loss"]) for r in history
             if r.get("split") == split and "loss" in r]
      if pts:
        ax.plot(*zip(*pts), style, markersize=3, label=f"{split} loss")
    ax.set_title(f"{name} ({pretrained[name]['objective']})", fontsize=8)
    ax.set_xlabel("training FLOPs" if pretrained[name].get("train_flops_per_step") else "step",
                  fontsize=7)
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=6)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
