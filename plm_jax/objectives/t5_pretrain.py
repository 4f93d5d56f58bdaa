"""T5 pretraining objective: span corruption on an encoder-decoder (Raffel et al. 2020).

Loss: cross-entropy of the targets (sentinels and the dropped spans, then EOS) given the
corrupted inputs, averaged over real target tokens (`decoder_loss_weights`), with the
decoder reading the targets shifted right (teacher forcing). Batches are seqio's
EncDecFeatureConverter features; with data.pack several examples share a row, kept
apart by segment ids.

Config sections (owned here): `model` (T5Config without the ids that come from the
vocabulary), `data` (T5DataConfig). The vocabulary is a SentencePiece model with an EOS
piece (`python -m plm_jax.data.spm_train --layout=t5`) plus `data.extra_ids` sentinels
<extra_id_0> = vocab_size - 1, <extra_id_1> = vocab_size - 2, ...
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from plm_jax.configlib import fail, param
from plm_jax.data.config import CorpusConfig, VocabConfig
from plm_jax.layers.transformer import REMAT_POLICIES
from plm_jax.models.t5 import FEED_FORWARD, T5Config, T5ForConditionalGeneration
from plm_jax.objectives import flops_families
from plm_jax.objectives import losses
from plm_jax.objectives.base import ConfiguredVocabulary, Objective, example_weights, register

T5_SPECIAL_TOKENS = {"pad": "<pad>", "eos": "</s>", "unk": "<unk>"}


@dataclasses.dataclass(frozen=True)
class T5DataConfig:
  inputs_length: int = param(512, ge=8)         # encoder tokens per row (EOS included)
  targets_length: int = param(114, ge=4)        # decoder tokens per row; >= what span
                                                # corruption of inputs_length needs
  noise_density: float = param(0.15, gt=0.0, lt=1.0)    # fraction of tokens corrupted
  mean_noise_span_length: float = param(3.0, gt=0.0)    # mean corrupted span length
  pack: bool = True                             # pack examples into rows (segment ids)
  extra_ids: int = param(100, ge=1)             # sentinel ids on top of the vocabulary
  shuffle_buffer: int = param(10_000, ge=0)     # example-level shuffle buffer (0: off)
  corpus: CorpusConfig = CorpusConfig()
  vocab: VocabConfig = VocabConfig()

  def check(self, prefix: str) -> None:
    from plm_jax.data.t5_pretrain import random_spans_helper  # pylint: disable=import-outside-toplevel
    _, needed = random_spans_helper(self.inputs_length, self.noise_density,
                                    self.mean_noise_span_length)
    if self.targets_length < needed:
      fail(f"{prefix}.targets_length", self.targets_length,
           f"span corruption of inputs_length={self.inputs_length} makes targets of "
           f"{needed} tokens; set targets_length >= {needed}")


def _model_section():
  skip = ("vocab_size", "pad_token_id", "eos_token_id", "decoder_start_token_id")
  fields = [(f.name, f.type, f.default) for f in dataclasses.fields(T5Config)
            if f.name not in skip]
  return dataclasses.make_dataclass("T5ModelConfig", fields, frozen=True)


T5ModelConfig = _model_section()


def check_t5_model(m, prefix: str = "config.model") -> None:
  for key in ("hidden_size", "head_dim", "intermediate_size", "num_layers",
              "num_decoder_layers", "num_heads", "relative_attention_num_buckets",
              "relative_attention_max_distance"):
    if getattr(m, key) <= 0:
      fail(f"{prefix}.{key}", getattr(m, key), "must be > 0")
  if m.relative_attention_num_buckets < 4:
    fail(f"{prefix}.relative_attention_num_buckets", m.relative_attention_num_buckets,
         "must be >= 4 (half exact, half logarithmic, per direction)")
  if not 0.0 <= m.dropout_rate < 1.0:
    fail(f"{prefix}.dropout_rate", m.dropout_rate, "must be in [0, 1)")
  if m.feed_forward_proj not in FEED_FORWARD:
    fail(f"{prefix}.feed_forward_proj", m.feed_forward_proj,
         f"unknown; choose one of {sorted(FEED_FORWARD)}")
  if m.dtype not in ("float32", "bfloat16"):
    fail(f"{prefix}.dtype", m.dtype, "unknown dtype; choose one of ('float32', 'bfloat16')")
  if m.remat_policy not in REMAT_POLICIES:
    fail(f"{prefix}.remat_policy", m.remat_policy, f"unknown; choose one of {REMAT_POLICIES}")


def t5_vocabulary(vocab_config, extra_ids: int, key: str = "config.data.vocab"):
  """A SentencePiece vocabulary with T5's pad 0 and an EOS piece, plus extra_ids sentinels."""
  from plm_jax.data import vocab as vocab_lib  # pylint: disable=import-outside-toplevel
  kind = vocab_config.resolved_type()
  if kind != "sentencepiece":
    fail(f"{key}.path", vocab_config.path,
         f"T5 needs a SentencePiece model with an EOS piece (got a {kind} vocabulary); "
         "make one with python -m plm_jax.data.spm_train --layout=t5")
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  if not vocab_config.path or not tf.io.gfile.exists(vocab_config.path):
    fail(f"{key}.path", vocab_config.path, "SentencePiece model does not exist")
  vocab = vocab_lib.SentencePieceVocabulary(vocab_config.path, special_tokens=T5_SPECIAL_TOKENS,
                                            extra_ids=extra_ids)
  if vocab.pad_id != 0 or vocab.eos_id is None or vocab.eos_id < 0:
    fail(f"{key}.path", vocab_config.path,
         f"pad id {vocab.pad_id} and EOS id {vocab.eos_id}: T5 needs pad 0 and an EOS piece "
         "(train one with python -m plm_jax.data.spm_train --layout=t5)")
  return vocab


def scale_query_init(params: Any, num_heads: int, head_dim: int) -> Any:
  """T5's initialisation folds the attention scale into the queries: query kernels get
  std (hidden * head_dim)**-0.5 instead of hidden**-0.5 (mesh-tensorflow, HF _init_weights)."""
  del num_heads

  def one(path, leaf):
    names = [str(getattr(k, "key", k)) for k in path]
    if len(names) >= 2 and names[-2:] == ["query", "kernel"]:
      if isinstance(leaf, nn.meta.AxisMetadata):
        return leaf.replace_boxed(leaf.unbox() * head_dim ** -0.5)
      return leaf * head_dim ** -0.5
    return leaf
  return jax.tree_util.tree_map_with_path(
      one, params, is_leaf=lambda x: isinstance(x, nn.meta.AxisMetadata))


@register("t5_span_corruption")
class T5SpanCorruption(ConfiguredVocabulary, Objective):
  """Span corruption on T5ForConditionalGeneration."""
  family = "t5"
  SECTIONS = {"model": T5ModelConfig, "data": T5DataConfig}

  def __init__(self, config, vocab_size: Optional[int] = None):
    """vocab_size: a fixed model vocabulary size for batches made elsewhere (benchmarks)."""
    super().__init__(config)
    self.init_vocabulary(vocab_size)
    self.data: T5DataConfig = self.sections["data"]
    check_t5_model(self.sections["model"])

  def build_vocabulary(self):
    return t5_vocabulary(self.data.vocab, self.data.extra_ids)

  def model_config(self) -> T5Config:
    eos = 1 if self._fixed_vocab_size is not None else int(self.vocabulary().eos_id)
    return T5Config(vocab_size=self.vocab_size(), pad_token_id=0, eos_token_id=eos,
                    decoder_start_token_id=0, **dataclasses.asdict(self.sections["model"]))

  def make_model(self) -> T5ForConditionalGeneration:
    return T5ForConditionalGeneration(self.model_config())

  def init_params(self, rng: jax.Array) -> Any:
    ids = jnp.zeros((1, self.data.inputs_length), jnp.int32)
    dec = jnp.zeros((1, self.data.targets_length), jnp.int32)
    params = self.make_model().init({"params": rng}, ids, decoder_input_ids=dec)["params"]
    m = self.sections["model"]
    return scale_query_init(params, m.num_heads, m.head_dim)

  def forward_flops_per_example(self, lookups: bool = True) -> float:
    """A row of data.inputs_length encoder and data.targets_length decoder tokens (packed
    or not: the same shapes)."""
    return flops_families.t5_forward_flops(self.model_config(), self.data.inputs_length,
                                           self.data.targets_length, lookups)

  def input_ranges(self) -> Dict[str, int]:
    v = self.vocab_size()
    return {"encoder_input_tokens": v, "decoder_target_tokens": v, "decoder_input_tokens": v}

  # ---- data -----------------------------------------------------------------------------
  def feature_converter(self):
    import seqio  # pylint: disable=import-outside-toplevel
    return seqio.EncDecFeatureConverter(pack=self.data.pack)

  def feature_lengths(self) -> Dict[str, int]:
    return {"inputs": self.data.inputs_length, "targets": self.data.targets_length}

  def batch_spec(self, batch_size: int) -> Dict[str, jax.ShapeDtypeStruct]:
    lengths = self.feature_converter().get_model_feature_lengths(self.feature_lengths())
    return {k: jax.ShapeDtypeStruct((batch_size, n), jnp.int32) for k, n in lengths.items()}

  def tokens_per_batch(self, spec) -> int:
    """Encoder inputs plus decoder targets."""
    return sum(int(math.prod(spec[k].shape))
               for k in ("encoder_input_tokens", "decoder_target_tokens"))

  def get_dataset(self, split: str, batch_size: int, seed: int, shard_index: int = 0,
                  num_shards: int = 1, num_epochs: Optional[int] = None):
    from plm_jax.data import t5_pretrain  # pylint: disable=import-outside-toplevel
    return t5_pretrain.get_dataset(self.data, self.vocabulary(), split, batch_size, seed,
                                   shard_index, num_shards, num_epochs)

  # ---- loss -----------------------------------------------------------------------------
  def logits(self, params: Any, batch, rng: Optional[jax.Array] = None,
             deterministic: bool = True) -> jax.Array:
    """The decoder's logits [B, T, V] for an EncDecFeatureConverter batch."""
    rngs = {} if (deterministic or rng is None) else {"dropout": rng}
    enc = batch["encoder_input_tokens"]
    packed = "encoder_segment_ids" in batch
    return self.make_model().apply(
        {"params": params}, input_ids=enc,
        attention_mask=None if packed else (enc > 0).astype(jnp.int32),
        decoder_input_ids=batch["decoder_input_tokens"],
        encoder_segment_ids=batch.get("encoder_segment_ids"),
        decoder_segment_ids=batch.get("decoder_segment_ids"),
        deterministic=deterministic, rngs=rngs)["logits"]

  def loss_fn(self, params, batch, rng, deterministic, normalizers=None):
    logits = self.logits(params, batch, rng, deterministic)
    targets = batch["decoder_target_tokens"]
    weights = (batch["decoder_loss_weights"].astype(jnp.float32)
               * example_weights(batch)[:, None])                      # [B, T]
    nll = losses.softmax_cross_entropy(logits, targets)
    correct = losses.top1_correct(logits, targets)
    total = jnp.sum(weights)
    loss_sum = jnp.sum(nll * weights)
    loss = loss_sum / jnp.maximum(total, 1e-8)
    return loss, {"loss": (loss_sum, total), "accuracy": (jnp.sum(correct * weights), total)}
