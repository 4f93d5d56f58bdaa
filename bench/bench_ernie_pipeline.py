"""Throughput of ERNIE's knowledge-masking input pipeline on one CPU core, against BERT's.

  python bench/bench_ernie_pipeline.py [--seconds=20] [--vocab=/tmp/zh_vocab.txt]
      [--phrases=/tmp/zh_phrases.txt --entities=/tmp/zh_entities.txt]

Reads the four Chinese novels (<data>/pretrain/zh, $PLM_JAX_DATA or ../shared/data) and
times, in one run with the same single-thread settings (TF intra/inter-op 1, tf.data private
threadpool 1), non-padding tokens/s of the full pretraining pipeline at 128 tokens, batch 32:
  - bert:    plm_jax's BERT MLM + NSP pipeline (configs/bert.py), token masking;
  - basic, phrase, entity: ERNIE's (configs/ernie_zh.py), the whole run at one masking level
    (sentence split, jieba words, phrase / entity matching, unit-aware instances, unit masking),
and each one's ratio to bert. Without --vocab a character vocabulary is learnt from the novels
first (plm_jax.data.zh_vocab, about 20 s); without --phrases, phrases are learnt by PMI from
the first 300 documents; without --entities there are no entities beyond them (the entity
level then masks phrases and words).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_pipeline import _rate, _single_thread  # pylint: disable=wrong-import-position
from plm_jax.data import paths as data_paths  # pylint: disable=wrong-import-position

ZH = os.path.join(data_paths.data_dir(), "pretrain", "zh")


def _configs(vocab, phrases, entities):
  from configs import bert, ernie_zh  # pylint: disable=import-outside-toplevel
  out = {}
  b = bert.get_config("tiny")
  b.data.corpus.update(type="text", paths=os.path.join(ZH, "*.txt"), reader="plain")
  b.data.update(seq_length=128, shuffle_buffer=1000)
  b.data.vocab.update(type="wordpiece", path=vocab, lowercase=True)
  b.mlm.max_predictions = 20
  out["bert"] = b
  for level, start in (("basic", 10**9), ("phrase", 0), ("entity", 0)):
    e = ernie_zh.get_config("small")
    e.data.vocab.path = vocab
    e.data.shuffle_buffer = 1000
    e.ernie.update(phrase_lexicon=phrases, entity_lexicon=entities,
                   learn_phrases_docs=0 if phrases else 300,
                   phrase_from_step=start, entity_from_step=start if level == "entity" else 10**9)
    out[level] = e
  return out


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--seconds", type=float, default=20.0, help="timing window per pipeline")
  p.add_argument("--batch_size", type=int, default=32)
  p.add_argument("--vocab", default="", help="a zh vocab.txt (default: learnt from the novels)")
  p.add_argument("--phrases", default="", help="phrase lexicon (default: learnt by PMI)")
  p.add_argument("--entities", default="", help="entity lexicon (default: none)")
  args = p.parse_args()
  if not os.path.isdir(ZH):
    print(f"SKIP: {ZH} is absent; the benchmark needs the Chinese novels")
    return

  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  from plm_jax.data import zh_vocab  # pylint: disable=import-outside-toplevel
  from plm_jax.objectives.base import get_objective  # pylint: disable=import-outside-toplevel

  with tempfile.TemporaryDirectory() as tmp:
    vocab = args.vocab
    if not vocab:
      vocab = os.path.join(tmp, "vocab.txt")
      if zh_vocab.main([f"--input={ZH}/*.txt", f"--out={vocab}"]) != 0:
        sys.exit("bench_ernie_pipeline.py: could not learn a vocabulary from the novels")
    print(f"ERNIE pipeline benchmark: 1 core, seq_length=128, max_predictions=20, batch "
          f"{args.batch_size}, vocab {vocab}, phrases {args.phrases or 'learnt (300 docs)'}, "
          f"entities {args.entities or 'none'}")
    rates = {}
    for name, config in _configs(vocab, args.phrases, args.entities).items():
      t0 = time.perf_counter()
      ds = _single_thread(get_objective(config).get_dataset("train", args.batch_size, seed=0))
      it = ds.as_numpy_iterator()
      for _ in range(3):
        next(it)
      startup = time.perf_counter() - t0
      rates[name] = _rate(it, lambda b: int(b["attention_mask"].sum()), args.seconds)
      print(f"[{name:6s}] startup (read, units, first batches) {startup:5.1f} s | "
            f"{rates[name]:10,.0f} tokens/s | vs bert {rates[name] / rates['bert']:.2f}",
            flush=True)


if __name__ == "__main__":
  main()
