"""ERNIE 1.0 pretraining objective: BERT's MLM + NSP with knowledge masking.

Sun et al. (2019), section 3.2: the network and losses are BERT's; what is masked
changes over training, in stages: basic-level masking (single tokens, for Chinese
single characters) first, then phrase-level, then entity-level masking, where a
phrase or an entity is masked as one unit (plm_jax.data.ernie_masking). The `ernie`
section schedules the stages by step, says where units come from (lexicon files, or
phrases learnt from the corpus; ERNIE-format data brings its own labels, see
plm_jax.data.ernie_format) and `ernie.masking=bert` gives BERT's token masking on the
same examples, the baseline of an equal-compute comparison. Evaluation masks the
held-out data at `ernie.eval_level` (default basic: the same task for both runs).

Config sections: `model` (ErnieConfig without vocab_size), `mlm` (BERT's MlmConfig),
`data` (BERT's data section; corpus.type may be 'ernie'), `ernie` (ErnieMaskingConfig).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from plm_jax.configlib import fail, param
from plm_jax.data.ernie_masking import LEVELS
from plm_jax.models.ernie import ErnieConfig, ErnieForPreTraining
from plm_jax.objectives.base import register
from plm_jax.objectives.bert_pretrain import BertDataConfig, BertMlmNsp, MlmConfig

MASKINGS = ("knowledge", "bert")


@dataclasses.dataclass(frozen=True)
class ErnieMaskingConfig:
  masking: str = param("knowledge", choices=MASKINGS)  # knowledge: staged; bert: tokens only
  phrase_from_step: int = param(0, ge=0)   # first step of phrase-level masking (basic before)
  entity_from_step: int = param(0, ge=0)   # first step of entity-level masking
  eval_level: str = param("basic", choices=LEVELS)   # the level held-out data is masked at
  phrase_lexicon: str = ""                 # a file, one phrase a line (UTF-8)
  entity_lexicon: str = ""                 # a file, one entity a line (UTF-8), longest first
  learn_phrases_docs: int = param(0, ge=0)  # > 0: learn phrases by PMI from that many docs
  phrase_min_count: int = param(5, gt=0)   # learnt phrases: adjacent pair seen >= this often
  phrase_min_pmi: float = 3.0              # learnt phrases: PMI >= this (natural log)
  max_phrases: int = param(20_000, gt=0)   # learnt phrases: the best this many

  def check(self, prefix: str) -> None:
    if self.entity_from_step < self.phrase_from_step:
      fail(f"{prefix}.entity_from_step", self.entity_from_step,
           f"must be >= {prefix}.phrase_from_step={self.phrase_from_step} (stages run basic, "
           "phrase, entity)")


def _model_section():
  fields = [(f.name, f.type, f.default) for f in dataclasses.fields(ErnieConfig)
            if f.name != "vocab_size"]
  return dataclasses.make_dataclass("ErnieModelConfig", fields, frozen=True)


ErnieModelConfig = _model_section()


@register("ernie_mlm_nsp")
class ErnieMlmNsp(BertMlmNsp):
  """MLM (knowledge-masked) + NSP on ErnieForPreTraining (BERT's network)."""
  family = "ernie"
  SECTIONS = {"model": ErnieModelConfig, "mlm": MlmConfig, "data": BertDataConfig,
              "ernie": ErnieMaskingConfig}

  def __init__(self, config, vocab_size: Optional[int] = None):
    super().__init__(config, vocab_size)
    self.ernie: ErnieMaskingConfig = self.sections["ernie"]
    if self.mlm.whole_word_masking:
      fail("config.mlm.whole_word_masking", True, "the ERNIE objective masks units of "
           "config.ernie (set ernie.masking=bert for BERT's token masking)")

  def model_config(self) -> ErnieConfig:
    return ErnieConfig(vocab_size=self.vocab_size(), **dataclasses.asdict(self.sections["model"]))

  def make_model(self) -> ErnieForPreTraining:
    return ErnieForPreTraining(self.model_config())

  def get_dataset(self, split: str, batch_size: int, seed: int, shard_index: int = 0,
                  num_shards: int = 1, num_epochs: Optional[int] = None):
    from plm_jax.data import ernie_pretrain  # pylint: disable=import-outside-toplevel
    return ernie_pretrain.get_dataset(self.data, self.mlm, self.ernie, self.vocabulary(), split,
                                      batch_size, seed, shard_index, num_shards, num_epochs)
