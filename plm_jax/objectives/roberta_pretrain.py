"""RoBERTa pretraining objective: dynamic masked LM on FULL-SENTENCES inputs, no NSP.

Liu et al. (2019), section 4: the MLM loss of BERT (cross-entropy at the masked
positions, averaged over real masked tokens), masks drawn anew every time a row
is produced, inputs packed from contiguous full sentences (section 4.2), no
next-sentence loss. The loss and metrics are BertMlmNsp's with the sentence task off.

Config sections (owned here): `model` (RobertaConfig without vocab_size and
pad_token_id, which come from the vocabulary), `mlm` (RobertaMlmConfig), `data`
(RobertaDataConfig). Batch format: plm_jax.data.feature_converters.MlmFeatureConverter.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from plm_jax.configlib import param
from plm_jax.data.config import CorpusConfig, VocabConfig
from plm_jax.models.roberta import RobertaConfig, RobertaForMaskedLM
from plm_jax.objectives.base import register
from plm_jax.objectives.bert_pretrain import BertMlmNsp, MlmConfig

PACKINGS = ("full_sentences", "doc_sentences")


@dataclasses.dataclass(frozen=True)
class RobertaMlmConfig:
  mask_rate: float = param(0.15, gt=0.0, lt=1.0)         # fraction of tokens chosen for prediction
  mask_token_prob: float = param(0.8, ge=0.0, le=1.0)    # of the chosen: <mask>
  random_token_prob: float = param(0.1, ge=0.0, le=1.0)  # of the chosen: a random token
  max_predictions: int = param(20, gt=0)                 # fixed size of the masked-position list
  whole_word_masking: bool = False

  def check(self, prefix: str) -> None:
    MlmConfig.check(self, prefix)  # the same rule on the two probabilities


@dataclasses.dataclass(frozen=True)
class RobertaDataConfig:
  seq_length: int = param(128, ge=8)             # tokens per row, <s> sentences... </s>
  shuffle_buffer: int = param(10_000, ge=0)      # row-level shuffle buffer (0: off)
  group_size: int = param(16, gt=0)              # documents packed together in stream order
  packing: str = param("full_sentences", choices=PACKINGS)
  corpus: CorpusConfig = CorpusConfig()
  vocab: VocabConfig = VocabConfig()


def _model_section():
  fields = [(f.name, f.type, f.default) for f in dataclasses.fields(RobertaConfig)
            if f.name not in ("vocab_size", "pad_token_id")]
  return dataclasses.make_dataclass("RobertaModelConfig", fields, frozen=True)


RobertaModelConfig = _model_section()


@register("roberta_mlm")
class RobertaMlm(BertMlmNsp):
  """Dynamic MLM on RobertaForMaskedLM (no sentence task)."""
  family = "roberta"
  SECTIONS = {"model": RobertaModelConfig, "mlm": RobertaMlmConfig, "data": RobertaDataConfig}
  MLM_LOGITS = "logits"

  def __init__(self, config, vocab_size: Optional[int] = None, pad_token_id: Optional[int] = None):
    """pad_token_id: fixed for batches made elsewhere; by default the vocabulary's pad id."""
    self._fixed_pad_id = pad_token_id
    super().__init__(config, vocab_size)

  @property
  def sentence_task(self) -> bool:
    return False

  def pad_token_id(self) -> int:
    if self._fixed_pad_id is not None:
      return int(self._fixed_pad_id)
    if self._fixed_vocab_size is not None:
      return RobertaConfig.pad_token_id
    return int(self.vocabulary().pad_id)

  def max_seq_length(self) -> int:
    # Positions start after the padding id (HF/fairseq): room for seq_length + pad + 1.
    # Checked without reading the vocabulary, for RoBERTa's pad id 1 (builtin / WordPiece
    # vocabularies pad with 0); RobertaModel checks the exact bound.
    pad = RobertaConfig.pad_token_id if self._fixed_pad_id is None else self._fixed_pad_id
    return self.sections["model"].max_position_embeddings - pad - 1

  def model_config(self) -> RobertaConfig:
    return RobertaConfig(vocab_size=self.vocab_size(), pad_token_id=self.pad_token_id(),
                         **dataclasses.asdict(self.sections["model"]))

  def make_model(self) -> RobertaForMaskedLM:
    return RobertaForMaskedLM(self.model_config())

  def feature_converter(self):
    from plm_jax.data import feature_converters  # pylint: disable=import-outside-toplevel
    return feature_converters.MlmFeatureConverter()

  def get_dataset(self, split: str, batch_size: int, seed: int, shard_index: int = 0,
                  num_shards: int = 1, num_epochs: Optional[int] = None):
    from plm_jax.data import roberta_pretrain  # pylint: disable=import-outside-toplevel
    return roberta_pretrain.get_dataset(self.data, self.mlm, self.vocabulary(), split,
                                        batch_size, seed, shard_index, num_shards, num_epochs)
