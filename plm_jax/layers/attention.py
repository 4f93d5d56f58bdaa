"""Multi-head dot-product attention: additive float32 biases, optional projection
biases, configurable scale, causal masking, cross-attention, a decoding cache.

Masks and position biases are additive float32 arrays broadcastable to
[batch, heads, q_len, kv_len], built with the helpers below and summed with
`combine_biases`; 0 keeps a key, MASK_VALUE hides it.
"""
from typing import Any, Callable, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from plm_jax.layers import common, fused

# Added to the logits of masked keys (float32); large but finite so that a row
# with every key masked gives a uniform (not NaN) distribution.
MASK_VALUE = -1e9


def _bias_from_keep(keep: jax.Array) -> jax.Array:
  return jnp.where(keep, 0.0, MASK_VALUE).astype(jnp.float32)


def padding_mask_bias(attention_mask: Optional[jax.Array]) -> Optional[jax.Array]:
  """attention_mask [batch, length] (1 = keep, 0 = pad) -> bias [batch, 1, 1, length] float32."""
  if attention_mask is None:
    return None
  return _bias_from_keep(attention_mask.astype(jnp.bool_))[:, None, None, :]


def causal_mask_bias(q_len: int, kv_len: Optional[int] = None, offset=0) -> jax.Array:
  """Bias [1, 1, q_len, kv_len] float32 letting query i see keys j <= offset + i.

  kv_len defaults to q_len. offset (an int or a traced int32 scalar) is the
  position of the first query, e.g. the cache index when decoding.
  """
  kv_len = q_len if kv_len is None else kv_len
  q_pos = offset + jnp.arange(q_len, dtype=jnp.int32)[:, None]
  k_pos = jnp.arange(kv_len, dtype=jnp.int32)[None, :]
  return _bias_from_keep(k_pos <= q_pos)[None, None]


def segment_mask_bias(q_segment_ids: jax.Array,
                      kv_segment_ids: Optional[jax.Array] = None) -> jax.Array:
  """Packed sequences: segment ids [batch, q_len] and [batch, kv_len] (default: the same)
  -> bias [batch, 1, q_len, kv_len] float32 that hides keys of another segment.

  Padding (often segment 0) is not special here; add padding_mask_bias for it.
  """
  if kv_segment_ids is None:
    kv_segment_ids = q_segment_ids
  same = q_segment_ids[:, :, None] == kv_segment_ids[:, None, :]
  return _bias_from_keep(same)[:, None]


def combine_biases(*biases: Optional[jax.Array]) -> Optional[jax.Array]:
  """Sum of the given float32 biases (broadcasting), skipping None; None if all are None."""
  present = [b for b in biases if b is not None]
  if not present:
    return None
  out = present[0].astype(jnp.float32)
  for b in present[1:]:
    out = out + b.astype(jnp.float32)
  return out


class Projection(nn.Module):
  """Linear map with a kernel stored at its full (multi-axis) logical shape.

  kernel: `kernel_shape` with logical names `kernel_axes`; bias (when
  use_bias): the trailing len(bias_axes) dims of kernel_shape with names
  `bias_axes` (zeros). Both are float32 params; the product is
  `jnp.einsum(equation, x, kernel)` in `dtype`.
  Unlike nn.DenseGeneral (which initialises a flattened 2-D kernel and reshapes
  it) the initializer sees the real shape, so the logical names apply under an
  active mesh. For an elementwise initializer such as truncated normal the
  values equal DenseGeneral's (same rng, same number of draws, row-major).
  """
  kernel_shape: Tuple[int, ...]
  kernel_axes: Tuple[str, ...]
  bias_axes: Tuple[str, ...]
  equation: str
  kernel_init: Callable = nn.initializers.lecun_normal()
  dtype: Any = jnp.float32
  use_bias: bool = True
  fused_ops: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", common.partitioned(self.kernel_init, self.kernel_axes),
                        tuple(self.kernel_shape), jnp.float32)
    x = x.astype(self.dtype)
    kernel = kernel.astype(self.dtype)
    if self.equation == "...e,ehd->...hd":
      # One 2-D GEMM over a flattened [embed, heads*kv] kernel: XLA CPU runs the
      # two-output-dim einsum (and its two-contracting-dim transpose in the
      # backward pass) markedly slower than the plain matmul.
      e, h, d = kernel.shape
      y = (x @ kernel.reshape(e, h * d)).reshape(x.shape[:-1] + (h, d))
    elif self.equation == "...hd,hde->...e":
      h, d, e = kernel.shape
      y = x.reshape(x.shape[:-2] + (h * d,)) @ kernel.reshape(h * d, e)
    else:
      y = jnp.einsum(self.equation, x, kernel)
    if self.use_bias:
      bias = self.param("bias", common.partitioned(nn.initializers.zeros, self.bias_axes),
                        tuple(self.kernel_shape[-len(self.bias_axes):]), jnp.float32)
      y = y + bias.astype(self.dtype)
    return fused.ops(self.fused_ops).grad_barrier(y)


class MultiHeadAttention(nn.Module):
  """Self/cross attention. q/k/v kernels [embed, heads, kv], output kernel [heads, kv, embed].

  Params: query, key, value, out, each {kernel, bias} (no bias when use_bias=False).

  Attributes:
    num_heads: number of heads; head_dim = features // num_heads unless head_dim is set.
    head_dim: optional explicit per-head width.
    dropout_rate: dropout on the attention probabilities.
    initializer_range: std of the truncated-normal kernel initializer.
    use_bias: biases on the q/k/v/out projections (BERT, GPT) or none (T5).
    scale: multiplies the queries; None = head_dim ** -0.5, T5 uses 1.0.
    causal: self-attention where query i sees keys j <= i only.
    dtype: compute dtype (logits/softmax always float32).
    fused_ops: custom-VJP softmax and gradient barriers (layers/fused.py) or plain jax.

  Decoding (decode=True, self-attention only): the 'cache' collection holds
  cached_key / cached_value [batch, heads, max_len, kv] and cache_index. The
  first call (model.init with a full-length dummy input) creates them at that
  length; later calls (apply with mutable=['cache']) write the step's k/v at
  cache_index, advance it, and attend to the filled slots causally.
  """
  num_heads: int
  head_dim: Optional[int] = None
  dropout_rate: float = 0.0
  initializer_range: float = 0.02
  use_bias: bool = True
  scale: Optional[float] = None
  causal: bool = False
  dtype: Any = jnp.float32
  fused_ops: bool = True

  @nn.compact
  def __call__(self, inputs_q: jax.Array, inputs_kv: Optional[jax.Array] = None,
               bias: Optional[jax.Array] = None, deterministic: bool = True,
               decode: bool = False) -> jax.Array:
    """inputs_q [batch, q_len, embed], inputs_kv [batch, kv_len, kv_embed] (default: inputs_q),
    bias broadcastable to [batch, heads, q_len, kv_len] (float32, added to logits;
    kv_len = the cache length when decoding) -> [batch, q_len, embed]."""
    if decode and inputs_kv is not None:
      raise ValueError("MultiHeadAttention: decode=True is for self-attention (no inputs_kv)")
    if inputs_kv is None:
      inputs_kv = inputs_q
    features = inputs_q.shape[-1]
    if self.head_dim is None and features % self.num_heads:
      raise ValueError(f"hidden size {features} is not divisible by num_heads {self.num_heads}")
    head_dim = self.head_dim or features // self.num_heads
    init = common.kernel_init(self.initializer_range)
    ops = fused.ops(self.fused_ops)

    def projection(name, in_features):  # [..., in_features] -> [..., heads, kv]
      return Projection(
          kernel_shape=(in_features, self.num_heads, head_dim),
          kernel_axes=("embed", "heads", "kv"), bias_axes=("heads", "kv"),
          equation="...e,ehd->...hd", kernel_init=init, dtype=self.dtype,
          use_bias=self.use_bias, fused_ops=self.fused_ops, name=name)

    query = projection("query", features)(inputs_q)              # [batch, q_len, heads, kv]
    key = projection("key", inputs_kv.shape[-1])(inputs_kv)      # [batch, kv_len, heads, kv]
    value = projection("value", inputs_kv.shape[-1])(inputs_kv)  # [batch, kv_len, heads, kv]
    query = common.constrain(query, common.BATCH_LENGTH_HEADS_KV)
    key = common.constrain(key, common.BATCH_LENGTH_HEADS_KV)
    value = common.constrain(value, common.BATCH_LENGTH_HEADS_KV)

    scale = head_dim ** -0.5 if self.scale is None else self.scale
    if scale != 1.0:
      query = query * jnp.asarray(scale, self.dtype)
    # Scores and context as head-major batched matmuls ([batch, heads, len, kv]):
    # XLA CPU runs these (and their gradients) faster than the 'bqhd,bkhd->bhqk'
    # form, which strides over the heads axis inside each GEMM.
    query = jnp.swapaxes(query, -3, -2)  # [batch, heads, q_len, kv]
    key = jnp.swapaxes(key, -3, -2)      # [batch, heads, kv_len, kv]
    value = jnp.swapaxes(value, -3, -2)  # [batch, heads, kv_len, kv]
    if decode:
      key, value, bias = self._use_cache(key, value, bias)
    elif self.causal:
      bias = combine_biases(bias, causal_mask_bias(query.shape[-2], key.shape[-2]))
    logits = jnp.einsum("bhqd,bhkd->bhqk", query, key,
                        preferred_element_type=jnp.float32)  # [batch, heads, q_len, kv_len]
    logits = logits.astype(jnp.float32)
    if bias is not None:
      logits = logits + bias.astype(jnp.float32)
    probs = ops.softmax(logits)
    probs = common.Dropout(self.dropout_rate)(probs, deterministic=deterministic)
    out = jnp.einsum("bhqk,bhkd->bhqd", probs.astype(self.dtype), value)  # [batch, heads, q_len, kv]
    out = jnp.swapaxes(out, -3, -2)  # [batch, q_len, heads, kv]
    out = common.constrain(out, common.BATCH_LENGTH_HEADS_KV)
    out = Projection(
        kernel_shape=(self.num_heads, head_dim, features),
        kernel_axes=("heads", "kv", "embed"), bias_axes=("embed",),
        equation="...hd,hde->...e", kernel_init=init, dtype=self.dtype,
        use_bias=self.use_bias, fused_ops=self.fused_ops, name="out")(out)  # [batch, q_len, embed]
    return common.constrain(out, common.BATCH_LENGTH_EMBED)

  def _use_cache(self, key, value, bias):
    """key/value [batch, heads, step, kv] -> the cache's [batch, heads, max_len, kv] and the
    bias with the not-yet-visible slots masked (causal from cache_index)."""
    initialized = self.has_variable("cache", "cached_key")
    cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
    cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
    cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
    step = key.shape[-2]
    if not initialized:  # creating the cache (init): a plain causal pass over the dummy input
      return key, value, combine_biases(bias, causal_mask_bias(step, step))
    max_len = cached_key.value.shape[-2]
    index = cache_index.value
    key = jax.lax.dynamic_update_slice(cached_key.value, key.astype(cached_key.value.dtype),
                                       (0, 0, index, 0))
    value = jax.lax.dynamic_update_slice(cached_value.value, value.astype(cached_value.value.dtype),
                                         (0, 0, index, 0))
    cached_key.value, cached_value.value = key, value
    cache_index.value = index + step
    return key, value, combine_biases(bias, causal_mask_bias(step, max_len, offset=index))
