"""RoBERTa and ALBERT learn on books + Wikipedia: held-out MLM accuracy well above the unigram
baseline (slow: a vocabulary learnt from the corpus, then 600 tiny-model steps each, about
10-15 minutes per family on 2 CPU cores: `python -m pytest -m slow
tests/test_learning_roberta_albert.py -s`)."""
import itertools
import os
import re

import pytest

import main_runner
from plm_jax.data import paths

REPO = main_runner.REPO
WIKI = os.path.join(paths.data_dir(), "pretrain", "wiki", "enwiki")


def _final_metrics(stdout: str) -> dict:
  lines = [l for l in stdout.splitlines() if l.startswith("final metrics:")]
  assert lines, stdout[-3000:]
  return {k: float(v) for k, v in re.findall(r"([\w/]+)=([-\d.eE+nai]+)", lines[-1])}


def _baseline(config) -> float:
  from plm_jax.data import stats  # pylint: disable=import-outside-toplevel
  from plm_jax.objectives.base import get_objective  # pylint: disable=import-outside-toplevel
  ds = get_objective(config).get_dataset("validation", config.train.batch_size, config.seed,
                                         num_epochs=1)
  return stats.unigram_baseline_accuracy(
      itertools.islice(ds.as_numpy_iterator(), config.train.eval_steps))


@pytest.mark.slow
@pytest.mark.parametrize("family", ["roberta", "albert"])
def test_tiny_model_beats_unigram_baseline_on_books_and_wiki(tmp_path, family):
  if not os.path.isdir(WIKI):
    pytest.skip(f"pretraining corpus not found at {WIKI}")
  globs = os.path.join(WIKI, "*", "wiki_*.txt")
  if family == "roberta":
    from plm_jax.data import bpe_train  # pylint: disable=import-outside-toplevel
    bpe_train.train(globs, str(tmp_path / "bpe"), 8000, reader="wikiextractor")
    vocab = str(tmp_path / "bpe" / "vocab.json")
  else:
    from plm_jax.data import spm_train  # pylint: disable=import-outside-toplevel
    spm_train.train(globs, str(tmp_path / "spm"), 8000, reader="wikiextractor")
    vocab = str(tmp_path / "spm.model")
  config_file = os.path.join(REPO, "configs", f"{family}_books_wiki.py")
  result = main_runner.run(str(tmp_path / "w"), f"--config={config_file}:tiny",
                           f"--config.data.vocab.path={vocab}", tiny=False, timeout=3600)
  assert result.returncode == 0, result.stderr[-3000:]
  print("\n".join(l for l in result.stdout.splitlines() if l.startswith("eval")))
  import importlib  # pylint: disable=import-outside-toplevel
  config = importlib.import_module(f"configs.{family}_books_wiki").get_config("tiny")
  config.data.vocab.path = vocab
  metrics, baseline = _final_metrics(result.stdout), _baseline(config)
  print(f"{family} books+wiki: held-out MLM accuracy {metrics['eval/mlm_accuracy']:.3f} vs "
        f"unigram baseline {baseline:.3f}")
  assert metrics["eval/mlm_accuracy"] > 1.5 * baseline
