"""seqio data sources of documents ({'text': str}) from a `data.corpus` section.

  builtin  the synthetic corpus of plm_jax.data.builtin (no third-party text)
  text     local files read by plm_jax.data.corpora (corpus.paths)
  tfds     seqio.TfdsDataSource(corpus.tfds_name), its text feature renamed to 'text'
Validation is corpus.eval_paths, or else every eval_every_nth document held out
of the same stream (builtin and text). Any objective that starts from raw
documents uses `document_source` + `text_preprocessors`.

Order (builtin and text, whose documents are in memory):
  train       a seeded permutation of all documents, a new one each epoch
              (tf.data shuffle with a buffer as large as the corpus), so the
              whole corpus is mixed from the first step; deterministic given
              the seed, so resuming by skipping batches replays it exactly.
  validation  a fixed sample spread across every held-out document: documents
              in a fixed random order, cut into parts of EVAL_PART_LINES
              lines, served round-robin (the first part of every document,
              then the second...), so the first eval batches already cover
              the whole held-out set.
"""
from __future__ import annotations

import functools
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import seqio
import tensorflow as tf

from plm_jax.data import builtin
from plm_jax.data import corpora
from plm_jax.data.config import CorpusConfig

SPLITS = ("train", "validation")
KEY = "config.data.corpus"
EVAL_PART_LINES = 8           # validation: documents are cut into parts of this many lines
EVAL_ORDER_SEED = 20231       # validation: the fixed order of the held-out documents


def _held_out(docs: Iterator[str], split: str, every_nth: int) -> Iterator[str]:
  for i, doc in enumerate(docs):
    if (i % every_nth == every_nth - 1) == (split == "validation"):
      yield doc


def _documents_fn(corpus: CorpusConfig, split: str,
                  report: Optional[corpora.CorpusReport] = None) -> Callable[[], Iterator[str]]:
  """A re-iterable document stream for one split of a builtin/text corpus."""
  n = corpus.eval_every_nth
  if corpus.type == "builtin":
    return lambda: _held_out(builtin.iter_documents(builtin.NUM_DOCUMENTS, seed=0), split, n)

  def read(paths, key):
    return corpora.iter_documents(paths, corpus.reader, doc_separator=corpus.doc_separator,
                                  max_sentences_per_doc=corpus.max_sentences_per_doc,
                                  config_key=key, on_bad_file=corpus.on_bad_file,
                                  report=report)
  if corpus.eval_paths:
    if split == "validation":
      return lambda: read(corpus.eval_paths, f"{KEY}.eval_paths")
    return lambda: read(corpus.paths, corpora.PATHS_KEY)
  return lambda: _held_out(read(corpus.paths, corpora.PATHS_KEY), split, n)


@functools.lru_cache(maxsize=8)
def load_documents(corpus: CorpusConfig, split: str) -> Tuple[str, ...]:
  """Every document of a builtin/text split, read once per process; an empty split is
  a one-line error naming the config key (not a failure inside tf.data)."""
  report = corpora.CorpusReport()
  docs = tuple(_documents_fn(corpus, split, report)())
  if report.files and docs:
    print(f"corpus, {split} split: {len(docs):,} documents; read {report.summary()}", flush=True)
    for f in report.files:
      logging.info("corpus file %s: %d documents, %d bytes%s", f.path, f.documents, f.bytes,
                   f" (skipped: {f.skipped})" if f.skipped else "")
  if not docs:
    raise ValueError(
        f"{KEY}.eval_every_nth={corpus.eval_every_nth}: {corpus.paths!r} holds fewer "
        f"documents than that, so no '{split}' document is held out; set {KEY}.eval_paths "
        "or lower eval_every_nth")
  return docs


def _local_dataset_fn(split: str, shuffle_files: bool, seed: Optional[int] = None, *,
                      corpus: CorpusConfig) -> tf.data.Dataset:
  """Documents of a builtin/text corpus as a dataset of {'text'}.

  Read into memory once per process (a local corpus is at most a few GB of
  text; larger corpora belong in TFDS) and served with from_tensor_slices: no
  Python generator runs inside tf.data, which keeps the stream deterministic.
  """
  docs = load_documents(corpus, split)
  if split == "validation":
    docs = eval_order(docs)
  ds = tf.data.Dataset.from_tensor_slices({"text": tf.constant(docs, tf.string)})
  if shuffle_files:   # a full permutation per epoch (reshuffled at each repeat)
    ds = ds.shuffle(len(docs), seed=seed, reshuffle_each_iteration=True)
  return ds


def eval_order(docs: Sequence[str], part_lines: int = EVAL_PART_LINES) -> Tuple[str, ...]:
  """Held-out documents in a fixed random order, cut into parts, parts round-robin."""
  order = np.random.default_rng(EVAL_ORDER_SEED).permutation(len(docs))
  parts = []
  for i in order:
    lines = docs[i].split("\n")
    parts.append(["\n".join(lines[k:k + part_lines]) for k in range(0, len(lines), part_lines)])
  out = []
  for round_index in range(max((len(p) for p in parts), default=0)):
    out.extend(p[round_index] for p in parts if round_index < len(p))
  return tuple(out)


def document_source(corpus: CorpusConfig) -> seqio.DataSource:
  if corpus.type in ("builtin", "text"):
    return seqio.FunctionDataSource(
        dataset_fn=functools.partial(_local_dataset_fn, corpus=corpus), splits=SPLITS)
  if corpus.type == "tfds":
    # seqio insists on 'name:version'; an unversioned name (e.g. wikipedia/20230601.en) gets
    # '*.*.*', which TFDS resolves to the builder's default version as tfds.builder(name) would.
    name = corpus.tfds_name if ":" in corpus.tfds_name else corpus.tfds_name + ":*.*.*"
    return seqio.TfdsDataSource(
        tfds_name=name, tfds_data_dir=corpus.tfds_data_dir or None,
        splits={"train": corpus.tfds_train_split, "validation": corpus.tfds_eval_split})
  if corpus.type == "ernie":
    raise ValueError(f"{KEY}.type='ernie' (ready ERNIE-format instances) is read by the "
                     "ernie_mlm_nsp objective only; other objectives read raw text")
  raise ValueError(f"{KEY}.type: unknown type {corpus.type!r}; choose builtin, text or tfds")


def text_preprocessors(corpus: CorpusConfig) -> List[Callable]:
  """Steps that bring a source's examples to {'text'} (TFDS: rename its text feature)."""
  if corpus.type == "tfds":
    return [functools.partial(seqio.preprocessors.rekey, key_map={"text": corpus.tfds_text_key})]
  return []


def tfds_not_found(corpus: CorpusConfig) -> ValueError:
  """The one-line error for a TFDS name that does not resolve (TFDS's own lists all names)."""
  return ValueError(
      f"{KEY}.tfds_name={corpus.tfds_name!r}: no such TFDS dataset (searched "
      f"{KEY}.tfds_data_dir={corpus.tfds_data_dir!r} and the registered builders); "
      "check the name, or prepare it in tfds_data_dir")
