"""Feature converters: masked-LM pretraining task features -> model features.

BertPretrainFeatureConverter (MLM + next_sentence_label), MlmFeatureConverter
(MLM only: RoBERTa) and SopFeatureConverter (MLM + sentence_order_label: ALBERT).

Task and model features have the same names; the converter validates dtypes,
ranks and lengths, and pads/trims every sequence feature to its fixed length
so batches have static shapes. Lengths are given compactly as
{'inputs': L, 'masked_lm': P} (or per feature, as seqio does).
"""
from __future__ import annotations

from typing import Mapping

import seqio
import tensorflow as tf

Spec = seqio.FeatureConverter.FeatureSpec

INPUT_FEATURES = ("input_ids", "token_type_ids", "attention_mask")
MASKED_LM_FEATURES = ("masked_lm_positions", "masked_lm_ids", "masked_lm_weights")
FEATURES = {
    "input_ids": Spec(dtype=tf.int32),
    "token_type_ids": Spec(dtype=tf.int32),
    "attention_mask": Spec(dtype=tf.int32),
    "masked_lm_positions": Spec(dtype=tf.int32),
    "masked_lm_ids": Spec(dtype=tf.int32),
    "masked_lm_weights": Spec(dtype=tf.float32),
    "next_sentence_label": Spec(dtype=tf.int32, rank=0),
}


def expand_lengths(lengths: Mapping[str, int]) -> Mapping[str, int]:
  """{'inputs': L, 'masked_lm': P} -> per-feature lengths (other keys kept)."""
  out = {k: v for k, v in lengths.items() if k not in ("inputs", "masked_lm")}
  if "inputs" in lengths:
    out.update({k: lengths["inputs"] for k in INPUT_FEATURES})
  if "masked_lm" in lengths:
    out.update({k: lengths["masked_lm"] for k in MASKED_LM_FEATURES})
  out.setdefault("next_sentence_label", 0)   # rank 0: length unused
  return out


MLM_FEATURES = {k: v for k, v in FEATURES.items() if k != "next_sentence_label"}
SOP_FEATURES = dict(MLM_FEATURES, sentence_order_label=Spec(dtype=tf.int32, rank=0))


class BertPretrainFeatureConverter(seqio.FeatureConverter):
  """MLM + NSP features, padded to fixed lengths; packing is not supported.

  Subclasses change the feature set (TASK_FEATURES = MODEL_FEATURES)."""

  TASK_FEATURES = FEATURES
  MODEL_FEATURES = FEATURES
  PACKING_FEATURE_DTYPES = {}

  def __init__(self, pack: bool = False, **kwargs):
    if pack:
      raise ValueError("BertPretrainFeatureConverter does not pack: sentence pairs are "
                       "already filled to seq_length")
    super().__init__(pack=False, **kwargs)

  def _lengths(self, task_feature_lengths: Mapping[str, int]) -> Mapping[str, int]:
    """Per-feature lengths of exactly this converter's features (rank 0: length 0)."""
    out = expand_lengths(task_feature_lengths)
    out = {k: v for k, v in out.items() if k in self.TASK_FEATURES or k not in FEATURES}
    for name, spec in self.TASK_FEATURES.items():
      if spec.rank == 0:
        out.setdefault(name, 0)
    return out

  def __call__(self, ds: tf.data.Dataset, task_feature_lengths: Mapping[str, int]):
    return super().__call__(ds, self._lengths(task_feature_lengths))

  def _convert_features(self, ds: tf.data.Dataset,
                        task_feature_lengths: Mapping[str, int]) -> tf.data.Dataset:
    def convert(features):
      out = {}
      for name, spec in self.MODEL_FEATURES.items():
        x = features[name]
        if spec.rank == 1:
          n = task_feature_lengths[name]
          x = x[:n]
          x = tf.pad(x, [[0, n - tf.shape(x)[0]]])
          x = tf.ensure_shape(x, [n])
        out[name] = x
      return out
    return ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE)

  def get_model_feature_lengths(self, task_feature_lengths: Mapping[str, int]) -> Mapping[str, int]:
    return dict(self._lengths(task_feature_lengths))


class MlmFeatureConverter(BertPretrainFeatureConverter):
  """MLM features only (RoBERTa: no sentence-pair task)."""
  TASK_FEATURES = MLM_FEATURES
  MODEL_FEATURES = MLM_FEATURES


class SopFeatureConverter(BertPretrainFeatureConverter):
  """MLM + sentence-order label (ALBERT)."""
  TASK_FEATURES = SOP_FEATURES
  MODEL_FEATURES = SOP_FEATURES
