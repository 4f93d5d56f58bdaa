"""Runs a comparison config (configs/compare.py) stage by stage; every stage resumes.

  prepare    shared files the families read (vocabularies, lexicons): each step runs a
             plm_jax command line in this process and is skipped once its outputs exist
  pretrain   one run per family, DIR/pretrain/<name>, from the family's own pretraining
             config + the comparison's overrides; with comparison.budget_flops > 0 its
             num_steps = floor(budget / the objective's training FLOPs per step), so every
             family trains on the same compute, counted the same way
             (plm_jax.objectives.flops); a finished run leaves result.json
  finetune   the fine-tuning matrix (plm_jax.finetune.matrix) per task set, DIR/finetune/<set>,
             each family's cells starting from its pretraining export
  report     DIR/report.md, results.json and the plots (plm_jax.compare.report)

Strings in the config may name `{workdir}` (this comparison's directory, absolute) and
`{data}` (the shared data directory, plm_jax.data.paths). A rerun skips every finished run;
a finished run whose recorded config differs from what the comparison asks now is an
error naming the first differing key (delete its directory to redo it).
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import sys
import tempfile
import time
from typing import Any, Dict, List, Mapping, Optional

import ml_collections

RESULT = "result.json"
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def is_comparison(config) -> bool:
  return "comparison" in config and "families" in config


# ---- config plumbing --------------------------------------------------------------------------
def expand(value: Any, workdir: str) -> Any:
  """{workdir} / {data} in strings (recursively through dicts, lists and tuples)."""
  from plm_jax.data import paths  # pylint: disable=import-outside-toplevel
  if isinstance(value, str):
    return value.replace("{workdir}", workdir).replace("{data}", paths.data_dir())
  if isinstance(value, Mapping):
    return {k: expand(v, workdir) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return type(value)(expand(v, workdir) for v in value)
  return value


def load_spec(spec: str, where: str) -> ml_collections.ConfigDict:
  """'configs/bert_books_wiki.py:tiny' -> that file's get_config('tiny') (a path relative to
  the repository or the current directory)."""
  path, _, arg = spec.partition(":")
  full = path if os.path.isabs(path) else os.path.join(_REPO, path)
  if not os.path.isfile(full):
    full = os.path.abspath(path)
  if not os.path.isfile(full):
    raise ValueError(f"{where}: config file {path!r} does not exist")
  if _REPO not in sys.path:
    sys.path.insert(0, _REPO)              # the config files import `configs.<family>`
  name = "_plm_compare_" + os.path.splitext(os.path.basename(full))[0]
  module_spec = importlib.util.spec_from_file_location(name, full)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def apply_overrides(config, overrides: Mapping[str, Any], where: str) -> None:
  from plm_jax.finetune import matrix  # pylint: disable=import-outside-toplevel
  matrix.apply_overrides(config, overrides, where)


def _plain(value: Any) -> Any:
  if isinstance(value, ml_collections.ConfigDict):
    return json.loads(value.to_json())
  return json.loads(json.dumps(value))


def family_names(cmp) -> List[str]:
  """The families in report order (config.comparison.order, else the config's keys)."""
  names = list(cmp.families.keys())
  order = list(cmp.comparison.get("order", ()) or ())
  if not order:
    return names
  if sorted(order) != sorted(names):
    extra = sorted(set(order) ^ set(names))
    raise ValueError(f"config.comparison.order: must list each family once; differs in "
                     f"{extra}")
  return order


def task_set(cmp, name: str) -> str:
  return cmp.families[name].get("task_set", "glue")


# ---- prepare ----------------------------------------------------------------------------------
def prepare(cmp, workdir: str) -> None:
  """Runs each prepare step whose outputs are missing (module main(argv) in-process)."""
  for step_name, step in dict(cmp.get("prepare", {})).items():
    creates = [expand(p, workdir) for p in step["creates"]]
    if all(os.path.exists(p) for p in creates):
      print(f"prepare {step_name}: done, skipped", flush=True)
      continue
    for p in creates:
      os.makedirs(os.path.dirname(p), exist_ok=True)
    argv = [str(a) for a in expand(list(step["args"]), workdir)]
    print(f"prepare {step_name}: python -m {step['module']} {' '.join(argv)}", flush=True)
    module = importlib.import_module(step["module"])
    start = time.time()
    status = module.main(argv)
    if isinstance(status, int) and status:
      raise ValueError(f"config.prepare.{step_name}: {step['module']} exited with status "
                       f"{status} (its error line is above)")
    missing = [p for p in creates if not os.path.exists(p)]
    if missing:
      raise ValueError(f"config.prepare.{step_name}: {step['module']} did not create "
                       f"{missing[0]}")
    print(f"prepare {step_name}: {time.time() - start:.0f} s", flush=True)


def prepare_stand_ins(cmp, workdir: str) -> List[str]:
  """For the dry run: each prepare step whose outputs are missing writes stand-ins instead
  (its module's stand_in(argv): the same layout and size, made-up entries, no corpus read;
  plm_jax.data.stand_in_vocab), so every family's model and objective can be built. A step
  whose module has no stand_in is a ValueError naming it. Returns the lines to print."""
  lines = []
  for step_name, step in dict(cmp.get("prepare", {})).items():
    creates = [expand(p, workdir) for p in step["creates"]]
    if all(os.path.exists(p) for p in creates):
      continue
    module = importlib.import_module(step["module"])
    if not hasattr(module, "stand_in"):
      raise ValueError(f"config.prepare.{step_name}: {step['module']} has no stand_in for the "
                       "dry run; run the comparison's prepare steps first")
    module.stand_in([str(a) for a in expand(list(step["args"]), workdir)])
    missing = [p for p in creates if not os.path.exists(p)]
    if missing:
      raise ValueError(f"config.prepare.{step_name}: {step['module']}.stand_in did not create "
                       f"{missing[0]}")
    lines.append(f"prepare {step_name}: not run; a stand-in of its size for planning")
  return lines


# ---- pretrain ---------------------------------------------------------------------------------
def pretrain_dir(workdir: str, name: str) -> str:
  return os.path.join(workdir, "pretrain", name)


def pretrain_config(cmp, name: str, workdir: str) -> ml_collections.ConfigDict:
  """The family's pretraining config with the comparison's overrides and, under a FLOP
  budget, the number of steps that spends it."""
  from plm_jax.train.config import validate_config  # pylint: disable=import-outside-toplevel
  where = f"config.families.{name}"
  spec = cmp.families[name]
  c = load_spec(spec["pretrain"], f"{where}.pretrain")
  apply_overrides(c, expand(_plain(cmp.get("pretrain_base", {})), workdir),
                  "config.pretrain_base")
  apply_overrides(c, expand(_plain(spec.get("overrides", {})), workdir), f"{where}.overrides")
  budget = float(cmp.comparison.budget_flops)
  if budget > 0:
    _, objective = validate_config(c)
    per_example = objective.train_flops_per_example()
    if per_example is None:
      raise ValueError(f"{where}: objective {c.objective!r} does not count its training "
                       f"FLOPs (train_flops_per_example), so it cannot run at a FLOP budget")
    per_step = per_example * c.train.batch_size
    steps = int(budget // per_step)
    if steps < 1:
      raise ValueError(f"config.comparison.budget_flops={budget:.3g}: below one step of "
                       f"{name} ({per_step:.3g} FLOPs)")
    c.train.num_steps = steps
    c.train.num_epochs = 0.0
    evals = max(int(cmp.comparison.get("pretrain_evals", 4)), 1)
    every = max(steps // evals, 1)
    c.train.eval_every = every
    c.train.checkpoint_every = every
    c.train.log_every = max(min(c.train.log_every, steps // 20), 1)
  return c


def params_count(tree) -> int:
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))


def run_pretrain(cmp, name: str, workdir: str) -> Dict[str, Any]:
  """Trains (or resumes) one family's pretraining run; returns its result.json."""
  from plm_jax.train import trainer  # pylint: disable=import-outside-toplevel
  from plm_jax.train.config import validate_config  # pylint: disable=import-outside-toplevel
  directory = pretrain_dir(workdir, name)
  config = pretrain_config(cmp, name, workdir)
  path = os.path.join(directory, RESULT)
  if os.path.isfile(path):
    from plm_jax.finetune import matrix  # pylint: disable=import-outside-toplevel
    matrix.check_finished(path, config)   # the recorded config must be today's
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  start = time.time()
  final = trainer.train_and_evaluate(config, directory)
  run, objective = validate_config(config)
  per_example = objective.train_flops_per_example()
  per_step = None if per_example is None else per_example * run.train.batch_size
  export = os.path.join(directory, "export", cmp.families[name].get("export", ""))
  result = {
      "name": name, "objective": config.objective,
      "steps": int(final["step"]), "seconds": round(time.time() - start, 1),
      "train_flops_per_step": per_step,
      "train_flops": None if per_step is None else per_step * int(final["step"]),
      "final": {k: float(v) for k, v in final.items()},
      "export": os.path.normpath(export),
      "checkpoint": os.path.join(directory, "checkpoints", str(int(final["step"]))),
      "config": _plain(config)}
  result.update(model_facts(objective, export))
  with open(path, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1)
  return result


def model_facts(objective, export: str) -> Dict[str, Any]:
  """Parameters of the exported (fine-tuned) model and its forward FLOPs per example, when
  the objective counts them."""
  import jax  # pylint: disable=import-outside-toplevel
  facts: Dict[str, Any] = {"params": None, "inference_flops": None}
  models = objective.export_models(jax.eval_shape(objective.init_params, jax.random.PRNGKey(0)))
  sub = os.path.basename(os.path.normpath(export)) if models.keys() - {""} else ""
  if sub in models:
    from flax import linen as nn  # pylint: disable=import-outside-toplevel
    facts["params"] = params_count(nn.meta.unbox(models[sub][1]))
  # One forward pass of an example: the fine-tuned model where the objective says which
  # (ELECTRA: the discriminator alone), else the pretraining network with its heads.
  counter = getattr(objective, "inference_flops_per_example", None)
  facts["inference_flops"] = counter() if counter else objective.forward_flops_per_example()
  return facts


# ---- finetune ---------------------------------------------------------------------------------
def matrix_config(cmp, set_name: str, pretrained: Mapping[str, Mapping[str, Any]],
                  workdir: str) -> ml_collections.ConfigDict:
  """The fine-tuning matrix of one task set: its families' exports as the models."""
  sets = cmp.finetune.task_sets
  if set_name not in sets:
    raise ValueError(f"config.finetune.task_sets: no task set {set_name!r} (a family's "
                     f"task_set names one of {sorted(sets.keys())})")
  m = ml_collections.ConfigDict()
  models = {}
  for name in family_names(cmp):
    if task_set(cmp, name) != set_name:
      continue
    ft = cmp.families[name].get("finetune", {})
    models[name] = {"hf_dir": pretrained[name]["export"], "family": ft.get("family", name),
                    "config": ft.get("config", "glue"),
                    "overrides": expand(_plain(ft.get("overrides", {})), workdir)}
  m.models = models
  m.tasks = tuple(sets[set_name])
  m.seeds = tuple(cmp.comparison.seeds)
  m.base = expand(_plain(cmp.finetune.get("base", {})), workdir)
  m.task_overrides = expand(_plain(cmp.finetune.get("task_overrides", {})), workdir)
  return m


def finetune_dir(workdir: str, set_name: str) -> str:
  return os.path.join(workdir, "finetune", set_name)


# ---- the whole comparison ---------------------------------------------------------------------
def run(cmp, workdir: str) -> Dict[str, Any]:
  from plm_jax.compare import report  # pylint: disable=import-outside-toplevel
  from plm_jax.finetune import matrix  # pylint: disable=import-outside-toplevel
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  names = family_names(cmp)
  prepare(cmp, workdir)
  pretrained = {}
  for i, name in enumerate(names):
    done = os.path.isfile(os.path.join(pretrain_dir(workdir, name), RESULT))
    print(f"[pretrain {i + 1}/{len(names)}] {name}: {'finished, skipped' if done else 'running'}",
          flush=True)
    pretrained[name] = run_pretrain(cmp, name, workdir)
  sets = []
  for name in names:
    if task_set(cmp, name) not in sets:
      sets.append(task_set(cmp, name))
  for set_name in sets:
    print(f"[finetune] task set {set_name}", flush=True)
    matrix.run_matrix(matrix_config(cmp, set_name, pretrained, workdir),
                      finetune_dir(workdir, set_name))
  return report.write(cmp, workdir, pretrained, sets)


def dry_run(cmp, peak_flops: Optional[float] = None) -> List[Dict[str, Any]]:
  """Plans every family's pretraining run on this process's devices (main.py --dry_run
  --devices=N simulates a slice): parameters, FLOPs, memory per device, and the time the
  whole run takes at peak_flops. Raises on the first family that does not fit."""
  # {workdir} of the plans: a fresh directory, so every prepared file is a stand-in made now
  with tempfile.TemporaryDirectory(prefix="plm_compare_dry_run_") as workdir:
    for line in prepare_stand_ins(cmp, workdir):
      print(line, flush=True)
    return _plan_families(cmp, workdir, peak_flops)


def _plan_families(cmp, workdir: str, peak_flops: Optional[float]) -> List[Dict[str, Any]]:
  import jax  # pylint: disable=import-outside-toplevel
  from plm_jax.objectives import flops  # pylint: disable=import-outside-toplevel
  from plm_jax.train import dry_run as dry  # pylint: disable=import-outside-toplevel
  from plm_jax.train.config import validate_config  # pylint: disable=import-outside-toplevel
  rows = []
  for name in family_names(cmp):
    config = pretrain_config(cmp, name, workdir)
    with contextlib.redirect_stdout(io.StringIO()):
      plan = dry.plan(config, peak_flops=peak_flops)
    _, objective = validate_config(config, num_devices=jax.device_count())
    per_example = objective.train_flops_per_example()
    # XLA's cost analysis counts a loop body once (scanned layers, ELMo's LSTM over time),
    # so the run time comes from the analytic count when the objective has one; that count
    # takes the backward pass as one forward (ELECTRA's convention), the time as two.
    per_step = (per_example * config.train.batch_size if per_example is not None
                else plan.flops_per_step)
    work = per_step * 3.0 / flops.TRAIN_FACTOR if per_example is not None else per_step
    step_seconds = (work / jax.device_count() / peak_flops) if peak_flops else None
    row = {"name": name, "devices": jax.device_count(), "params": plan.params,
           "compiled_flops_per_step": plan.flops_per_step, "train_flops_per_step": per_step,
           "steps": int(config.train.num_steps), "batch": int(config.train.batch_size),
           "memory_per_device": plan.memory_per_device, "step_seconds": step_seconds}
    rows.append(row)
    if step_seconds is None:
      cost = "?"
    else:
      run_seconds = step_seconds * row["steps"]
      cost = (f"{duration(run_seconds)} ({run_seconds * jax.device_count() / 3600:,.0f} "
              "device-hours)")
    accum = int(config.train.grad_accum_steps)
    # a micro-batch loop's body is counted once too: the compiled figure is one micro-batch's
    print(f"{name}: {plan.params:,} params, {per_step:.3g} training FLOPs/step (compiled "
          f"program: {plan.flops_per_step:.3g}{' per micro-batch' if accum > 1 else ''}) x "
          f"{row['steps']:,} steps of "
          f"{row['batch']:,}{f' in {accum} micro-batches' if accum > 1 else ''}, "
          f"memory/device {_gib(row['memory_per_device'])}, whole run at peak: {cost}",
          flush=True)
  return rows


def duration(seconds: float) -> str:
  """A run's length in the unit that reads best: seconds, minutes, hours or days."""
  for unit, size in (("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
    if seconds >= 2 * size:
      return f"{seconds / size:.3g} {unit}"
  return f"{seconds:.3g} s"


def _gib(n: Optional[float]) -> str:
  return "?" if n is None else f"{n / 2**30:.2f} GiB"
