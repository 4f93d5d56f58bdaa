"""XLNet's permutation language modelling (Yang et al. 2019, sections 2.2-2.4).

For each row a factorisation order is sampled (plm_jax.data.xlnet_pretrain: partial
prediction, span-based targets, the released code's reuse layout) and expressed as
perm_mask [B, L, L] and target positions [B, P]; the query stream predicts each target
from the content of the positions before it in the order, never its own. The loss is
the mean cross-entropy over the P targets of every row (padding targets weigh 0).

Segment recurrence: the memory (each layer's input over the first reuse_length
positions of the previous step's rows, the last mem_len of it) is state carried from
one train step to the next (Objective.init_carry: [B, layers, mem_len, H], zeros at the
start as in the released train_gpu.py), without gradient, and checkpointed with the
train state. Evaluation reads held-out rows without memory.

Config sections (owned here): `model` (XLNetConfig but vocab_size and reuse_len, which
come from the vocabulary and data.reuse_length), `data` (XlnetDataConfig).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp

from plm_jax.configlib import fail, param
from plm_jax.data.config import CorpusConfig, VocabConfig
from plm_jax.models.xlnet import XLNetConfig, XLNetLMHeadModel, init_params
from plm_jax.objectives import flops_families
from plm_jax.objectives import losses
from plm_jax.objectives.base import (Batch, ConfiguredVocabulary, Metrics, Objective,
                                     example_weights, register)


def _model_section():
  fields = [(f.name, f.type, f.default) for f in dataclasses.fields(XLNetConfig)
            if f.name not in ("vocab_size", "reuse_len")]
  return dataclasses.make_dataclass("XLNetModelConfig", fields, frozen=True)


XLNetModelConfig = _model_section()


@dataclasses.dataclass(frozen=True)
class XlnetDataConfig:
  seq_length: int = param(512, ge=8)       # tokens per row
  reuse_length: int = param(256, ge=1)     # leading tokens of a row kept as the next memory
  num_predict: int = param(0, ge=0)        # targets per row (0: round(seq_length / partial_k))
  partial_k: float = param(6.0, ge=1.0)    # K: 1/K of each factorisation order is predicted
  bi_data: bool = False                    # half the streams read backwards (model.bi_data)
  # the order is sampled within blocks of perm_size tokens (released code's perm_size; must
  # divide reuse_length and seq_length - reuse_length); 0: one block per part
  perm_size: int = param(0, ge=0)
  max_gram: int = param(5, ge=1)           # longest target span (words)
  mask_alpha: int = param(6, ge=1)         # a span of n words sits in n * alpha / beta tokens
  mask_beta: int = param(1, ge=1)
  group_size: int = param(256, gt=0)       # documents cut into parallel streams at a time
  corpus: CorpusConfig = CorpusConfig()
  vocab: VocabConfig = VocabConfig()

  def resolved_num_predict(self) -> int:
    return self.num_predict or max(1, int(round(self.seq_length / self.partial_k)))


@register("xlnet_plm")
class XlnetPermutationLm(ConfiguredVocabulary, Objective):
  """Permutation LM on XLNetLMHeadModel with memory carried across steps."""
  family = "xlnet"
  SECTIONS = {"model": XLNetModelConfig, "data": XlnetDataConfig}

  def __init__(self, config, vocab_size: Optional[int] = None):
    """vocab_size: a fixed model vocabulary for batches made elsewhere (benchmarks, tests)."""
    super().__init__(config)
    d: XlnetDataConfig = self.sections["data"]
    m = self.sections["model"]
    if d.reuse_length > d.seq_length - 8:
      fail("config.data.reuse_length", d.reuse_length,
           f"must leave at least 8 tokens of data.seq_length={d.seq_length} for A, B, "
           "<sep>, <sep>, <cls>")
    if d.resolved_num_predict() > d.seq_length - 3:
      fail("config.data.num_predict", d.num_predict, "more targets than tokens")
    if d.perm_size and (d.reuse_length % d.perm_size
                        or (d.seq_length - d.reuse_length) % d.perm_size):
      fail("config.data.perm_size", d.perm_size, f"must divide data.reuse_length="
           f"{d.reuse_length} and data.seq_length - reuse_length="
           f"{d.seq_length - d.reuse_length}")
    if m.bi_data != d.bi_data:
      fail("config.model.bi_data", m.bi_data, f"must equal data.bi_data={d.bi_data}")
    if m.attn_type != "bi":
      fail("config.model.attn_type", m.attn_type, "permutation LM needs 'bi'")
    self.data = dataclasses.replace(d, num_predict=d.resolved_num_predict())
    self.init_vocabulary(vocab_size)

  def check_run(self, run) -> None:
    if self.data.bi_data and run.train.batch_size % 2:
      fail("config.train.batch_size", run.train.batch_size, "data.bi_data needs an even batch")

  # ---- vocabulary and model --------------------------------------------------------------
  def model_config(self) -> XLNetConfig:
    return XLNetConfig(vocab_size=self.vocab_size(), reuse_len=self.data.reuse_length,
                       **dataclasses.asdict(self.sections["model"]))

  def make_model(self) -> XLNetLMHeadModel:
    return XLNetLMHeadModel(self.model_config())

  def init_params(self, rng: jax.Array) -> Any:
    return init_params(self.make_model(), rng)

  def forward_flops_per_example(self, lookups: bool = True) -> float:
    """A row of data.seq_length tokens with its data.num_predict targets and segment ids,
    attending to model.mem_len memory positions (the carried memory; none when 0)."""
    m = self.sections["model"]
    return flops_families.xlnet_forward_flops(
        self.model_config(), self.data.seq_length, self.data.num_predict,
        mem_len=max(m.mem_len, 0), segments=True, lookups=lookups)

  def input_ranges(self) -> Dict[str, int]:
    return {"input_ids": self.vocab_size(), "token_type_ids": 3,
            "target_ids": self.vocab_size(), "target_index": self.data.seq_length,
            "perm_mask": 2}

  # ---- data -----------------------------------------------------------------------------
  def feature_converter(self):
    from plm_jax.data import xlnet_pretrain  # pylint: disable=import-outside-toplevel
    return xlnet_pretrain.XlnetFeatureConverter()

  def feature_lengths(self) -> Dict[str, int]:
    from plm_jax.data import xlnet_pretrain  # pylint: disable=import-outside-toplevel
    return xlnet_pretrain.feature_lengths(self.data)

  def batch_spec(self, batch_size: int) -> Dict[str, jax.ShapeDtypeStruct]:
    spec = super().batch_spec(batch_size)
    length = self.data.seq_length
    spec["perm_mask"] = jax.ShapeDtypeStruct((batch_size, length, length), jnp.int32)
    return spec

  def get_dataset(self, split: str, batch_size: int, seed: int, shard_index: int = 0,
                  num_shards: int = 1, num_epochs: Optional[int] = None):
    from plm_jax.data import xlnet_pretrain  # pylint: disable=import-outside-toplevel
    return xlnet_pretrain.get_dataset(self.data, self.vocabulary(), split, batch_size, seed,
                                      shard_index, num_shards, num_epochs)

  # ---- carried memory -------------------------------------------------------------------
  def init_carry(self, batch_size: int) -> Any:
    m = self.sections["model"]
    if m.mem_len <= 0:
      return None
    return {"mems": jnp.zeros((batch_size, m.num_layers, m.mem_len, m.hidden_size),
                              jnp.float32)}

  # ---- loss -----------------------------------------------------------------------------
  def forward(self, params: Any, batch: Batch, rng: Optional[jax.Array], deterministic: bool,
              mems: Optional[jax.Array] = None) -> Tuple[Dict[str, jax.Array], jax.Array]:
    """Model outputs for the batch's targets and the target weights [B, P]."""
    w = batch["target_weights"] * example_weights(batch)[:, None]
    tm = jax.nn.one_hot(batch["target_index"], self.data.seq_length, dtype=jnp.float32)
    tm = tm * (batch["target_weights"][..., None] > 0)                  # [B, P, L]
    rngs = {} if (deterministic or rng is None) else {"dropout": rng}
    out = self.make_model().apply(
        {"params": params}, batch["input_ids"], token_type_ids=batch["token_type_ids"],
        perm_mask=batch["perm_mask"], target_mapping=tm, mems=mems,
        deterministic=deterministic, rngs=rngs)
    return out, w

  def _loss(self, out, batch, w) -> Tuple[jax.Array, Metrics]:
    nll = losses.softmax_cross_entropy(out["logits"], batch["target_ids"])   # [B, P]
    correct = losses.top1_correct(out["logits"], batch["target_ids"])
    total = jnp.sum(w)
    nll_sum = jnp.sum(nll * w)
    return nll_sum / jnp.maximum(total, 1.0), {"loss": (nll_sum, total),
                                               "accuracy": (jnp.sum(correct * w), total)}

  def loss_fn(self, params: Any, batch: Batch, rng: Optional[jax.Array], deterministic: bool,
              normalizers: Optional[Dict[str, jax.Array]] = None) -> Tuple[jax.Array, Metrics]:
    out, w = self.forward(params, batch, rng, deterministic)
    return self._loss(out, batch, w)

  def loss_fn_with_carry(self, params, batch, rng, deterministic, carry, normalizers=None):
    if carry is None:
      loss, metrics = self.loss_fn(params, batch, rng, deterministic)
      return loss, metrics, None
    mems = jnp.swapaxes(carry["mems"], 0, 1)                           # [layers, B, M, H]
    out, w = self.forward(params, batch, rng, deterministic, mems)
    loss, metrics = self._loss(out, batch, w)
    return loss, metrics, {"mems": jnp.swapaxes(out["new_mems"], 0, 1)}
