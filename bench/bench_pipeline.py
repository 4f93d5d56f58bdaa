"""Throughput of the BERT MLM+NSP input pipeline on one CPU core.

  python bench/bench_pipeline.py [--books=20] [--seconds=20]

Reads real books (Gutenberg reader) and Wikipedia (WikiExtractor reader) from
<data>/pretrain ($PLM_JAX_DATA or ../shared/data), tokenizes with the uncased all-MiniLM-L6-v2
vocab.txt (falls back to the builtin vocab), and reports, in one run with the
same single-thread settings (TF intra/inter-op 1, tf.data private threadpool
1):
  - tokens/s of the full pipeline (sentence split, tokenize, sentence pairs,
    masking, feature conversion, batching; non-padding tokens counted), and
  - tokens/s of sentence split + tokenization alone over the same documents,
and their ratio (full / tokenization-only): how much the pairing and masking
stages cost on top of the unavoidable tokenization.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from plm_jax.data import paths as data_paths  # pylint: disable=wrong-import-position

PRETRAIN = os.path.join(data_paths.data_dir(), "pretrain")


def _single_thread(ds):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  options = tf.data.Options()
  options.threading.private_threadpool_size = 1
  options.threading.max_intra_op_parallelism = 1
  options.autotune.enabled = False
  return ds.with_options(options)


def _rate(iterator, count_fn, seconds):
  n, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    n += count_fn(next(iterator))
  return n / (time.perf_counter() - start)


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--books", type=int, default=20, help="number of books to read")
  p.add_argument("--seconds", type=float, default=20.0, help="timing window per stage")
  p.add_argument("--batch_size", type=int, default=32)
  args = p.parse_args()
  if not os.path.isdir(PRETRAIN):
    print(f"SKIP: {PRETRAIN} is absent; the benchmark needs the real books + wiki corpus")
    return

  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  from configs import bert  # pylint: disable=import-outside-toplevel
  from plm_jax.data import preprocessors, sources  # pylint: disable=import-outside-toplevel
  from plm_jax.objectives.base import get_objective  # pylint: disable=import-outside-toplevel

  # A task reads one corpus with one reader, so books and wiki are timed as
  # two runs, each with its own tokenization-only reference.
  books = sorted(os.listdir(os.path.join(PRETRAIN, "books")))
  books = [os.path.join(PRETRAIN, "books", b) for b in books if b.endswith(".txt")][:args.books]
  corpora = {
      "books": (",".join(books), "gutenberg"),
      "wiki": (os.path.join(PRETRAIN, "wiki/enwiki/*/wiki_0[0-2].txt"), "wikiextractor"),
  }
  model = data_paths.minilm_model_dir()
  vocab_path = os.path.join(model, "vocab.txt") if model else ""

  print(f"pipeline benchmark: 1 core, seq_length=128, max_predictions=20, "
        f"vocab={'MiniLM uncased WordPiece' if vocab_path else 'builtin'}")
  for name, (paths, reader) in corpora.items():
    c = bert.get_config("base")
    c.data.corpus.type = "text"
    c.data.corpus.paths = paths
    c.data.corpus.reader = reader
    c.data.shuffle_buffer = 1000
    if vocab_path:
      c.data.vocab.type = "wordpiece"
      c.data.vocab.path = vocab_path
    t0 = time.perf_counter()
    objective = get_objective(c)
    ds = _single_thread(objective.get_dataset("train", args.batch_size, seed=0))
    it = ds.as_numpy_iterator()
    next(it)
    startup = time.perf_counter() - t0
    for _ in range(5):
      next(it)
    full = _rate(it, lambda b: int(b["attention_mask"].sum()), args.seconds)

    vocab = objective.vocabulary()
    docs = sources.load_documents(objective.data.corpus, "train")
    tok = tf.data.Dataset.from_tensor_slices({"text": tf.constant(docs)}).repeat()
    tok = preprocessors.tokenize_sentences(preprocessors.split_sentences(tok), vocab)
    tok = _single_thread(tok.map(lambda ex: tf.size(ex["tokens"].flat_values)))
    tit = tok.as_numpy_iterator()
    for _ in range(5):
      next(tit)
    tokenize_only = _rate(tit, int, args.seconds)
    print(f"[{name:5s}] {len(docs):6d} docs | startup (read+first batch) {startup:5.1f} s | "
          f"full pipeline {full:10,.0f} tokens/s | tokenization only {tokenize_only:10,.0f} "
          f"tokens/s | ratio full/tokenize = {full / tokenize_only:.2f}")


if __name__ == "__main__":
  main()
