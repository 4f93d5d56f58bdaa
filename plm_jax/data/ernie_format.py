"""The released ERNIE 1.0 pretraining format as a corpus (`data.corpus.type=ernie`).

PaddlePaddle/ERNIE's reader (ernie/reader/pretraining.py, ernie/batching.py) reads
one pretraining instance a line, five ';'-separated fields of space-separated
integers (files may be gzipped, `*.gz`):

  token_ids;sent_ids;pos_ids;seg_labels;label
  1 8 24 7 2 33 5 2;0 0 0 0 0 1 1 1;0 1 2 3 4 5 6 7;-1 0 1 0 -1 0 1 -1;1

token_ids are vocabulary ids of the whole input ([CLS] A [SEP] B [SEP]), sent_ids the
segment (token type) of each, pos_ids the positions, seg_labels ERNIE's unit labels
(0: the token starts a word / phrase / entity, 1: it continues the one before, -1: no
unit, e.g. [CLS] / [SEP]), label 1 when B follows A and 0 when it is random. Here
label becomes next_sentence_label = 1 - label (BERT's 0: IsNext), the segment labels
are the units of both knowledge levels (phrase_seg = entity_seg = seg_labels; the
released data has one segmentation), positions are 0 .. n-1 as the model makes them
(pos_ids are checked for length only). A line longer than data.seq_length is
skipped and counted, as the released reader does; a line with another field count,
fields of different lengths, a non-integer or a label out of range stops the run with
one line naming the file and line.
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
from typing import Iterator, List, Tuple

import numpy as np
import seqio
import tensorflow as tf

from plm_jax.data import corpora

FIELDS = ("token_ids", "sent_ids", "pos_ids", "seg_labels", "label")


@dataclasses.dataclass(frozen=True)
class Instance:
  token_ids: Tuple[int, ...]
  sent_ids: Tuple[int, ...]
  pos_ids: Tuple[int, ...]
  seg_labels: Tuple[int, ...]
  label: int


def _ints(text: str, field: str, where: str) -> Tuple[int, ...]:
  try:
    return tuple(int(t) for t in text.split())
  except ValueError:
    bad = next(t for t in text.split() if not t.lstrip("-").isdigit())
    raise ValueError(f"{where}: field {field}: {bad!r} is not an integer") from None


def parse_line(line: str, where: str) -> Instance:
  """One line -> Instance; a one-line ValueError naming `where` (file and line) otherwise."""
  parts = line.strip().split(";")
  if len(parts) != len(FIELDS):
    raise ValueError(f"{where}: {len(parts)} ';'-separated field(s), expected {len(FIELDS)} "
                     f"({';'.join(FIELDS)})")
  values = {f: _ints(p, f, where) for f, p in zip(FIELDS, parts)}
  n = len(values["token_ids"])
  if n == 0:
    raise ValueError(f"{where}: token_ids is empty")
  lengths = {f: len(values[f]) for f in FIELDS[:4]}
  if len(set(lengths.values())) != 1:
    raise ValueError(f"{where}: the fields' lengths disagree: " +
                     ", ".join(f"{f} {k}" for f, k in lengths.items()))
  if len(values["label"]) != 1 or values["label"][0] not in (0, 1):
    raise ValueError(f"{where}: label must be one integer, 0 or 1, got {parts[4].strip()!r}")
  bad = [s for s in values["seg_labels"] if s not in (-1, 0, 1)]
  if bad:
    raise ValueError(f"{where}: seg_labels must be -1, 0 or 1, got {bad[0]}")
  return Instance(values["token_ids"], values["sent_ids"], values["pos_ids"],
                  values["seg_labels"], values["label"][0])


def iter_file(path: str) -> Iterator[Tuple[int, Instance]]:
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    for number, raw in enumerate(f, start=1):
      where = f"{path} line {number}"
      try:
        line = raw.decode("utf-8")
      except UnicodeDecodeError:
        raise ValueError(f"{where}: not UTF-8 text") from None
      if line.strip():
        yield number, parse_line(line, where)


@functools.lru_cache(maxsize=8)
def load_arrays(paths: str, seq_length: int, config_key: str = corpora.PATHS_KEY):
  """Every instance of the files, padded to seq_length: dict of numpy arrays
  (input_ids, token_type_ids, attention_mask, seg [N, L], next_sentence_label [N])
  and the number of lines skipped as too long."""
  rows: List[Instance] = []
  skipped = 0
  for path in corpora.expand_globs(paths, config_key):
    for _, inst in iter_file(path):
      if len(inst.token_ids) > seq_length:
        skipped += 1
      else:
        rows.append(inst)
  if not rows:
    raise ValueError(f"{config_key}: {paths!r} holds no ERNIE-format instance of at most "
                     f"{seq_length} tokens ({skipped} longer ones skipped)")
  n = len(rows)
  ids = np.zeros([n, seq_length], np.int32)
  types = np.zeros([n, seq_length], np.int32)
  seg = np.full([n, seq_length], -1, np.int32)
  for k, r in enumerate(rows):
    ids[k, :len(r.token_ids)] = r.token_ids
    types[k, :len(r.sent_ids)] = r.sent_ids
    seg[k, :len(r.seg_labels)] = r.seg_labels
  labels = np.asarray([1 - r.label for r in rows], np.int32)
  mask = np.zeros([n, seq_length], np.int32)
  for k, r in enumerate(rows):
    mask[k, :len(r.token_ids)] = 1
  arrays = dict(input_ids=ids, token_type_ids=types, attention_mask=mask, seg=seg,
                next_sentence_label=labels)
  return arrays, skipped


def _split(arrays, split: str, every_nth: int):
  idx = np.arange(len(arrays["input_ids"]))
  held = idx % every_nth == every_nth - 1
  keep = held if split == "validation" else ~held
  return {k: v[keep] for k, v in arrays.items()}


def _dataset_fn(split: str, shuffle_files: bool, seed=None, *, corpus, seq_length: int):
  if corpus.eval_paths:
    paths = corpus.eval_paths if split == "validation" else corpus.paths
    arrays, _ = load_arrays(paths, seq_length)
  else:
    arrays = _split(load_arrays(corpus.paths, seq_length)[0], split, corpus.eval_every_nth)
  if not len(arrays["input_ids"]):
    raise ValueError(f"config.data.corpus.eval_every_nth={corpus.eval_every_nth}: too few "
                     f"lines in {corpus.paths!r} to hold one out; set eval_paths")
  seg = arrays.pop("seg")
  arrays.update(phrase_seg=seg, entity_seg=seg)
  ds = tf.data.Dataset.from_tensor_slices(arrays)
  if shuffle_files:
    ds = ds.shuffle(len(seg), seed=seed, reshuffle_each_iteration=True)
  return ds


def source(corpus, seq_length: int) -> seqio.DataSource:
  """seqio source of ready instances ({input_ids, token_type_ids, attention_mask,
  next_sentence_label, phrase_seg, entity_seg}) from a corpus section of type 'ernie'."""
  return seqio.FunctionDataSource(
      dataset_fn=functools.partial(_dataset_fn, corpus=corpus, seq_length=seq_length),
      splits=("train", "validation"))
