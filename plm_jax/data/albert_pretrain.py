"""ALBERT MLM + SOP: sentence-order pairs, n-gram masking, the seqio task, batches.

  {'text'} --split_sentences--> --tokenize_sentences--> --create_sop_instances-->
  [CLS] A [SEP] B [SEP] with A, B two consecutive segments of one document,
  swapped with probability 1/2 (sentence_order_label 1 = swapped, as HF)
  --ngram_mask--> n-gram masking (Lan et al. 2020, section 4.1 / appendix).

Sentence-order pairs (Lan et al. section 3.1): BERT's chunking of a document
into runs of sentences up to a target length (short_seq_prob as BERT), cut at
a random sentence boundary into A and B. A chunk of one sentence is cut at a
random token instead (ALBERT's code falls back to a random-document B there,
which is NSP's negative, not SOP's).

N-gram masking, as ALBERT's create_masked_lm_predictions: budget
num_to_predict = min(P, max(1, round(n_tokens * mask_rate))); the units (tokens,
or whole words with whole_word_masking) are visited from a random order of
start units; at each start an n is drawn from 1..max_ngram with p(n) ∝ 1/n
(renormalised over the units left before the end); if the n-gram overruns the
budget, shorter n are tried; an n-gram touching an already masked unit is
skipped. Every token of a chosen n-gram is predicted; each becomes [MASK] with
mask_token_prob, a random token with random_token_prob, else stays.
Both steps run in numpy (tf.numpy_function) with seqio's per-element seeds.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import List, Optional, Sequence, Tuple

import numpy as np
import seqio
import tensorflow as tf

from plm_jax.data import bert_pretrain, feature_converters, preprocessors, sources, tasks
from plm_jax.data import vocab as vocab_lib

# ---- sentence-order pairs ------------------------------------------------------------------

def _sop_pairs(document: List[List[int]], rng, seq_length: int, short_seq_prob: float):
  """Yields (tokens_a, tokens_b, swapped) from one document (lists of token-id sentences)."""
  max_num_tokens = seq_length - 3
  target = max_num_tokens
  if rng.random() < short_seq_prob:
    target = int(rng.integers(2, max_num_tokens + 1))
  chunk, length = [], 0
  for i, sentence in enumerate(document):
    chunk.append(sentence)
    length += len(sentence)
    if i < len(document) - 1 and length < target:
      continue
    if len(chunk) >= 2:
      a_end = int(rng.integers(1, len(chunk)))
      a = [t for seg in chunk[:a_end] for t in seg]
      b = [t for seg in chunk[a_end:] for t in seg]
    else:
      tokens = chunk[0]
      cut = int(rng.integers(1, len(tokens))) if len(tokens) >= 2 else 1
      a, b = list(tokens[:cut]), list(tokens[cut:])
    preprocessors._truncate_seq_pair(a, b, max_num_tokens, rng)  # pylint: disable=protected-access
    if a and b:
      swapped = int(rng.random() < 0.5)
      yield (b, a, 1) if swapped else (a, b, 0)
    chunk, length = [], 0


def _sop_instances_np(flat, doc_splits, sent_splits, seed, *, seq_length, short_seq_prob,
                      cls_id, sep_id, pad_id):
  rng = np.random.default_rng([int(s) & 0xFFFFFFFF for s in seed])
  flat = flat.tolist()
  rows = []
  for d in range(len(doc_splits) - 1):
    document = [flat[sent_splits[s]:sent_splits[s + 1]]
                for s in range(doc_splits[d], doc_splits[d + 1])]
    rows.extend(_sop_pairs(document, rng, seq_length, short_seq_prob))
  n = len(rows)
  input_ids = np.full([n, seq_length], pad_id, np.int32)
  type_ids = np.zeros([n, seq_length], np.int32)
  labels = np.zeros([n], np.int32)
  for k, (a, b, swapped) in enumerate(rows):
    seq = [cls_id] + a + [sep_id] + b + [sep_id]
    input_ids[k, :len(seq)] = seq
    type_ids[k, len(a) + 2:len(seq)] = 1
    labels[k] = swapped
  return input_ids, type_ids, labels


def create_sop_instances(dataset: tf.data.Dataset, *, vocabulary, seq_length: int,
                         group_size: int, short_seq_prob: float) -> tf.data.Dataset:
  """{'tokens': ragged [S, (T)]} -> input_ids, token_type_ids, attention_mask,
  sentence_order_label (0: A then B as in the text, 1: swapped)."""
  pad_id, cls_id, sep_id = vocab_lib.special_ids(vocabulary, ("pad", "cls", "sep"))
  np_fn = functools.partial(_sop_instances_np, seq_length=seq_length,
                            short_seq_prob=short_seq_prob, cls_id=cls_id, sep_id=sep_id,
                            pad_id=pad_id)

  @seqio.map_over_dataset(num_seeds=1)
  def make(ex, seed):
    tokens = ex["tokens"]                       # ragged [G, (S), (T)]
    ids, types, labels = tf.numpy_function(
        np_fn, [tokens.flat_values, tokens.row_splits, tokens.values.row_splits, seed],
        [tf.int32, tf.int32, tf.int32], stateful=False)
    ids = tf.ensure_shape(ids, [None, seq_length])
    return {"input_ids": ids, "token_type_ids": tf.ensure_shape(types, [None, seq_length]),
            "attention_mask": tf.cast(ids != pad_id, tf.int32),
            "sentence_order_label": tf.ensure_shape(labels, [None])}

  return make(dataset.ragged_batch(group_size)).unbatch()


# ---- n-gram masking --------------------------------------------------------------------------

def ngram_probabilities(max_ngram: int) -> np.ndarray:
  """p(n) ∝ 1/n for n = 1..max_ngram."""
  p = 1.0 / np.arange(1, max_ngram + 1)
  return p / p.sum()


def draw_ngram_lengths(num_units: int, max_ngram: int, rng) -> np.ndarray:
  """n for an n-gram starting at each unit: p(n) ∝ 1/n over 1..min(max_ngram, units left)."""
  u = rng.random(num_units)
  left = np.minimum(max_ngram, num_units - np.arange(num_units))   # [units] >= 1
  n = np.ones(num_units, np.int64)
  for k in range(2, max_ngram + 1):
    cdf = np.cumsum(ngram_probabilities(k))
    rows = left == k
    n[rows] = np.searchsorted(cdf, u[rows] * cdf[-1], side="right") + 1
  return np.minimum(n, left)


def choose_ngrams(sizes: Sequence[int], budget: int, max_ngram: int,
                  rng) -> List[Tuple[int, int, int]]:
  """ALBERT's n-gram choice over units of these token counts: (start, n drawn, n used)."""
  num = len(sizes)
  ends = np.concatenate([[0], np.cumsum(sizes)]).tolist()   # tokens before unit i
  drawn = draw_ngram_lengths(num, max_ngram, rng).tolist()
  order = rng.permutation(num).tolist()
  covered = bytearray(num)
  spans, taken = [], 0
  for s in order:
    if taken >= budget:
      break
    n = drawn[s]
    while n > 1 and taken + ends[s + n] - ends[s] > budget:
      n -= 1
    size = ends[s + n] - ends[s]
    if taken + size > budget or any(covered[s:s + n]):
      continue
    covered[s:s + n] = b"\x01" * n
    spans.append((s, drawn[s], n))
    taken += size
  return spans


def _units(ids: np.ndarray, candidate: np.ndarray, is_continuation: Optional[np.ndarray]):
  """Masking units: each candidate token, or (whole words) a token and its continuations."""
  positions = np.flatnonzero(candidate)
  if is_continuation is None or not len(positions):
    return [[int(i)] for i in positions]
  joins = (np.diff(positions) == 1) & is_continuation[ids[positions[1:]]]
  units = [[int(positions[0])]]
  for i, join in zip(positions[1:].tolist(), joins.tolist()):
    if join:
      units[-1].append(i)
    else:
      units.append([i])
  return units


def ngram_mask_np(ids, seed, *, max_predictions, mask_rate, mask_token_prob, random_token_prob,
                  max_ngram, special_ids, pad_id, mask_id, replacement_ids, is_continuation=None,
                  return_spans=False):
  """ids [L] -> (new ids [L], positions [P], labels [P], weights [P]) (+ spans, units)."""
  rng = np.random.default_rng([int(s) & 0xFFFFFFFF for s in np.ravel(seed)])
  ids = np.asarray(ids)
  candidate = ~np.isin(ids, special_ids)
  units = _units(ids, candidate, is_continuation)
  n_tokens = int(np.sum(ids != pad_id))
  budget = int(min(max_predictions, max(1, round(n_tokens * mask_rate))))
  spans = choose_ngrams([len(u) for u in units], budget, max_ngram, rng)
  positions = np.sort(np.asarray([p for s, _, n in spans for u in units[s:s + n] for p in u],
                                 np.int32))
  out = ids.astype(np.int32).copy()
  u = rng.random(len(positions))
  randoms = replacement_ids[rng.integers(0, len(replacement_ids), len(positions))]
  out[positions] = np.where(u < mask_token_prob, mask_id,
                            np.where(u < mask_token_prob + random_token_prob, randoms,
                                     ids[positions]))
  k = len(positions)
  pad = lambda x, dtype: np.pad(np.asarray(x, dtype), (0, max_predictions - k))
  result = (out, pad(positions, np.int32), pad(ids[positions], np.int32),
            pad(np.ones(k), np.float32))
  return result + (spans, units) if return_spans else result


def ngram_mask_fn(vocabulary, mlm):
  """The numpy masking function for this vocabulary and `mlm` section (partial of ngram_mask_np)."""
  pad_id, cls_id, sep_id, mask_id = vocab_lib.special_ids(vocabulary,
                                                          ("pad", "cls", "sep", "mask"))
  return functools.partial(
      ngram_mask_np, max_predictions=mlm.max_predictions, mask_rate=mlm.mask_rate,
      mask_token_prob=mlm.mask_token_prob, random_token_prob=mlm.random_token_prob,
      max_ngram=mlm.max_ngram, special_ids=np.asarray([pad_id, cls_id, sep_id]), pad_id=pad_id,
      mask_id=mask_id, replacement_ids=vocab_lib.replacement_ids(vocabulary),
      is_continuation=(vocab_lib.continuation_mask(vocabulary) if mlm.whole_word_masking
                       else None))


def ngram_mask(dataset: tf.data.Dataset, *, vocabulary, mlm) -> tf.data.Dataset:
  """Adds masked_lm_positions / ids / weights and masks input_ids (see the module doc)."""
  np_fn = ngram_mask_fn(vocabulary, mlm)
  p = mlm.max_predictions

  @seqio.map_over_dataset(num_seeds=1)
  def mask(ex, seed):
    ids, positions, labels, weights = tf.numpy_function(
        np_fn, [ex["input_ids"], seed], [tf.int32, tf.int32, tf.int32, tf.float32],
        stateful=False)
    out = dict(ex)
    out["input_ids"] = tf.ensure_shape(ids, ex["input_ids"].shape)
    out["masked_lm_positions"] = tf.ensure_shape(positions, [p])
    out["masked_lm_ids"] = tf.ensure_shape(labels, [p])
    out["masked_lm_weights"] = tf.ensure_shape(weights, [p])
    return out

  return mask(dataset)


# ---- task and batches -------------------------------------------------------------------------

def get_task(data, mlm, vocabulary) -> seqio.Task:
  """The ALBERT MLM + SOP task for these settings, registered once by name."""
  settings = {"data": dataclasses.asdict(data), "mlm": dataclasses.asdict(mlm)}
  name = tasks.task_name("albert_mlm_sop", settings)

  def make():
    steps = sources.text_preprocessors(data.corpus) + [
        preprocessors.split_sentences,
        functools.partial(preprocessors.tokenize_sentences, vocabulary=vocabulary),
        functools.partial(create_sop_instances, vocabulary=vocabulary,
                          seq_length=data.seq_length, group_size=data.group_size,
                          short_seq_prob=mlm.short_seq_prob),
        functools.partial(ngram_mask, vocabulary=vocabulary, mlm=mlm),
    ]
    return dict(source=sources.document_source(data.corpus), preprocessors=steps,
                output_features=bert_pretrain.output_features(
                    vocabulary, sentence_label="sentence_order_label"),
                shuffle_buffer_size=max(1, data.shuffle_buffer))
  return tasks.get_or_register(name, make)


def get_dataset(data, mlm, vocabulary, split: str, batch_size: int, seed: int,
                shard_index: int = 0, num_shards: int = 1,
                num_epochs: Optional[int] = None) -> tf.data.Dataset:
  """Batches of fixed-shape ALBERT pretraining features for this host's shard."""
  return bert_pretrain.batches(
      lambda: get_task(data, mlm, vocabulary), feature_converters.SopFeatureConverter(),
      {"inputs": data.seq_length, "masked_lm": mlm.max_predictions}, data, split, batch_size,
      seed, shard_index, num_shards, num_epochs)
