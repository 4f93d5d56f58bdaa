"""T5 (Raffel et al., 2020): encoder-decoder Transformer with relative position bias.

T5 v1.0: ReLU feed-forward, output layer tied to the input embedding with the
decoder output rescaled by hidden_size**-0.5. T5 v1.1: gated-GELU (tanh
approximation, as HF's 'gelu_new' and flax's default) and an untied output layer
without the rescale. Both: pre-norm layers with RMS norm (no mean, no bias), no
biases anywhere, no attention scaling (folded into the query initialisation),
no position embeddings: a relative position bias per stack (bidirectional in
the encoder, causal in the decoder), computed once and added in every layer.

Contract (argument and output names as in Hugging Face transformers):
  T5Config
  T5ForConditionalGeneration(config)
    __call__(input_ids, attention_mask=None, decoder_input_ids=None,
             decoder_attention_mask=None, encoder_segment_ids=None,
             decoder_segment_ids=None, deterministic=True)
      -> dict(logits [B, T, V] float32, encoder_last_hidden_state [B, S, H])
    encode(input_ids, attention_mask=None, encoder_segment_ids=None, deterministic=True)
      -> [B, S, H]
    decode(decoder_input_ids, encoder_outputs, attention_mask=None,
           decoder_attention_mask=None, encoder_segment_ids=None, decoder_segment_ids=None,
           deterministic=True, decode=False) -> logits [B, T, V]
  decode=True runs the decoder incrementally through a key/value cache (the 'cache'
  collection): create it with init(..., decode=True, method=decode) on a
  full-length [B, T_max] input, then apply one step at a time with mutable=['cache'].
Params: shared/embedding [V, H]; encoder/{relative_attention_bias/embedding,
layers_i/..., final_layer_norm/scale}; decoder/... (layers with cross_attention);
lm_head/kernel [H, V] (untied only). Packed batches: segment ids [B, L] keep
attention within a segment (0 = padding).
"""
import dataclasses
from typing import Any, Dict, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from plm_jax.models.config_base import ModelConfig
from plm_jax.layers import attention, common
from plm_jax.layers.embeddings import Embed
from plm_jax.layers.mlp import dense
from plm_jax.layers.norms import RMSNorm
from plm_jax.layers.relative_position import RelativePositionBias
from plm_jax.layers.transformer import TransformerLayer, stack_layers

# feed_forward_proj -> (activation name in plm_jax.layers.common, gated)
FEED_FORWARD = {"relu": ("relu", False), "gelu": ("gelu", False),
                "gated-gelu": ("gelu_tanh", True), "gated-relu": ("relu", True),
                "gated-silu": ("silu", True)}


@dataclasses.dataclass(frozen=True)
class T5Config(ModelConfig):
  vocab_size: int = 32128
  hidden_size: int = 512                 # d_model
  head_dim: int = 64                     # d_kv (num_heads * head_dim need not be hidden_size)
  intermediate_size: int = 2048          # d_ff
  num_layers: int = 6                    # encoder layers
  num_decoder_layers: int = 6
  num_heads: int = 8
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  dropout_rate: float = 0.1
  layer_norm_eps: float = 1e-6
  feed_forward_proj: str = "relu"        # v1.0 'relu'; v1.1 'gated-gelu'
  tie_word_embeddings: bool = True       # v1.0: tied output with the hidden_size**-0.5 rescale
  initializer_factor: float = 1.0
  pad_token_id: int = 0
  eos_token_id: int = 1
  decoder_start_token_id: int = 0
  dtype: str = "float32"
  scan_layers: bool = False
  remat_policy: str = "none"
  fused_ops: bool = True


def layer_kwargs(cfg: T5Config, decoder: bool) -> Dict[str, Any]:
  """TransformerLayer fields of a T5 encoder / decoder layer."""
  act, gated = FEED_FORWARD[cfg.feed_forward_proj]
  return dict(
      num_heads=cfg.num_heads, head_dim=cfg.head_dim, intermediate_size=cfg.intermediate_size,
      hidden_act=act, mlp_gated=gated, norm_position="pre", norm_type="rmsnorm",
      norm_eps=cfg.layer_norm_eps, causal=decoder, cross_attention=decoder, use_bias=False,
      attention_scale=1.0, hidden_dropout_rate=cfg.dropout_rate,
      attention_dropout_rate=cfg.dropout_rate,
      initializer_range=cfg.initializer_factor * cfg.hidden_size ** -0.5,
      dtype=cfg.dtype, fused_ops=cfg.fused_ops)


def _mask_bias(mask: Optional[jax.Array], segments: Optional[jax.Array],
               q_segments: Optional[jax.Array] = None) -> Optional[jax.Array]:
  """Padding mask [B, K] and/or key segment ids [B, K] (with query segment ids [B, Q];
  default the keys') -> additive bias [B, 1, Q or 1, K]."""
  seg = None
  if segments is not None:
    seg = attention.segment_mask_bias(segments if q_segments is None else q_segments, segments)
  return attention.combine_biases(attention.padding_mask_bias(mask), seg)


class T5Stack(nn.Module):
  """Embedded tokens -> dropout -> layers (with the stack's relative position bias) ->
  final RMS norm -> dropout. decoder=True: causal self-attention + cross-attention."""
  config: T5Config
  decoder: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, bias: Optional[jax.Array] = None,
               encoder_outputs: Optional[jax.Array] = None,
               cross_bias: Optional[jax.Array] = None, deterministic: bool = True,
               decode: bool = False) -> jax.Array:
    """x [B, L, H] embedded tokens; bias: masks [B, 1, L|1, L]; -> [B, L, H] float32."""
    cfg = self.config
    length = x.shape[1]
    relpos = RelativePositionBias(
        cfg.num_heads, cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance,
        bidirectional=not self.decoder, stddev=cfg.initializer_factor * cfg.hidden_size ** -0.5,
        name="relative_attention_bias")
    if decode:
      # The cache's length is the length of the input that created it (init).
      ready = self.has_variable("cache", "position")
      positions = self.variable("cache", "key_positions", jnp.arange, length, dtype=jnp.int32)
      index = self.variable("cache", "position", lambda: jnp.array(0, jnp.int32))
      if ready:
        position_bias = relpos(length, positions.value.shape[0], index.value)
        index.value = index.value + length
      else:
        position_bias = relpos(length, length)
    else:
      position_bias = relpos(length, length)                       # [1, heads, L, L]
    bias = attention.combine_biases(position_bias, bias)
    x = common.Dropout(cfg.dropout_rate)(x.astype(jnp.float32), deterministic=deterministic)
    kwargs = layer_kwargs(cfg, self.decoder)
    num = cfg.num_decoder_layers if self.decoder else cfg.num_layers
    if self.decoder:
      x = stack_layers(TransformerLayer, kwargs, num, x, bias, encoder_outputs, cross_bias,
                       deterministic=deterministic, decode=decode, scan=cfg.scan_layers,
                       remat=cfg.remat_policy)
    else:
      x = stack_layers(TransformerLayer, kwargs, num, x, bias, deterministic=deterministic,
                       scan=cfg.scan_layers, remat=cfg.remat_policy)
    x = RMSNorm(cfg.layer_norm_eps, name="final_layer_norm")(x)
    x = common.Dropout(cfg.dropout_rate)(x, deterministic=deterministic)
    return common.constrain(x, common.BATCH_LENGTH_EMBED)


class T5ForConditionalGeneration(nn.Module):
  """Shared embedding, encoder, decoder, output layer (tied + rescaled, or lm_head)."""
  config: T5Config

  def setup(self):
    cfg = self.config
    if cfg.feed_forward_proj not in FEED_FORWARD:
      raise ValueError(f"T5Config.feed_forward_proj={cfg.feed_forward_proj!r}: unknown; "
                       f"choose one of {sorted(FEED_FORWARD)}")
    dtype = common.get_dtype(cfg.dtype)
    self.shared = Embed(cfg.vocab_size, cfg.hidden_size, ("vocab", "embed"),
                        stddev=cfg.initializer_factor, dtype=dtype)
    self.encoder = T5Stack(cfg, decoder=False)
    self.decoder = T5Stack(cfg, decoder=True)
    if not cfg.tie_word_embeddings:
      self.lm_head = dense(cfg.vocab_size, ("embed", "vocab"),
                           cfg.initializer_factor * cfg.hidden_size ** -0.5, dtype, "lm_head",
                           use_bias=False, fused_ops=cfg.fused_ops)

  def encode(self, input_ids: jax.Array, attention_mask: Optional[jax.Array] = None,
             encoder_segment_ids: Optional[jax.Array] = None,
             deterministic: bool = True) -> jax.Array:
    """input_ids [B, S] -> encoder outputs [B, S, H] float32."""
    bias = _mask_bias(attention_mask, encoder_segment_ids)
    return self.encoder(self.shared(input_ids), bias, deterministic=deterministic)

  def decode(self, decoder_input_ids: jax.Array, encoder_outputs: jax.Array,
             attention_mask: Optional[jax.Array] = None,
             decoder_attention_mask: Optional[jax.Array] = None,
             encoder_segment_ids: Optional[jax.Array] = None,
             decoder_segment_ids: Optional[jax.Array] = None,
             deterministic: bool = True, decode: bool = False) -> jax.Array:
    """decoder_input_ids [B, T] (shifted right, starting with decoder_start_token_id),
    encoder_outputs [B, S, H], attention_mask [B, S] of the encoder input -> logits
    [B, T, V] float32. decode=True: one incremental step through the cache (no masks
    for the decoder's own keys beyond causality)."""
    cfg = self.config
    self_bias = None
    if not decode:
      self_bias = _mask_bias(decoder_attention_mask, decoder_segment_ids)
    cross_bias = _mask_bias(attention_mask, encoder_segment_ids, decoder_segment_ids)
    x = self.decoder(self.shared(decoder_input_ids), self_bias, encoder_outputs, cross_bias,
                     deterministic=deterministic, decode=decode)
    if cfg.tie_word_embeddings:
      logits = self.shared.attend(x * cfg.hidden_size ** -0.5)
    else:
      logits = self.lm_head(x)
    return logits.astype(jnp.float32)

  def __call__(self, input_ids: jax.Array, attention_mask: Optional[jax.Array] = None,
               decoder_input_ids: Optional[jax.Array] = None,
               decoder_attention_mask: Optional[jax.Array] = None,
               encoder_segment_ids: Optional[jax.Array] = None,
               decoder_segment_ids: Optional[jax.Array] = None,
               deterministic: bool = True) -> Dict[str, jax.Array]:
    if decoder_input_ids is None:
      raise ValueError("T5ForConditionalGeneration needs decoder_input_ids (the targets "
                       "shifted right, see shift_right)")
    enc = self.encode(input_ids, attention_mask, encoder_segment_ids, deterministic)
    logits = self.decode(decoder_input_ids, enc, attention_mask, decoder_attention_mask,
                         encoder_segment_ids, decoder_segment_ids, deterministic)
    return {"logits": logits, "encoder_last_hidden_state": enc}


def shift_right(targets: jax.Array, start_id: int = 0) -> jax.Array:
  """targets [B, T] -> decoder inputs [B, T]: start_id then targets[:, :-1]."""
  start = jnp.full(targets.shape[:-1] + (1,), start_id, targets.dtype)
  return jnp.concatenate([start, targets[..., :-1]], axis=-1)

