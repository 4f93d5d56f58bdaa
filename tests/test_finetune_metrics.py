"""GLUE metrics agree with scikit-learn and scipy; task scores and the GLUE average."""
import math
import warnings

import numpy as np
import pytest

from plm_jax.finetune import metrics

sk = pytest.importorskip("sklearn.metrics")
stats = pytest.importorskip("scipy.stats")

SEEDS = range(6)


def _labels(rng, n, k, p_same=0.6):
  y = rng.integers(0, k, n)
  p = np.where(rng.random(n) < p_same, y, rng.integers(0, k, n))
  return p, y


@pytest.mark.parametrize("seed", SEEDS)
def test_classification_metrics_match_sklearn(seed):
  rng = np.random.default_rng(seed)
  n = int(rng.integers(5, 400))
  p, y = _labels(rng, n, 2)
  assert metrics.accuracy(p, y) == pytest.approx(sk.accuracy_score(y, p), abs=1e-12)
  assert metrics.f1(p, y) == pytest.approx(sk.f1_score(y, p), abs=1e-12)
  assert metrics.matthews_corr(p, y) == pytest.approx(sk.matthews_corrcoef(y, p), abs=1e-12)
  p3, y3 = _labels(rng, n, 3)                        # AX / MNLI: 3-class R_K
  assert metrics.matthews_corr(p3, y3) == pytest.approx(sk.matthews_corrcoef(y3, p3), abs=1e-12)
  assert metrics.accuracy(p3, y3) == pytest.approx(sk.accuracy_score(y3, p3), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_correlations_match_scipy_with_ties(seed):
  rng = np.random.default_rng(seed)
  n = int(rng.integers(3, 500))
  y = np.round(rng.uniform(0, 5, n) * 5) / 5            # STS-B gold: 0.2 steps, many ties
  p = y + rng.normal(0, 1.0, n)
  if seed % 2:
    p = np.round(p)                                     # ties on the prediction side too
  assert metrics.pearson(p, y) == pytest.approx(stats.pearsonr(p, y)[0], abs=1e-10)
  assert metrics.spearman(p, y) == pytest.approx(stats.spearmanr(p, y)[0], abs=1e-10)
  np.testing.assert_allclose(metrics.average_ranks(p), stats.rankdata(p, method="average"))


def test_degenerate_inputs_are_defined_as_sklearn_and_scipy():
  y = np.array([0, 1, 1, 0, 1])
  const = np.ones(5, dtype=int)
  assert metrics.matthews_corr(const, y) == sk.matthews_corrcoef(y, const) == 0.0
  assert metrics.matthews_corr(y, const) == 0.0         # constant labels as well
  assert metrics.f1(np.zeros(5), np.zeros(5)) == 0.0    # no positives anywhere: 0, like sklearn
  assert metrics.f1(np.zeros(5), np.zeros(5)) == sk.f1_score(np.zeros(5), np.zeros(5),
                                                             zero_division=0)
  assert metrics.matthews_corr(y, y) == pytest.approx(1.0)
  assert metrics.matthews_corr(1 - y, y) == pytest.approx(-1.0)
  yf = np.array([1.0, 2.0, 3.0, 4.0])
  assert math.isnan(metrics.pearson(np.full(4, 2.5), yf))
  assert math.isnan(metrics.spearman(np.full(4, 2.5), yf))
  assert math.isnan(metrics.pearson(yf, np.full(4, 2.5)))
  with np.errstate(all="ignore"), warnings.catch_warnings():
    warnings.simplefilter("ignore")
    assert math.isnan(stats.pearsonr(np.full(4, 2.5), yf)[0])      # scipy: nan as well
    assert math.isnan(stats.spearmanr(np.full(4, 2.5), yf)[0])
  assert metrics.spearman(yf ** 3, yf) == pytest.approx(1.0)


def test_bad_inputs_are_one_line_errors():
  with pytest.raises(ValueError, match="3 predictions for 2 labels"):
    metrics.accuracy([1, 0, 1], [1, 0])
  with pytest.raises(ValueError, match="no examples"):
    metrics.f1([], [])
  with pytest.raises(ValueError, match="NaN or Inf"):
    metrics.pearson([1.0, float("nan")], [1.0, 2.0])
  with pytest.raises(ValueError, match="unknown GLUE task 'sst3'"):
    metrics.task_metrics("sst3", [1], [1])


def test_task_names_and_scores():
  assert [metrics.canonical_task(n) for n in
          ("SST-2", "STS-B", "MNLI-m", "MNLI-mm", "mnli_matched", "glue/qqp", "diagnostic", "AX")
          ] == ["sst2", "stsb", "mnli_matched", "mnli_mismatched", "mnli_matched", "qqp", "ax",
                "ax"]
  p = np.array([1, 1, 0, 0, 1, 0, 1, 1])
  y = np.array([1, 0, 0, 1, 1, 0, 1, 1])
  m = metrics.task_metrics("MRPC", p, y)
  assert set(m) == {"f1", "accuracy", "score"}
  assert m["accuracy"] == 6 / 8 and m["f1"] == pytest.approx(2 * 4 / (2 * 4 + 1 + 1))
  assert m["score"] == pytest.approx((m["f1"] + m["accuracy"]) / 2)
  assert set(metrics.task_metrics("cola", p, y)) == {"mcc", "score"}
  s = metrics.task_metrics("stsb", [0.1, 2.0, 3.5, 3.0], [0.0, 2.5, 4.0, 3.5])
  assert s["score"] == pytest.approx((s["pearson"] + s["spearman"]) / 2)


def _paper_results(rows):
  return {t: dict(zip(metrics.TASK_METRICS[t], v)) for t, v in rows.items()}


def test_glue_average_bert_paper_and_leaderboard():
  # BERT-large on the GLUE test server (BERT paper Table 1 / the GLUE leaderboard).
  res = _paper_results({
      "cola": (60.5,), "sst2": (94.9,), "mrpc": (89.3, 85.4), "stsb": (87.6, 86.5),
      "qqp": (72.1, 89.3), "mnli_matched": (86.7,), "mnli_mismatched": (85.9,),
      "qnli": (92.7,), "rte": (70.1,), "wnli": (65.1,), "ax": (39.6,)})
  assert round(metrics.glue_average(res), 1) == 82.1                       # paper: 82.1
  assert round(metrics.glue_average(res, convention="glue"), 1) == 80.5    # leaderboard: 80.5
  res_wnli = dict(res, wnli={"accuracy": 0.0})           # WNLI does not count for BERT ...
  assert metrics.glue_average(res_wnli) == metrics.glue_average(res)
  assert metrics.glue_average(res_wnli, convention="glue") < metrics.glue_average(
      res, convention="glue")                            # ... and does on the leaderboard
  part = {k: res[k] for k in ("cola", "sst2", "mrpc", "stsb", "rte")}
  assert metrics.glue_average(part) == pytest.approx((60.5 + 94.9 + 89.3 + 86.5 + 70.1) / 5)
  with pytest.raises(ValueError, match="results lack mnli_matched, mnli_mismatched, qqp, qnli$"):
    metrics.glue_average(part, strict=True)
  with pytest.raises(ValueError, match="unknown convention"):
    metrics.glue_average(part, convention="roberta")


def test_every_task_has_a_report_name(tmp_path):
  # The comparison's zh set (ChnSentiCorp) stopped at its report: no display name.
  names = metrics.report_names(list(metrics.TASK_METRICS))
  assert len(names) == len(metrics.TASK_METRICS) and all(names)
  assert metrics.report_names(["chnsenticorp", "sst2"]) == ["ChnSentiCorp", "SST-2"]
  from plm_jax.finetune import matrix  # pylint: disable=import-outside-toplevel
  cell = tmp_path / "cells" / "bert_zh" / "chnsenticorp" / "seed0"
  cell.mkdir(parents=True)
  (cell / matrix.RESULT).write_text(
      '{"model": "bert_zh", "task": "chnsenticorp", "seed": 0, "dev": {"accuracy": 0.75, '
      '"score": 0.75}, "steps": 10, "seconds": 3.0, "padding_fraction": 0.1}')
  assert matrix.cell_dir(str(tmp_path), "bert_zh", "chnsenticorp", 0) == str(cell)
  matrix.write_report(str(tmp_path), ["bert_zh"], ["chnsenticorp"], [0])
  report = (tmp_path / "report.md").read_text()
  assert "ChnSentiCorp" in report and "75.0" in report
