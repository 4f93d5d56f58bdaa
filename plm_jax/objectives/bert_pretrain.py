"""BERT pretraining objective: masked LM + next-sentence prediction.

Devlin et al. (2019), section 3.1: the MLM loss is the cross-entropy of the
original token at the masked positions only (averaged over real masked tokens,
`masked_lm_weights` is 0 on padded prediction slots); the NSP loss is the
cross-entropy of IsNext / NotNext on the pooled [CLS] output. Total = sum.

Config sections (owned here, with their defaults): `model` (BertConfig),
`mlm` (MlmConfig), `data` (BertDataConfig). Batch format: the features of
plm_jax.data.feature_converters.BertPretrainFeatureConverter.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp

from plm_jax.configlib import fail, param
from plm_jax.data.config import CorpusConfig, VocabConfig
from plm_jax.layers.transformer import REMAT_POLICIES
from plm_jax.models.bert import BertConfig, BertForPreTraining
from plm_jax.objectives import flops as flops_lib
from plm_jax.objectives import losses
from plm_jax.objectives.base import (Batch, ConfiguredVocabulary, Metrics, Objective,
                                     example_weights, register)


@dataclasses.dataclass(frozen=True)
class MlmConfig:
  mask_rate: float = param(0.15, gt=0.0, lt=1.0)       # fraction of tokens chosen for prediction
  mask_token_prob: float = param(0.8, ge=0.0, le=1.0)  # of the chosen: [MASK]
  random_token_prob: float = param(0.1, ge=0.0, le=1.0)  # of the chosen: a random token
  max_predictions: int = param(20, gt=0)               # fixed size of the masked-position list
  whole_word_masking: bool = False
  nsp: bool = True                                     # next-sentence prediction
  short_seq_prob: float = param(0.1, ge=0.0, le=1.0)   # BERT: chance of a shorter target length

  def check(self, prefix: str) -> None:
    total = self.mask_token_prob + self.random_token_prob
    if total > 1.0:
      fail(f"{prefix}.random_token_prob", self.random_token_prob,
           f"mask_token_prob + random_token_prob = {total} must be <= 1")


@dataclasses.dataclass(frozen=True)
class BertDataConfig:
  seq_length: int = param(128, ge=8)                   # tokens per example, [CLS] A [SEP] B [SEP]
  shuffle_buffer: int = param(10_000, ge=0)            # example-level shuffle buffer (0: off)
  group_size: int = param(16, gt=0)                    # documents grouped to draw NSP segments from
  corpus: CorpusConfig = CorpusConfig()
  vocab: VocabConfig = VocabConfig()


def check_bert_model(m: BertConfig, prefix: str = "config.model") -> None:
  """Range checks of a BertConfig section (one line naming the key)."""
  for key in ("hidden_size", "num_layers", "num_heads", "intermediate_size",
              "max_position_embeddings", "type_vocab_size"):
    if getattr(m, key) <= 0:
      fail(f"{prefix}.{key}", getattr(m, key), "must be > 0")
  if m.hidden_size % m.num_heads:
    fail(f"{prefix}.hidden_size", m.hidden_size, f"must be divisible by {prefix}.num_heads="
         f"{m.num_heads}")
  for key in ("hidden_dropout_rate", "attention_dropout_rate"):
    if not 0.0 <= getattr(m, key) < 1.0:
      fail(f"{prefix}.{key}", getattr(m, key), "must be in [0, 1)")
  if m.layer_norm_eps < 0:
    fail(f"{prefix}.layer_norm_eps", m.layer_norm_eps, "must be >= 0")
  if m.dtype not in ("float32", "bfloat16"):
    fail(f"{prefix}.dtype", m.dtype, "unknown dtype; choose one of ('float32', 'bfloat16')")
  if m.remat_policy not in REMAT_POLICIES:
    fail(f"{prefix}.remat_policy", m.remat_policy, f"unknown; choose one of {REMAT_POLICIES}")


def _model_section():
  """BertConfig without vocab_size: the `model` section (the size comes from the vocabulary)."""
  fields = [(f.name, f.type, f.default) for f in dataclasses.fields(BertConfig)
            if f.name != "vocab_size"]
  return dataclasses.make_dataclass("BertModelConfig", fields, frozen=True)


BertModelConfig = _model_section()


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> Tuple[jax.Array, jax.Array]:
  """Per-item negative log-likelihood and correctness, in float32."""
  return losses.softmax_cross_entropy(logits, labels), losses.top1_correct(logits, labels)


@register("bert_mlm_nsp")
class BertMlmNsp(ConfiguredVocabulary, Objective):
  """MLM + (optional, config.mlm.nsp) NSP on BertForPreTraining."""
  family = "bert"
  SECTIONS = {"model": BertModelConfig, "mlm": MlmConfig, "data": BertDataConfig}
  # Output and feature names; subclasses with another sentence task (ALBERT's SOP) or
  # none (RoBERTa) change them and `sentence_task`.
  MLM_LOGITS = "prediction_logits"
  SENTENCE_LOGITS = "seq_relationship_logits"
  SENTENCE_LABEL = "next_sentence_label"
  SENTENCE_METRIC = "nsp"
  EMBEDDING_PROJECTION = None   # E -> H after the embeddings: None when E != H; ALBERT always

  def __init__(self, config, vocab_size: Optional[int] = None):
    """vocab_size: a fixed model vocabulary size for batches made elsewhere (benchmarks,
    tests); by default the size is the data pipeline's vocabulary's."""
    super().__init__(config)
    self.init_vocabulary(vocab_size)
    self.mlm: MlmConfig = self.sections["mlm"]
    self.data: BertDataConfig = self.sections["data"]
    self.check_model(self.sections["model"])
    if self.data.seq_length > self.max_seq_length():
      extra = ("" if self.max_seq_length() == self.sections["model"].max_position_embeddings
               else f" minus {self.sections['model'].max_position_embeddings - self.max_seq_length()}")
      fail("config.data.seq_length", self.data.seq_length,
           f"must be <= model.max_position_embeddings="
           f"{self.sections['model'].max_position_embeddings}{extra}")
    if self.mlm.max_predictions > self.data.seq_length:
      fail("config.mlm.max_predictions", self.mlm.max_predictions,
           f"must be <= data.seq_length={self.data.seq_length}")

  def check_model(self, model_section) -> None:
    check_bert_model(model_section)

  def max_seq_length(self) -> int:
    return self.sections["model"].max_position_embeddings

  @property
  def sentence_task(self) -> bool:
    """Whether the sentence-pair loss (NSP here) is on."""
    return self.mlm.nsp

  # ---- vocabulary and model --------------------------------------------------------------
  def model_config(self) -> BertConfig:
    return BertConfig(vocab_size=self.vocab_size(),
                      **dataclasses.asdict(self.sections["model"]))

  def input_ranges(self) -> Dict[str, int]:
    m = self.sections["model"]
    return {"input_ids": self.vocab_size(), "masked_lm_ids": self.vocab_size(),
            "token_type_ids": m.type_vocab_size, "masked_lm_positions": self.data.seq_length}

  def make_model(self) -> BertForPreTraining:
    return BertForPreTraining(self.model_config())

  def init_params(self, rng: jax.Array) -> Any:
    """The 'params' collection; leaves may be nn.LogicallyPartitioned boxes."""
    dummy = {k: jnp.zeros(s.shape, s.dtype) for k, s in self.batch_spec(1).items()}
    params_rng, dropout_rng = jax.random.split(rng)
    variables = self.make_model().init(
        {"params": params_rng, "dropout": dropout_rng},
        input_ids=dummy["input_ids"], attention_mask=dummy["attention_mask"],
        token_type_ids=dummy["token_type_ids"], masked_lm_positions=dummy["masked_lm_positions"],
        deterministic=True)
    return variables["params"]

  def forward_flops_per_example(self, lookups: bool = True) -> float:
    """Encoder over data.seq_length tokens, the MLM head on the mlm.max_predictions
    positions, and the pooler + sentence classifier when the sentence task is on."""
    s = self.data.seq_length
    return flops_lib.mlm_forward_flops(self.model_config(), s, self.mlm.max_predictions / s,
                                       self.sentence_task, lookups, self.EMBEDDING_PROJECTION)

  # ---- data -----------------------------------------------------------------------------
  def feature_converter(self):
    from plm_jax.data import feature_converters  # pylint: disable=import-outside-toplevel
    return feature_converters.BertPretrainFeatureConverter()

  def feature_lengths(self) -> Dict[str, int]:
    return {"inputs": self.data.seq_length, "masked_lm": self.mlm.max_predictions}

  def get_dataset(self, split: str, batch_size: int, seed: int, shard_index: int = 0,
                  num_shards: int = 1, num_epochs: Optional[int] = None):
    from plm_jax.data import bert_pretrain  # pylint: disable=import-outside-toplevel
    return bert_pretrain.get_dataset(self.data, self.mlm, self.vocabulary(), split, batch_size,
                                     seed, shard_index, num_shards, num_epochs)

  # ---- loss -----------------------------------------------------------------------------
  def loss_normalizers(self, batch: Batch) -> Dict[str, jax.Array]:
    """MLM: the number of masked tokens (weights); NSP: the number of examples."""
    return {"mlm": jnp.maximum(jnp.sum(batch["masked_lm_weights"].astype(jnp.float32)), 1e-8),
            "sentence": jnp.maximum(jnp.sum(example_weights(batch)), 1e-8)}

  def loss_fn(self, params: Any, batch: Batch, rng: Optional[jax.Array],
              deterministic: bool, normalizers: Optional[Dict[str, jax.Array]] = None
              ) -> Tuple[jax.Array, Metrics]:
    """MLM mean over masked tokens + NSP mean over examples, over this batch, or
    over the batch that `normalizers` (see loss_normalizers) was computed from."""
    norm = normalizers or self.loss_normalizers(batch)
    rngs = {} if (deterministic or rng is None) else {"dropout": rng}
    out = self.make_model().apply(
        {"params": params}, input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"],
        masked_lm_positions=batch["masked_lm_positions"],
        deterministic=deterministic, rngs=rngs)

    weights = batch["masked_lm_weights"].astype(jnp.float32)               # [B, P]
    mlm_nll, mlm_correct = _cross_entropy(out[self.MLM_LOGITS], batch["masked_lm_ids"])
    mlm_sum = jnp.sum(mlm_nll * weights)
    mlm_weight = jnp.sum(weights)
    metrics = {
        "mlm_loss": (mlm_sum, mlm_weight),
        "mlm_accuracy": (jnp.sum(mlm_correct * weights), mlm_weight),
    }
    loss = mlm_sum / norm["mlm"]
    if self.sentence_task:
      labels = batch[self.SENTENCE_LABEL]                                  # [B]
      ex = example_weights(batch)                                          # [B]
      nll, correct = _cross_entropy(out[self.SENTENCE_LOGITS], labels)
      count = jnp.sum(ex)
      loss = loss + jnp.sum(nll * ex) / norm["sentence"]
      metrics[f"{self.SENTENCE_METRIC}_loss"] = (jnp.sum(nll * ex), count)
      metrics[f"{self.SENTENCE_METRIC}_accuracy"] = (jnp.sum(correct * ex), count)
    # This batch's loss with weight 1; with normalizers, this micro-batch's
    # share of the whole batch's loss (the train step adds the shares up).
    metrics["loss"] = (loss, jnp.ones((), jnp.float32))
    return loss, metrics
