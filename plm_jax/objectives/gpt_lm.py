"""Causal language modelling (GPT-1, GPT-2): next-token cross-entropy over packed documents.

Radford et al. 2018 (section 3.1) and 2019: maximise sum_i log P(u_i | u_<i) over a
stream of text. Rows come from plm_jax.data.gpt_pretrain (documents each starting
with the end-of-text token, concatenated and cut into seq_length rows). With
data.cross_documents=False, attention stays inside each document (segment mask) and
positions restart at every document; the prediction that would cross a document
end is then not scored.

Config sections (owned here): `model` (GPTModelConfig: the GPTConfig fields but
vocab_size, which comes from the vocabulary, plus `architecture`), `data`
(GptDataConfig). Metrics: loss (mean next-token NLL, nats), accuracy; evaluation
adds perplexity = exp(total NLL / tokens) over the whole held-out set.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from plm_jax.configlib import fail, param
from plm_jax.data.config import CorpusConfig, VocabConfig
from plm_jax.models.gpt import GPT2Config, GPTLMHeadModel, OpenAIGPTConfig, init_params
from plm_jax.objectives import flops_families
from plm_jax.objectives import losses
from plm_jax.objectives.base import (Batch, ConfiguredVocabulary, Metrics, Objective,
                                     example_weights, register)

ARCHITECTURES = {"gpt2": GPT2Config, "openai-gpt": OpenAIGPTConfig}
_NORM = {"gpt2": "pre", "openai-gpt": "post"}


def _model_section():
  fields = [("architecture", str, param("gpt2", choices=tuple(ARCHITECTURES)))]
  fields += [(f.name, f.type, f.default) for f in dataclasses.fields(GPT2Config)
             if f.name != "vocab_size"]
  return dataclasses.make_dataclass("GPTModelConfig", fields, frozen=True)


GPTModelConfig = _model_section()


@dataclasses.dataclass(frozen=True)
class GptDataConfig:
  seq_length: int = param(1024, ge=8)         # tokens per row
  cross_documents: bool = True                # False: attention and positions per document
  group_size: int = param(64, gt=0)           # documents packed together in stream order
  shuffle_buffer: int = param(10_000, ge=0)   # row-level shuffle buffer (0: off)
  corpus: CorpusConfig = CorpusConfig()
  vocab: VocabConfig = VocabConfig()


@register("gpt_clm")
class GptCausalLm(ConfiguredVocabulary, Objective):
  """Next-token prediction on GPTLMHeadModel (GPT-1 or GPT-2 by model.architecture)."""
  family = "gpt2"
  SECTIONS = {"model": GPTModelConfig, "data": GptDataConfig}

  def __init__(self, config, vocab_size: Optional[int] = None):
    """vocab_size: a fixed model vocabulary for batches made elsewhere (benchmarks, tests)."""
    super().__init__(config)
    self.data: GptDataConfig = self.sections["data"]
    m = self.sections["model"]
    self.family = m.architecture             # the export's family = the converter's model_type
    if m.norm_position != _NORM[m.architecture]:
      fail("config.model.norm_position", m.norm_position,
           f"model.architecture={m.architecture!r} has {_NORM[m.architecture]!r} layers")
    if self.data.seq_length > m.max_position_embeddings:
      fail("config.data.seq_length", self.data.seq_length,
           f"must be <= model.max_position_embeddings={m.max_position_embeddings}")
    self.init_vocabulary(vocab_size)

  # ---- vocabulary and model --------------------------------------------------------------
  def model_config(self):
    values = dataclasses.asdict(self.sections["model"])
    cls = ARCHITECTURES[values.pop("architecture")]
    return cls(vocab_size=self.vocab_size(), **values)

  def make_model(self) -> GPTLMHeadModel:
    return GPTLMHeadModel(self.model_config())

  def init_params(self, rng: jax.Array) -> Any:
    return init_params(self.make_model(), rng)

  def input_ranges(self) -> Dict[str, int]:
    return {"input_ids": self.vocab_size(), "position_ids": self.data.seq_length}

  def forward_flops_per_example(self, lookups: bool = True) -> float:
    """A row of data.seq_length tokens, logits at every position (flops_families)."""
    return flops_families.gpt_forward_flops(self.model_config(), self.data.seq_length, lookups)

  # ---- data -----------------------------------------------------------------------------
  def feature_converter(self):
    from plm_jax.data import gpt_pretrain  # pylint: disable=import-outside-toplevel
    return gpt_pretrain.CausalLmFeatureConverter()

  def feature_lengths(self) -> Dict[str, int]:
    from plm_jax.data import gpt_pretrain  # pylint: disable=import-outside-toplevel
    return gpt_pretrain.feature_lengths(self.data.seq_length)

  def get_dataset(self, split: str, batch_size: int, seed: int, shard_index: int = 0,
                  num_shards: int = 1, num_epochs: Optional[int] = None):
    from plm_jax.data import gpt_pretrain  # pylint: disable=import-outside-toplevel
    return gpt_pretrain.get_dataset(self.data, self.vocabulary(), split, batch_size, seed,
                                    shard_index, num_shards, num_epochs)

  # ---- loss -----------------------------------------------------------------------------
  def token_nll(self, params: Any, batch: Batch, rng: Optional[jax.Array] = None,
                deterministic: bool = True) -> Tuple[jax.Array, jax.Array, jax.Array]:
    """(nll [B, L-1], correct [B, L-1], weights [B, L-1]) of each next-token prediction."""
    ids, segments = batch["input_ids"], batch["segment_ids"]
    rngs = {} if (deterministic or rng is None) else {"dropout": rng}
    out = self.make_model().apply(
        {"params": params}, ids, position_ids=batch["position_ids"],
        segment_ids=None if self.data.cross_documents else segments,
        deterministic=deterministic, rngs=rngs)
    logits, targets = out["logits"][:, :-1], ids[:, 1:]              # [B, L-1, V], [B, L-1]
    weights = (segments[:, 1:] > 0).astype(jnp.float32)
    if not self.data.cross_documents:
      weights = weights * (segments[:, 1:] == segments[:, :-1])
    weights = weights * example_weights(batch)[:, None]
    return (losses.softmax_cross_entropy(logits, targets), losses.top1_correct(logits, targets),
            weights)

  def loss_fn(self, params: Any, batch: Batch, rng: Optional[jax.Array], deterministic: bool,
              normalizers: Optional[Dict[str, jax.Array]] = None) -> Tuple[jax.Array, Metrics]:
    nll, correct, w = self.token_nll(params, batch, rng, deterministic)
    total = jnp.sum(w)
    nll_sum = jnp.sum(nll * w)
    loss = nll_sum / jnp.maximum(total, 1.0)
    return loss, {"loss": (nll_sum, total), "accuracy": (jnp.sum(correct * w), total)}

  # ---- evaluation: perplexity over the whole held-out set ---------------------------------
  def predict_fn(self, params: Any, batch: Batch) -> Dict[str, jax.Array]:
    nll, _, w = self.token_nll(params, batch)
    return {"nll_sum": jnp.sum(nll * w, axis=1), "tokens": jnp.sum(w, axis=1)}

  def compute_metrics(self, predictions: Dict[str, np.ndarray]) -> Dict[str, float]:
    tokens = float(np.sum(predictions["tokens"], dtype=np.float64))
    nll = float(np.sum(predictions["nll_sum"], dtype=np.float64))
    return {"perplexity": math.exp(nll / max(tokens, 1.0)), "eval_tokens": tokens}
