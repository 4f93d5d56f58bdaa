"""GPT-1 (Radford et al., 2018) and GPT-2 (Radford et al., 2019): decoder-only causal LMs.

One backbone serves both; the config says which:
  GPT-1  post-LN layers x = LN(x + f(x)), learned positions, GELU (tanh form, as the
         OpenAI code), no final LayerNorm, 512 positions, no embedding LayerNorm.
  GPT-2  pre-LN layers x = x + f(LN(x)) with a final LayerNorm (ln_f), 1024 positions,
         residual projections (attention output, MLP output) initialised with std
         initializer_range / sqrt(2 * num_layers) (the paper's 1/sqrt(N) for N residual
         layers; Hugging Face's GPT2PreTrainedModel._init_weights).
The output layer is the token embedding (tied). Token types, when given, are looked
up in the token table too (Hugging Face's OpenAIGPTModel / GPT2Model).

Contract (arguments and output names as in Hugging Face transformers):
  OpenAIGPTConfig / GPT2Config   frozen dataclasses (GPTConfig with each paper's defaults)
  GPTModel(config)               __call__(input_ids, attention_mask=None, token_type_ids=None,
                                 position_ids=None, segment_ids=None, deterministic=True,
                                 decode=False) -> {last_hidden_state [B, L, H]}
  GPTLMHeadModel(config)         the same arguments -> {last_hidden_state, logits [B, L, V]}

attention_mask [B, kv_len] (1 keep, 0 pad) hides keys; segment_ids [B, L] (packed
documents) hide keys of another document. decode=True runs through the key/value cache
(create it with init(..., decode=True) on a [B, max_len] input); then kv_len is the
cache length and position_ids must be given. plm_jax.models.gpt_generate generates.
"""
import dataclasses
import math
from typing import Any, Dict, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from plm_jax.models.config_base import ModelConfig
from plm_jax.layers import checks, common
from plm_jax.layers.attention import combine_biases, padding_mask_bias, segment_mask_bias
from plm_jax.layers.embeddings import Embed
from plm_jax.layers.norms import LayerNorm
from plm_jax.layers.transformer import LayerStack, TransformerLayer


@dataclasses.dataclass(frozen=True)
class GPTConfig(ModelConfig):
  vocab_size: int = 40478
  max_position_embeddings: int = 512
  hidden_size: int = 768
  num_layers: int = 12
  num_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = "gelu_tanh"
  norm_position: str = "post"            # post: GPT-1; pre (+ final LayerNorm): GPT-2
  layer_norm_eps: float = 1e-5
  embedding_dropout_rate: float = 0.1
  hidden_dropout_rate: float = 0.1       # residual dropout
  attention_dropout_rate: float = 0.1
  initializer_range: float = 0.02
  scale_residual_init: bool = False      # GPT-2: residual projections std / sqrt(2 * layers)
  dtype: str = "float32"
  scan_layers: bool = False
  remat_policy: str = "none"
  fused_ops: bool = True
  check_inputs: bool = False


@dataclasses.dataclass(frozen=True)
class OpenAIGPTConfig(GPTConfig):
  """GPT-1: 12 layers, 768 wide, 12 heads, 3072 inner, 512 positions, 40,478 BPE tokens."""


@dataclasses.dataclass(frozen=True)
class GPT2Config(GPTConfig):
  """GPT-2 124M by default: pre-LN, final LayerNorm, 1024 positions, 50,257 BPE tokens."""
  vocab_size: int = 50257
  max_position_embeddings: int = 1024
  norm_position: str = "pre"
  scale_residual_init: bool = True


def layer_kwargs(cfg: GPTConfig) -> Dict[str, Any]:
  return dict(num_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
              hidden_act=cfg.hidden_act, norm_position=cfg.norm_position,
              norm_type="layernorm", norm_eps=cfg.layer_norm_eps, causal=True,
              hidden_dropout_rate=cfg.hidden_dropout_rate,
              attention_dropout_rate=cfg.attention_dropout_rate,
              initializer_range=cfg.initializer_range, dtype=cfg.dtype, fused_ops=cfg.fused_ops)


class GPTModel(nn.Module):
  """Embeddings (wte + wpe, dropout) -> causal layers 'h' -> ln_f (pre-LN only).

  Params: wte/embedding [vocab, embed], wpe/embedding [position, embed],
  h/layers_{i}/... (h/layers with scan_layers), ln_f (GPT-2).
  """
  config: GPTConfig

  def setup(self):
    cfg = self.config
    dtype = common.get_dtype(cfg.dtype)
    self.wte = Embed(cfg.vocab_size, cfg.hidden_size, ("vocab", "embed"),
                     cfg.initializer_range, dtype)
    self.wpe = Embed(cfg.max_position_embeddings, cfg.hidden_size, ("position", "embed"),
                     cfg.initializer_range, dtype)
    self.drop = common.Dropout(cfg.embedding_dropout_rate)
    self.h = LayerStack(TransformerLayer, layer_kwargs(cfg), cfg.num_layers,
                        cfg.scan_layers, cfg.remat_policy)
    if cfg.norm_position == "pre":
      self.ln_f = LayerNorm(cfg.layer_norm_eps, fused_ops=cfg.fused_ops)

  def __call__(self, input_ids: jax.Array, attention_mask: Optional[jax.Array] = None,
               token_type_ids: Optional[jax.Array] = None,
               position_ids: Optional[jax.Array] = None,
               segment_ids: Optional[jax.Array] = None, deterministic: bool = True,
               decode: bool = False) -> Dict[str, jax.Array]:
    """input_ids [batch, length] -> {last_hidden_state [batch, length, embed] float32}."""
    cfg = self.config
    length = input_ids.shape[-1]
    if position_ids is None:
      if length > cfg.max_position_embeddings:
        raise ValueError(f"input_ids: length {length} exceeds the context of "
                         f"{cfg.max_position_embeddings} positions (max_position_embeddings)")
      position_ids = jnp.arange(length, dtype=jnp.int32)[None]      # [1, length]
    if cfg.check_inputs:
      checks.check_ids("input_ids", input_ids, cfg.vocab_size, "vocab_size")
      checks.check_ids("position_ids", position_ids, cfg.max_position_embeddings,
                       "max_position_embeddings")
    x = self.wte(input_ids).astype(jnp.float32) + self.wpe(position_ids).astype(jnp.float32)
    if token_type_ids is not None:
      x = x + self.wte(token_type_ids).astype(jnp.float32)
    x = self.drop(x, deterministic=deterministic)                    # [batch, length, embed]
    x = common.constrain(x, common.BATCH_LENGTH_EMBED)
    bias = combine_biases(padding_mask_bias(attention_mask),
                          None if segment_ids is None else segment_mask_bias(segment_ids))
    x = self.h(x, bias, deterministic=deterministic, decode=decode)
    if cfg.norm_position == "pre":
      x = self.ln_f(x)
    return {"last_hidden_state": x}

  def attend(self, hidden: jax.Array) -> jax.Array:
    """Tied output layer: [..., embed] -> [..., vocab] float32."""
    return self.wte.attend(hidden).astype(jnp.float32)


class GPTLMHeadModel(nn.Module):
  """GPTModel ('transformer') + the tied LM head (no params of its own)."""
  config: GPTConfig

  def setup(self):
    self.transformer = GPTModel(self.config)

  def __call__(self, input_ids: jax.Array, attention_mask: Optional[jax.Array] = None,
               token_type_ids: Optional[jax.Array] = None,
               position_ids: Optional[jax.Array] = None,
               segment_ids: Optional[jax.Array] = None, deterministic: bool = True,
               decode: bool = False) -> Dict[str, jax.Array]:
    out = self.transformer(input_ids, attention_mask, token_type_ids, position_ids,
                           segment_ids, deterministic=deterministic, decode=decode)
    return dict(out, logits=self.transformer.attend(out["last_hidden_state"]))


class GPTSequenceBackbone(GPTModel):
  """GPTModel for fine-tuning by input transformation (GPT-1 section 3.3): the same params;
  token types are ignored (the start / delimiter / extract tokens mark the parts) and the
  output adds last_token_state [B, H], the final state of each row's last real token (the
  extract token; right padding), which the task's linear layer reads."""

  def __call__(self, input_ids: jax.Array, attention_mask: Optional[jax.Array] = None,
               token_type_ids: Optional[jax.Array] = None,
               deterministic: bool = True) -> Dict[str, jax.Array]:
    del token_type_ids
    out = super().__call__(input_ids, attention_mask, deterministic=deterministic)
    h = out["last_hidden_state"]                                      # [batch, length, embed]
    if attention_mask is None:
      last = jnp.full((h.shape[0],), h.shape[1] - 1, jnp.int32)
    else:
      last = jnp.maximum(jnp.sum(attention_mask.astype(jnp.int32), axis=-1) - 1, 0)
    state = jnp.take_along_axis(h, last[:, None, None], axis=1)[:, 0]  # [batch, embed]
    return dict(out, last_token_state=state)


_RESIDUAL_PROJECTIONS = (("attention", "out", "kernel"), ("mlp", "wo", "kernel"))


def scale_residual_init(params: Any, cfg: GPTConfig) -> Any:
  """GPT-2's initialisation: residual projection kernels (attention/out, mlp/wo) times
  1/sqrt(2 * num_layers); other params as they are. Boxed or plain trees."""
  if not cfg.scale_residual_init:
    return params
  factor = 1.0 / math.sqrt(2 * cfg.num_layers)

  def scale(path, x):
    names = tuple(getattr(k, "key", None) for k in path)
    hit = any(names[i:i + 3] == p for p in _RESIDUAL_PROJECTIONS for i in range(len(names)))
    return x * factor if hit else x
  return jax.tree_util.tree_map_with_path(scale, params)


def init_params(model: nn.Module, rng: jax.Array, length: int = 2) -> Any:
  """Fresh params of a GPTModel / GPTLMHeadModel (boxed), with the config's init scaling."""
  boxed = model.init(rng, jnp.zeros((1, length), jnp.int32))["params"]
  return scale_residual_init(boxed, model.config)
