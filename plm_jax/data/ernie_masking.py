"""ERNIE 1.0 knowledge masking (Sun et al., 2019, section 3.2) as tf.data / seqio preprocessors.

Units come per token as ERNIE's segment labels (the released data's `seg_labels`):
0 starts a unit, 1 continues the unit before it, -1 is in no unit (never masked;
[CLS] / [SEP] / padding are never masked either). An example carries one label row per
knowledge level, `phrase_seg` and `entity_seg` (plm_jax.data.ernie_units makes them
from raw text; plm_jax.data.ernie_format reads them); the basic level needs none:
every token but the special ones is its own unit (BERT's masking; for Chinese one
character a unit).

  LEVELS = ('basic', 'phrase', 'entity'): the training schedule switches level by
  step: `level_for_step(step, starts)` with starts = the first step of each level.

Masking one example at one level (`mask_units`): num_to_predict = min(P, max(1,
round(n * mask_rate))) with n the non-padding tokens, as BERT; units are visited
in a random order and a unit is taken whole when its tokens still fit (running
total + its length <= num_to_predict), else skipped and later units are still
tried (preprocessors.greedy_take), so a unit is never masked in part and about
mask_rate of the tokens are chosen. Each chosen token then becomes [MASK] with
mask_token_prob, a random token with random_token_prob, or stays (80 / 10 / 10),
drawn per token.

`knowledge_mask` is the dataset step: it numbers the examples of the stream it is
given (after the shuffle), so example k belongs to train step k // examples_per_step
+ 1 and is masked at that step's level, and seeds each example from (seed, k), so
the stream is a pure function of the seed and resumes exactly when the trainer
skips batches.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import tensorflow as tf

from plm_jax.data import preprocessors
from plm_jax.data import vocab as vocab_lib

LEVELS = ("basic", "phrase", "entity")
SEG_FEATURES = {"phrase": "phrase_seg", "entity": "entity_seg"}


def level_for_step(step: tf.Tensor, starts: Sequence[int]) -> tf.Tensor:
  """Index into LEVELS of the level a train step (1-based) uses: the last level whose
  start step is <= step. starts: one non-decreasing start step per level, starts[0] = 0."""
  s = tf.constant(list(starts), tf.int64)
  return tf.maximum(tf.reduce_sum(tf.cast(tf.cast(step, tf.int64) >= s, tf.int32)) - 1, 0)


def mask_units(ids: tf.Tensor, seg: tf.Tensor, seeds: tf.Tensor, *, special_ids, mask_id: int,
               replacement_ids: tf.Tensor, max_predictions: int, mask_rate: float,
               mask_token_prob: float, random_token_prob: float) -> Dict[str, tf.Tensor]:
  """One example: ids [L], seg [L] (0 / 1 / -1), seeds [3, 2] -> {input_ids [L],
  masked_lm_positions [P], masked_lm_ids [P], masked_lm_weights [P]} (module doc)."""
  length = ids.shape[0]
  cand = tf.ones_like(ids, tf.bool)
  for i in special_ids:
    cand &= ids != i
  in_unit = cand & (seg >= 0)
  prev_in = tf.concat([[False], in_unit[:-1]], 0)
  start = in_unit & ((seg == 0) | ~prev_in)          # a continuation after a gap starts a unit
  unit_id = tf.cumsum(tf.cast(start, tf.int32)) - 1  # unit of each in-unit token
  num_units = tf.reduce_sum(tf.cast(start, tf.int32))
  unit_len = tf.math.unsorted_segment_sum(
      tf.cast(in_unit, tf.int32), tf.where(in_unit, unit_id, length), length + 1)[:length]
  valid_unit = tf.range(length) < num_units
  n_tokens = tf.reduce_sum(tf.cast(ids != special_ids[0], tf.float32))   # special_ids[0]: pad
  num_to_predict = tf.cast(tf.minimum(
      float(max_predictions), tf.maximum(1.0, tf.round(n_tokens * mask_rate))), tf.int32)
  scores = tf.where(valid_unit, tf.random.stateless_uniform([length], seeds[0]), 2.0)
  order = tf.argsort(scores)                          # real units first, shuffled
  take_in_order = preprocessors.greedy_take(tf.gather(unit_len, order),
                                            tf.gather(valid_unit, order), num_to_predict)
  take_unit = tf.scatter_nd(order[:, None], tf.cast(take_in_order, tf.int32), [length]) > 0
  chosen = in_unit & tf.gather(take_unit, tf.maximum(unit_id, 0))

  u = tf.random.stateless_uniform([length], seeds[1])
  random_tok = tf.gather(replacement_ids, tf.random.stateless_uniform(
      [length], seeds[2], minval=0, maxval=replacement_ids.shape[0], dtype=tf.int32))
  replaced = tf.where(u < mask_token_prob, mask_id,
                      tf.where(u < mask_token_prob + random_token_prob, random_tok, ids))
  positions = tf.cast(tf.where(chosen)[:, 0], tf.int32)   # ascending, unique
  n_pred = tf.shape(positions)[0]
  pad = [[0, max_predictions - n_pred]]
  return {
      "input_ids": tf.where(chosen, replaced, ids),
      "masked_lm_positions": tf.ensure_shape(tf.pad(positions, pad), [max_predictions]),
      "masked_lm_ids": tf.ensure_shape(tf.pad(tf.gather(ids, positions), pad), [max_predictions]),
      "masked_lm_weights": tf.ensure_shape(tf.pad(tf.ones([n_pred], tf.float32), pad),
                                           [max_predictions]),
  }


def knowledge_mask(dataset: tf.data.Dataset, *, vocabulary, max_predictions: int,
                   mask_rate: float, mask_token_prob: float, random_token_prob: float,
                   level_starts: Sequence[int], examples_per_step: int, seed: int,
                   fixed_level: Optional[str] = None) -> tf.data.Dataset:
  """Masks each example at its train step's level (module doc); fixed_level (one of
  LEVELS) masks every example at that level (evaluation). Adds masked_lm_positions /
  ids / weights, keeps the other features but the segment labels, and adds
  `knowledge_level` (int32, index into LEVELS) for inspection."""
  if len(level_starts) != len(LEVELS) or level_starts[0] != 0 or any(
      b < a for a, b in zip(level_starts, level_starts[1:])):
    raise ValueError(f"level_starts must be {len(LEVELS)} non-decreasing start steps for "
                     f"{LEVELS} beginning with 0, got {list(level_starts)}")
  if fixed_level is not None and fixed_level not in LEVELS:
    raise ValueError(f"fixed_level must be one of {LEVELS}, got {fixed_level!r}")
  pad_id, cls_id, sep_id, mask_id = vocab_lib.special_ids(vocabulary,
                                                          ("pad", "cls", "sep", "mask"))
  repl = tf.constant(vocab_lib.replacement_ids(vocabulary), tf.int32)
  base_seed = tf.constant([int(seed) & 0x7FFFFFFF, 0x45524E], tf.int64)   # 'ERN'

  def fn(index, ex):
    ids = ex["input_ids"]
    if fixed_level is None:
      level = level_for_step(index // examples_per_step + 1, level_starts)
    else:
      level = tf.constant(LEVELS.index(fixed_level), tf.int32)
    basic = tf.zeros_like(ids)                       # every token its own unit
    seg = tf.gather(tf.stack([basic, ex["phrase_seg"], ex["entity_seg"]]), level)
    seeds = tf.random.experimental.stateless_split(
        tf.random.experimental.stateless_fold_in(base_seed, index), 3)
    out = {k: v for k, v in ex.items() if k not in SEG_FEATURES.values()}
    out.update(mask_units(ids, seg, seeds, special_ids=(pad_id, cls_id, sep_id),
                          mask_id=mask_id, replacement_ids=repl,
                          max_predictions=max_predictions, mask_rate=mask_rate,
                          mask_token_prob=mask_token_prob, random_token_prob=random_token_prob))
    out["knowledge_level"] = tf.cast(level, tf.int32)
    return out

  return dataset.enumerate().map(fn, num_parallel_calls=tf.data.AUTOTUNE)
