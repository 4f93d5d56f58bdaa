"""The step benchmarks' documented default sizes build their objective on synthetic ids:
a base/large config names a BPE or SentencePiece file that the benchmark never reads
(`python bench/bench_roberta_albert_step.py --family=roberta` once stopped on it)."""
import importlib.util
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))

import harness  # noqa: E402  pylint: disable=wrong-import-position


def _module(name):
  spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "bench", name + ".py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _families():
  roberta_albert = _module("bench_roberta_albert_step")
  return [(_module("bench_bert_step").BERT, "base"),
          (roberta_albert.FAMILIES["roberta"], "base"), (roberta_albert.FAMILIES["albert"], "base"),
          (_module("bench_electra_step").FAMILY, "small"), (_module("bench_gpt_step").GPT2, "small"),
          (_module("bench_ernie_step").FAMILY, "base")]


@pytest.mark.parametrize("index", range(6))
def test_default_size_builds_on_synthetic_ids(index):
  family, size = _families()[index]
  _, objective = harness.bench_objective(family, size, 2, 16, 2, vocab_size=family.vocab_size)
  assert objective.vocab_size() == family.vocab_size
