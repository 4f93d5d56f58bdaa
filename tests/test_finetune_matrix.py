"""The matrix runner: cell configs, skipping finished cells, the report's statistics and files."""
import json
import os

import ml_collections
import numpy as np
import pytest

from configs import matrix as matrix_config
from plm_jax.finetune import matrix


def _matrix():
  m = matrix_config.get_config("smoke")
  m.tasks = ("rte", "stsb")
  return m


def _write_result(workdir, model, task, seed, score, extra=None):
  d = matrix.cell_dir(workdir, model, task, seed)
  os.makedirs(d, exist_ok=True)
  dev = {"score": score, "accuracy": score}
  dev.update(extra or {})
  with open(os.path.join(d, matrix.RESULT), "w") as f:
    json.dump({"model": model, "task": task, "seed": seed, "dev": dev, "steps": 4,
               "seconds": 1.0, "padding_fraction": 0.25}, f)
  with open(os.path.join(d, "metrics.jsonl"), "w") as f:
    for step in (2, 4):
      f.write(json.dumps({"split": "eval", "step": step, "score": score * step / 4}) + "\n")


def test_cell_config_applies_base_task_and_model_overrides():
  m = _matrix()
  m.task_overrides = {"stsb": {"task": {"max_seq_length": 32, "buckets": (32,)}}}
  c = matrix.cell_config(m, "tiny_fresh_nodrop", "stsb", 3)
  assert c.seed == 3 and c.task.name == "stsb" and c.train.num_steps == 4
  assert c.task.max_seq_length == 32 and c.model.hidden_dropout == 0.0
  assert matrix.cell_config(m, "tiny_fresh", "rte", 0).model.hidden_dropout == 0.1
  m.base = {"train": {"num_stepz": 3}}
  with pytest.raises(ValueError, match=r"config.base.train.num_stepz: unknown key"):
    matrix.cell_config(m, "tiny_fresh", "rte", 0)


def test_rerun_skips_finished_cells_and_reports(tmp_path, monkeypatch):
  workdir = str(tmp_path)
  m = _matrix()
  scores = {("tiny_fresh", "rte"): (0.50, 0.56), ("tiny_fresh", "stsb"): (0.10, 0.20),
            ("tiny_fresh_nodrop", "rte"): (0.60, 0.62), ("tiny_fresh_nodrop", "stsb"): (0.3, 0.3)}
  for (model, task), values in scores.items():
    for seed, v in zip(m.seeds, values):
      _write_result(workdir, model, task, seed, v, {"spearman": v} if task == "stsb" else None)
  # Every cell is finished: nothing may train.
  monkeypatch.setattr(matrix, "run_cell", lambda *a, **k: pytest.fail("a finished cell ran"))
  data = matrix.run_matrix(m, workdir)
  rte = data["summary"]["tiny_fresh"]["rte"]["score"]
  assert rte["mean"] == pytest.approx(0.53) and rte["std"] == pytest.approx(np.std([0.5, 0.56],
                                                                                   ddof=1))
  # BERT-paper average over the matrix's columns: RTE accuracy and STS-B Spearman.
  assert data["glue_average_bert"]["tiny_fresh"] == pytest.approx((0.53 + 0.15) / 2)
  report = open(os.path.join(workdir, "report.md")).read()
  assert "| tiny_fresh | 53.0 ± 4.2 | 15.0 ± 7.1 | 34.0 |" in report
  assert "(partial: not all nine columns)" in report
  saved = json.load(open(os.path.join(workdir, "results.json")))
  assert len(saved["cells"]) == 8
  for name in ("scores.png", "curves.png"):
    with open(os.path.join(workdir, name), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_missing_cell_runs(tmp_path, monkeypatch):
  workdir = str(tmp_path)
  m = _matrix()
  m.models = {"tiny_fresh": m.models["tiny_fresh"]}
  m.tasks = ("rte",)
  _write_result(workdir, "tiny_fresh", "rte", 0, 0.5)
  ran = []

  def fake_run(matrix_cfg, model, task, seed, wd):
    ran.append((model, task, seed))
    _write_result(wd, model, task, seed, 0.7)

  monkeypatch.setattr(matrix, "run_cell", fake_run)
  data = matrix.run_matrix(m, workdir)
  assert ran == [("tiny_fresh", "rte", 1)]
  assert data["summary"]["tiny_fresh"]["rte"]["score"]["values"] == [0.5, 0.7]
  assert isinstance(m, ml_collections.ConfigDict)


def test_a_finished_cell_with_another_config_stops_the_rerun(tmp_path, monkeypatch):
  workdir = str(tmp_path)
  m = _matrix()
  m.models = {"tiny_fresh": m.models["tiny_fresh"]}
  m.tasks = ("rte",)
  for seed in m.seeds:
    _write_result(workdir, "tiny_fresh", "rte", seed, 0.5)
    path = os.path.join(matrix.cell_dir(workdir, "tiny_fresh", "rte", seed), matrix.RESULT)
    record = json.load(open(path))
    record["config"] = matrix._plain(matrix.cell_config(m, "tiny_fresh", "rte", seed))
    json.dump(record, open(path, "w"))
  monkeypatch.setattr(matrix, "run_cell", lambda *a, **k: pytest.fail("a finished cell ran"))
  assert len(matrix.run_matrix(m, workdir)["cells"]) == 2        # same config: skipped
  m.base.optimizer.learning_rate = 5e-4
  with pytest.raises(ValueError, match=r"seed0/result.json: this cell finished with a "
                     r"different config \(config.optimizer.learning_rate: 0.001 then, "
                     r"0.0005 now\); delete .*seed0 to rerun it"):
    matrix.run_matrix(m, workdir)
