"""Byte-level BPE encoding rate on one CPU core (plm_jax.data.bpe, the pipeline's encoder).

  python bench/bench_bpe.py --vocab=/tmp/bpe_books/vocab.json [--books=10] [--seconds=20]

Without --vocab, a 8,000-token vocabulary is first learnt from the Wikipedia
part of <data>/pretrain (plm_jax.data.bpe_train). Pins the process to one core,
encodes lines of real books (Gutenberg reader) and reports tokens/s: the first
pass over fresh text (every word runs the merges once, then the cache) and a
steady pass over text already seen, plus the same lines through the tf.data
path (encode_tf on batches of 256 lines).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from plm_jax.data import paths as data_paths  # pylint: disable=wrong-import-position

PRETRAIN = os.path.join(data_paths.data_dir(), "pretrain")


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--vocab", default="", help="vocab.json with merges.txt beside it")
  p.add_argument("--books", type=int, default=10)
  p.add_argument("--seconds", type=float, default=20.0)
  args = p.parse_args()
  if not os.path.isdir(PRETRAIN):
    print(f"SKIP: {PRETRAIN} is absent")
    return
  if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  from plm_jax.data import bpe, bpe_train, corpora  # pylint: disable=import-outside-toplevel
  vocab_path = args.vocab
  if not vocab_path:
    out = tempfile.mkdtemp()
    bpe_train.train(os.path.join(PRETRAIN, "wiki/enwiki/*/wiki_*.txt"), out, 8000,
                    reader="wikiextractor")
    vocab_path = os.path.join(out, "vocab.json")
  books = sorted(b for b in os.listdir(os.path.join(PRETRAIN, "books")) if b.endswith(".txt"))
  paths = ",".join(os.path.join(PRETRAIN, "books", b) for b in books[:args.books])
  lines = [l for doc in corpora.iter_documents(paths, "gutenberg") for l in doc.split("\n")
           if l.strip()]
  vocab = bpe.ByteLevelBPEVocabulary(vocab_path)

  def rate(encode, seconds, once=False):
    n, i, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds and not (once and i >= len(lines)):
      n += len(encode(lines[i % len(lines)]))
      i += 1
    return n / (time.perf_counter() - start), i

  cold, seen = rate(vocab.encode_ids, args.seconds, once=True)
  warm, _ = rate(vocab.encode_ids, args.seconds)
  batches = [lines[i:i + 256] for i in range(0, min(len(lines), 256 * 200), 256)]
  start, n = time.perf_counter(), 0
  for b in batches:
    n += int(tf.size(vocab.encode_tf(tf.constant(b)).flat_values))
  graph = n / (time.perf_counter() - start)
  print(f"byte-level BPE ({vocab.vocab_size} tokens), 1 core, {len(lines):,} book lines: "
        f"first pass {cold:,.0f} tokens/s ({seen:,} lines), steady {warm:,.0f} tokens/s, "
        f"tf.data encode_tf {graph:,.0f} tokens/s")


if __name__ == "__main__":
  main()
