"""ALBERT pretraining objective: n-gram masked LM + sentence-order prediction.

Lan et al. (2020): the MLM loss of BERT over n-gram masked inputs (n up to
max_ngram, p(n) ∝ 1/n) plus the SOP loss, cross-entropy of in-order / swapped
on the pooled [CLS] output (section 3.1); total = sum. The loss and metrics are
BertMlmNsp's with the sentence task renamed ('sop_loss', 'sop_accuracy').
LAMB is the optimizer of its configs (configs/albert.py).

Config sections (owned here): `model` (AlbertConfig without vocab_size), `mlm`
(AlbertMlmConfig), `data` (AlbertDataConfig). Batch format:
plm_jax.data.feature_converters.SopFeatureConverter.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from plm_jax.configlib import ConfigError, fail, param
from plm_jax.data.config import CorpusConfig, VocabConfig
from plm_jax.models.albert import AlbertConfig, AlbertForPreTraining, check_albert_config
from plm_jax.objectives.base import register
from plm_jax.objectives.bert_pretrain import BertMlmNsp, MlmConfig


@dataclasses.dataclass(frozen=True)
class AlbertMlmConfig:
  mask_rate: float = param(0.15, gt=0.0, lt=1.0)
  mask_token_prob: float = param(0.8, ge=0.0, le=1.0)
  random_token_prob: float = param(0.1, ge=0.0, le=1.0)
  max_predictions: int = param(20, gt=0)
  max_ngram: int = param(3, ge=1)                      # n-grams up to this length, p(n) ∝ 1/n
  whole_word_masking: bool = False                     # units are whole words (else tokens)
  sop: bool = True                                     # sentence-order prediction loss
  short_seq_prob: float = param(0.1, ge=0.0, le=1.0)   # chance of a shorter target length

  def check(self, prefix: str) -> None:
    MlmConfig.check(self, prefix)


@dataclasses.dataclass(frozen=True)
class AlbertDataConfig:
  seq_length: int = param(128, ge=8)           # tokens per example, [CLS] A [SEP] B [SEP]
  shuffle_buffer: int = param(10_000, ge=0)
  group_size: int = param(16, gt=0)            # documents handed to the pair builder at once
  corpus: CorpusConfig = CorpusConfig()
  vocab: VocabConfig = VocabConfig()


def _model_section():
  fields = [(f.name, f.type, f.default) for f in dataclasses.fields(AlbertConfig)
            if f.name != "vocab_size"]
  return dataclasses.make_dataclass("AlbertModelConfig", fields, frozen=True)


AlbertModelConfig = _model_section()


@register("albert_mlm_sop")
class AlbertMlmSop(BertMlmNsp):
  """n-gram MLM + (optional, config.mlm.sop) SOP on AlbertForPreTraining."""
  family = "albert"
  SECTIONS = {"model": AlbertModelConfig, "mlm": AlbertMlmConfig, "data": AlbertDataConfig}
  SENTENCE_LOGITS = "sop_logits"
  SENTENCE_LABEL = "sentence_order_label"
  SENTENCE_METRIC = "sop"
  EMBEDDING_PROJECTION = True   # embedding_hidden_mapping_in runs even when E == H

  def check_model(self, m) -> None:
    try:
      check_albert_config(AlbertConfig(**dataclasses.asdict(m)))
    except ValueError as e:
      raise ConfigError(str(e)) from None
    for key in ("hidden_size", "num_heads", "intermediate_size", "max_position_embeddings",
                "type_vocab_size"):
      if getattr(m, key) <= 0:
        fail(f"config.model.{key}", getattr(m, key), "must be > 0")
    if m.hidden_size % m.num_heads:
      fail("config.model.hidden_size", m.hidden_size,
           f"must be divisible by config.model.num_heads={m.num_heads}")

  @property
  def sentence_task(self) -> bool:
    return self.mlm.sop

  def model_config(self) -> AlbertConfig:
    return AlbertConfig(vocab_size=self.vocab_size(), **dataclasses.asdict(self.sections["model"]))

  def make_model(self) -> AlbertForPreTraining:
    return AlbertForPreTraining(self.model_config())

  def feature_converter(self):
    from plm_jax.data import feature_converters  # pylint: disable=import-outside-toplevel
    return feature_converters.SopFeatureConverter()

  def get_dataset(self, split: str, batch_size: int, seed: int, shard_index: int = 0,
                  num_shards: int = 1, num_epochs: Optional[int] = None):
    from plm_jax.data import albert_pretrain  # pylint: disable=import-outside-toplevel
    return albert_pretrain.get_dataset(self.data, self.mlm, self.vocabulary(), split,
                                       batch_size, seed, shard_index, num_shards, num_epochs)
