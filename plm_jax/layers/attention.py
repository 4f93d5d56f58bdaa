"""Multi-head dot-product attention with additive mask bias and float32 softmax."""
from typing import Any, Callable, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from plm_jax.layers import common

# Added to the logits of masked keys (float32); large but finite so that a row
# with every key masked gives a uniform (not NaN) distribution.
MASK_VALUE = -1e9


def padding_mask_bias(attention_mask: Optional[jax.Array]) -> Optional[jax.Array]:
  """attention_mask [batch, length] (1 = keep, 0 = pad) -> bias [batch, 1, 1, length] float32."""
  if attention_mask is None:
    return None
  keep = attention_mask.astype(jnp.bool_)
  return jnp.where(keep, 0.0, MASK_VALUE).astype(jnp.float32)[:, None, None, :]


class Projection(nn.Module):
  """Linear map with a kernel stored at its full (multi-axis) logical shape.

  kernel: `kernel_shape` with logical names `kernel_axes`; bias: the trailing
  len(bias_axes) dims of kernel_shape with names `bias_axes` (zeros). Both are
  float32 params; the product is `jnp.einsum(equation, x, kernel)` in `dtype`.
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

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param("kernel", common.partitioned(self.kernel_init, self.kernel_axes),
                        tuple(self.kernel_shape), jnp.float32)
    bias = self.param("bias", common.partitioned(nn.initializers.zeros, self.bias_axes),
                      tuple(self.kernel_shape[-len(self.bias_axes):]), jnp.float32)
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
    return common.grad_barrier(y + bias.astype(self.dtype))


class MultiHeadAttention(nn.Module):
  """Self/cross attention. q/k/v kernels [embed, heads, kv], output kernel [heads, kv, embed].

  Attributes:
    num_heads: number of heads; head_dim = features // num_heads unless head_dim is set.
    head_dim: optional explicit per-head width.
    dropout_rate: dropout on the attention probabilities.
    initializer_range: std of the truncated-normal kernel initializer.
    dtype: compute dtype (logits/softmax always float32).
  """
  num_heads: int
  head_dim: Optional[int] = None
  dropout_rate: float = 0.0
  initializer_range: float = 0.02
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs_q: jax.Array, inputs_kv: Optional[jax.Array] = None,
               bias: Optional[jax.Array] = None, deterministic: bool = True) -> jax.Array:
    """inputs_q [batch, q_len, embed], inputs_kv [batch, kv_len, embed] (default: inputs_q),
    bias broadcastable to [batch, heads, q_len, kv_len] (float32, added to logits)."""
    if inputs_kv is None:
      inputs_kv = inputs_q
    features = inputs_q.shape[-1]
    if self.head_dim is None and features % self.num_heads:
      raise ValueError(f"hidden size {features} is not divisible by num_heads {self.num_heads}")
    head_dim = self.head_dim or features // self.num_heads
    init = common.kernel_init(self.initializer_range)

    def projection(name):  # [..., embed] -> [..., heads, kv]
      return Projection(
          kernel_shape=(features, self.num_heads, head_dim),
          kernel_axes=("embed", "heads", "kv"), bias_axes=("heads", "kv"),
          equation="...e,ehd->...hd", kernel_init=init, dtype=self.dtype, name=name)

    query = projection("query")(inputs_q)   # [batch, q_len, heads, kv]
    key = projection("key")(inputs_kv)      # [batch, kv_len, heads, kv]
    value = projection("value")(inputs_kv)  # [batch, kv_len, heads, kv]
    query = common.constrain(query, common.BATCH_LENGTH_HEADS_KV)
    key = common.constrain(key, common.BATCH_LENGTH_HEADS_KV)
    value = common.constrain(value, common.BATCH_LENGTH_HEADS_KV)

    query = query * jnp.asarray(head_dim ** -0.5, self.dtype)
    # Scores and context as head-major batched matmuls ([batch, heads, len, kv]):
    # XLA CPU runs these (and their gradients) faster than the 'bqhd,bkhd->bhqk'
    # form, which strides over the heads axis inside each GEMM.
    query = jnp.swapaxes(query, -3, -2)  # [batch, heads, q_len, kv]
    key = jnp.swapaxes(key, -3, -2)      # [batch, heads, kv_len, kv]
    value = jnp.swapaxes(value, -3, -2)  # [batch, heads, kv_len, kv]
    logits = jnp.einsum("bhqd,bhkd->bhqk", query, key,
                        preferred_element_type=jnp.float32)  # [batch, heads, q_len, kv_len]
    logits = logits.astype(jnp.float32)
    if bias is not None:
      logits = logits + bias.astype(jnp.float32)
    probs = common.softmax(logits)
    probs = common.Dropout(self.dropout_rate)(probs, deterministic=deterministic)
    out = jnp.einsum("bhqk,bhkd->bhqd", probs.astype(self.dtype), value)  # [batch, heads, q_len, kv]
    out = jnp.swapaxes(out, -3, -2)  # [batch, q_len, heads, kv]
    out = common.constrain(out, common.BATCH_LENGTH_HEADS_KV)
    out = Projection(
        kernel_shape=(self.num_heads, head_dim, features),
        kernel_axes=("heads", "kv", "embed"), bias_axes=("embed",),
        equation="...hd,hde->...e", kernel_init=init, dtype=self.dtype,
        name="out")(out)  # [batch, q_len, embed]
    return common.constrain(out, common.BATCH_LENGTH_EMBED)
