"""XLNet pretraining data: the released code's layout (data_utils.py), as parallel streams.

  {'text'} --tokenize--> document tokens --group (group_size documents, numpy)-->
  the group's tokens cut into `batch_size` parallel streams (bi_data: half the streams,
  plus each of them reversed) --> one row per stream and step, step-major:

    [reuse_length tokens of the stream] [A] <sep> [B] <sep> <cls>
    token_type_ids  0 ...                 0    0   1   1     2

The stream advances reuse_length tokens per step, so row b of step t+1 continues row b
of step t: the memory the model keeps of step t's first reuse_length positions is the
context that precedes step t+1's. A is the stream after the reused part, B its
continuation or (half the time) a piece from elsewhere in the same stream; A's length is
uniform. Batches must keep this order (no row shuffling): documents are shuffled, rows
are not.

Prediction targets (partial prediction with span-based targets): each part (the reused
part, and A + B) gets its share of num_predict targets, sampled as spans of 1..max_gram
words (p(n) ~ 1/n), each inside a context of n * mask_alpha / mask_beta tokens, then
topped up with single tokens to the exact count; <sep> / <cls> are never targets. The
factorisation order of a part is its context (non-target) tokens, as one block that
sees itself, then its targets in a random order: the targets are exactly the last
num_predict / length (1/K) of each order. The reused part comes first and never sees
the rest (so the memory carries nothing of the future). perm_size > 0 (the released
code's `perm_size`, which must divide both parts' lengths) samples the order within
blocks of perm_size positions, as its _local_perm: one permutation of perm_size ranks,
the same for every block, block k's positions ranked after block k-1's, so a part's
targets come block by block (each block's in that permuted order) and a target never
sees a later block's targets; 0: one block per part. Features per row:
  input_ids, token_type_ids [L]; perm_mask [L, L] (1: i may not attend to j);
  target_index, target_ids [P] int32; target_weights [P] float32 (0: padding).
"""
from __future__ import annotations

import dataclasses
import functools
import types
import zlib
from typing import Optional, Tuple

import numpy as np
import seqio
import tensorflow as tf

from plm_jax.data import bert_pretrain, sources, tasks
from plm_jax.data import vocab as vocab_lib

INT_FEATURES = ("input_ids", "token_type_ids", "target_index", "target_ids")
FEATURES = INT_FEATURES + ("perm_mask", "target_weights")
# What make_rows emits: the factorisation order [L] instead of the [L, L] mask, which is
# built row by row afterwards (a group of long books gives thousands of rows).
ROW_FEATURES = INT_FEATURES + ("order", "target_weights")
Spec = seqio.FeatureConverter.FeatureSpec


class XlnetFeatureConverter(seqio.FeatureConverter):
  """The rows as they are (already fixed-shape); perm_mask is [L, L]."""
  TASK_FEATURES = {**{k: Spec(dtype=tf.int32) for k in INT_FEATURES},
                   "perm_mask": Spec(dtype=tf.int32, rank=2),
                   "target_weights": Spec(dtype=tf.float32)}
  MODEL_FEATURES = TASK_FEATURES
  PACKING_FEATURE_DTYPES = {}

  def __init__(self, **kwargs):
    super().__init__(pack=False, **kwargs)

  def _convert_features(self, ds, task_feature_lengths):
    return ds

  def get_model_feature_lengths(self, task_feature_lengths):
    return dict(task_feature_lengths)


def split_predictions(num_predict: int, seq_length: int, reuse_length: int) -> Tuple[int, int]:
  """Targets of the reused part and of the rest, proportional to their lengths."""
  first = int(round(num_predict * reuse_length / seq_length))
  return first, num_predict - first


def span_mask(is_start: np.ndarray, goal: int, rng: np.random.Generator, max_gram: int = 5,
              mask_alpha: int = 6, mask_beta: int = 1) -> np.ndarray:
  """bool [n] with exactly min(goal, n) True: n-gram word spans, then single tokens."""
  n = len(is_start)
  goal = min(goal, n)
  mask = np.zeros(n, bool)
  grams = np.arange(1, max_gram + 1)
  p = 1.0 / grams
  p /= p.sum()
  count = cur = 0
  while cur < n and count < goal:
    k = min(int(rng.choice(grams, p=p)), goal - count)
    ctx = (k * mask_alpha) // mask_beta
    left = int(rng.integers(ctx)) if ctx > 0 else 0
    beg = cur + left
    while beg < n and not is_start[beg]:
      beg += 1
    if beg >= n:
      break
    end, words = beg + 1, 1
    while end < n:
      if is_start[end]:
        words += 1
        if words > k:
          break
      end += 1
    end = min(end, beg + goal - count)
    mask[beg:end] = True
    count += end - beg
    cur = end + ctx - left
  free = np.flatnonzero(~mask)
  mask[rng.choice(free, goal - count, replace=False)] = True
  return mask


def sample_order(is_target: np.ndarray, reuse_length: int, rng: np.random.Generator,
                 perm_size: int = 0):
  """(order [L], context_ends): the factorisation order, part by part: each part's
  context positions (shuffled), then its targets (shuffled; perm_size > 0: ranked within
  blocks of perm_size positions, see the module doc); context_ends[p] = the end, in
  `order`, of part p's context block."""
  order, ends = [], []
  for lo, hi in ((0, reuse_length), (reuse_length, len(is_target))):
    pos = np.arange(lo, hi)
    ctx, tgt = pos[~is_target[lo:hi]], pos[is_target[lo:hi]]
    order += list(rng.permutation(ctx))
    ends.append(len(order))
    if 0 < perm_size < hi - lo:
      if (hi - lo) % perm_size:
        raise ValueError(f"perm_size {perm_size} does not divide a part of {hi - lo} tokens")
      ranks = rng.permutation(perm_size)                  # the same within every block
      rel = tgt - lo
      order += list(tgt[np.argsort((rel // perm_size) * perm_size + ranks[rel % perm_size])])
    else:
      order += list(rng.permutation(tgt))
  return np.asarray(order, np.int64), tuple(ends)


def perm_mask_from_order(order: np.ndarray, is_target: np.ndarray, reuse_length: int
                         ) -> np.ndarray:
  """int32 [L, L], 1 where i may not attend to j (the released code's rank trick): within a
  part, a target sees the context and the targets before it; a context token sees the
  context (itself included). The rest sees all of the reused part; not vice versa."""
  n = len(order)
  rank = np.empty(n, np.int64)
  rank[order] = np.arange(n)
  rank = np.where(is_target, rank, -1)
  part = np.arange(n) >= reuse_length
  self_rank = np.where(is_target, rank, rank + 1)
  hidden = (self_rank[:, None] <= rank[None, :]) & is_target[None, :]
  hidden &= part[:, None] == part[None, :]
  hidden |= ~part[:, None] & part[None, :]
  return hidden.astype(np.int32)


def row_perm_mask(order: np.ndarray, target_index: np.ndarray, target_weights: np.ndarray,
                  reuse_length: int) -> np.ndarray:
  """One row's perm_mask [L, L] from its order and targets (make_rows' outputs)."""
  is_target = np.zeros(len(order), bool)
  is_target[target_index[target_weights > 0]] = True
  return perm_mask_from_order(order, is_target, reuse_length)


def with_perm_masks(rows, reuse_length: int):
  """make_rows' tuple (ROW_FEATURES) -> a dict of FEATURES, perm_mask [N, L, L] included."""
  f = dict(zip(ROW_FEATURES, rows))
  order = f.pop("order")
  f["perm_mask"] = np.stack([row_perm_mask(o, i, w, reuse_length) for o, i, w in
                             zip(order, f["target_index"], f["target_weights"])]
                            ).reshape(len(order), order.shape[1], order.shape[1])
  return f


def make_rows(flat: np.ndarray, splits: np.ndarray, *, batch_size: int, seq_length: int,
              reuse_length: int, num_predict: int, bi_data: bool, sep_id: int, cls_id: int,
              is_start: np.ndarray, max_gram: int, mask_alpha: int, mask_beta: int,
              seed: int, perm_size: int = 0):
  """One group's documents (flat ids + row splits) -> the ROW_FEATURES, step-major rows
  (with_perm_masks / row_perm_mask turn the orders into masks)."""
  del splits
  rng = np.random.default_rng([seed, zlib.crc32(np.ascontiguousarray(flat).tobytes())])
  streams = batch_size // 2 if bi_data else batch_size
  n = len(flat) // streams
  data = flat[:n * streams].reshape(streams, n).astype(np.int64)
  if bi_data:
    data = np.concatenate([data, data[:, ::-1]], axis=0)
  total = seq_length - reuse_length - 3
  goals = split_predictions(num_predict, seq_length, reuse_length)
  out = {k: [] for k in ROW_FEATURES}
  i = 0
  while i + reuse_length + total <= n:
    for b in range(batch_size):
      s = data[b]
      a_len = int(rng.integers(1, total))
      a = s[i + reuse_length:i + reuse_length + a_len]
      b_len = total - a_len
      start = i + reuse_length + a_len
      if rng.random() < 0.5:   # B from elsewhere in the stream
        start = int(rng.integers(0, n - b_len + 1))
      bb = s[start:start + b_len]
      ids = np.concatenate([s[i:i + reuse_length], a, [sep_id], bb, [sep_id], [cls_id]])
      types_ = np.concatenate([np.zeros(reuse_length + a_len + 1, np.int64),
                               np.ones(b_len + 1, np.int64), [2]])
      rest = np.concatenate([a, bb])
      m1 = span_mask(is_start[rest], goals[1], rng, max_gram, mask_alpha, mask_beta)
      is_target = np.concatenate([
          span_mask(is_start[ids[:reuse_length]], goals[0], rng, max_gram, mask_alpha,
                    mask_beta), m1[:a_len], [False], m1[a_len:], [False, False]])
      order, _ = sample_order(is_target, reuse_length, rng, perm_size)
      index = np.flatnonzero(is_target)
      pad = num_predict - len(index)
      out["input_ids"].append(ids)
      out["token_type_ids"].append(types_)
      out["order"].append(order)
      out["target_index"].append(np.pad(index, (0, pad)))
      out["target_ids"].append(np.pad(ids[index], (0, pad)))
      out["target_weights"].append(np.pad(np.ones(len(index), np.float32), (0, pad)))
    i += reuse_length
  rows = [np.asarray(out[k]) for k in ROW_FEATURES]
  return tuple((r if len(r) else np.zeros((0, num_predict if k.startswith("target") else
                                           seq_length))).astype(
      np.float32 if k == "target_weights" else np.int32) for k, r in zip(ROW_FEATURES, rows))


def special_ids(vocabulary) -> Tuple[int, int]:
  """(sep, cls) of the vocabulary (a one-line error naming the vocabulary when it lacks them)."""
  sep, cls = vocab_lib.special_ids(vocabulary, ("sep", "cls"))
  return int(sep), int(cls)


def pack(dataset: tf.data.Dataset, *, vocabulary, data, batch_size: int, seed: int):
  """{'text'} -> rows (see the module doc)."""
  sep_id, cls_id = special_ids(vocabulary)
  np_fn = functools.partial(
      make_rows, batch_size=batch_size, seq_length=data.seq_length,
      reuse_length=data.reuse_length, num_predict=data.num_predict, bi_data=data.bi_data,
      sep_id=sep_id, cls_id=cls_id, is_start=~vocab_lib.continuation_mask(vocabulary), max_gram=data.max_gram,
      mask_alpha=data.mask_alpha, mask_beta=data.mask_beta, seed=seed,
      perm_size=data.perm_size)
  dtypes = [tf.float32 if k == "target_weights" else tf.int32 for k in ROW_FEATURES]
  mask_fn = functools.partial(row_perm_mask, reuse_length=data.reuse_length)

  def make(ex):
    tokens = ex["tokens"]
    arrays = tf.numpy_function(np_fn, [tokens.flat_values, tokens.row_splits], dtypes,
                               stateful=False)
    return {k: tf.ensure_shape(a, [None, data.num_predict if k.startswith("target") else
                                   data.seq_length]) for k, a in zip(ROW_FEATURES, arrays)}

  def add_mask(ex):
    ex = dict(ex)
    mask = tf.numpy_function(mask_fn, [ex.pop("order"), ex["target_index"],
                                       ex["target_weights"]], tf.int32, stateful=False)
    ex["perm_mask"] = tf.ensure_shape(mask, [data.seq_length, data.seq_length])
    return ex

  ds = dataset.map(lambda ex: {"tokens": tf.cast(vocabulary.encode_tf(ex["text"]), tf.int32)},
                   num_parallel_calls=tf.data.AUTOTUNE)
  # In order (deterministic map): row b of every step must stay row b.
  return ds.ragged_batch(data.group_size).map(make).unbatch().map(
      add_mask, num_parallel_calls=tf.data.AUTOTUNE)


def get_task(data, vocabulary, batch_size: int, seed: int) -> seqio.Task:
  """The task for these settings (batch size included: rows are step-major), once."""
  name = tasks.task_name("xlnet_plm", {"data": dataclasses.asdict(data), "batch": batch_size,
                                       "seed": seed})

  def make():
    passthrough = seqio.PassThroughVocabulary(size=0)
    steps = sources.text_preprocessors(data.corpus) + [functools.partial(
        pack, vocabulary=vocabulary, data=data, batch_size=batch_size, seed=seed)]
    features = {k: seqio.Feature(vocabulary if k == "input_ids" else passthrough,
                                 add_eos=False, dtype=tf.float32 if k == "target_weights"
                                 else tf.int32, rank=2 if k == "perm_mask" else 1)
                for k in FEATURES}
    return dict(source=sources.document_source(data.corpus), preprocessors=steps,
                output_features=features, shuffle_buffer_size=1)
  return tasks.get_or_register(name, make)


def feature_lengths(data):
  return {k: data.num_predict if k.startswith("target") else data.seq_length for k in FEATURES}


def get_dataset(data, vocabulary, split: str, batch_size: int, seed: int, shard_index: int = 0,
                num_shards: int = 1, num_epochs: Optional[int] = None) -> tf.data.Dataset:
  """Batches whose row b continues row b of the previous batch (documents shuffled, rows
  not: a shuffle buffer of one)."""
  order = types.SimpleNamespace(corpus=data.corpus, shuffle_buffer=1)
  return bert_pretrain.batches(lambda: get_task(data, vocabulary, batch_size, seed),
                               XlnetFeatureConverter(), feature_lengths(data), order, split,
                               batch_size, seed, shard_index, num_shards, num_epochs)
