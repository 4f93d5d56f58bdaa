"""LayerNorm and RMSNorm over the last axis, computed and returned in float32.

Params are float32 [features] vectors with logical axis `axis_name`:
  LayerNorm: scale (ones), bias (zeros; absent when use_bias=False).
  RMSNorm:   scale (ones) only (T5's "T5LayerNorm").
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from plm_jax.layers import common, fused

NORM_TYPES = ("layernorm", "rmsnorm")


class LayerNorm(nn.Module):
  """(x - mean) / sqrt(var + epsilon) * scale (+ bias); float32 in and out.

  fused_ops: the custom-VJP implementation (fused.layer_norm) or the plain
  formula under autodiff; same values.
  """
  epsilon: float = 1e-12
  axis_name: str = "embed"
  use_bias: bool = True
  fused_ops: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    features = x.shape[-1]
    scale = self.param("scale", common.partitioned(nn.initializers.ones, (self.axis_name,)),
                       (features,), jnp.float32)
    if self.use_bias:
      bias = self.param("bias", common.partitioned(nn.initializers.zeros, (self.axis_name,)),
                        (features,), jnp.float32)
    else:
      bias = jnp.zeros((features,), jnp.float32)
    return fused.ops(self.fused_ops).layer_norm(x.astype(jnp.float32), scale, bias, self.epsilon)


def rms_norm(x: jax.Array, scale: jax.Array, epsilon: float) -> jax.Array:
  """x * rsqrt(mean(x^2) + epsilon) * scale over the last axis (no centring, no bias)."""
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + epsilon) * scale


class RMSNorm(nn.Module):
  """Root-mean-square norm (T5): x * rsqrt(mean(x^2) + epsilon) * scale; float32 in and out."""
  epsilon: float = 1e-6
  axis_name: str = "embed"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = self.param("scale", common.partitioned(nn.initializers.ones, (self.axis_name,)),
                       (x.shape[-1],), jnp.float32)
    return rms_norm(x.astype(jnp.float32), scale, self.epsilon)


def make_norm(norm_type: str, epsilon: float, name: str, use_bias: bool = True,
              fused_ops: bool = True) -> nn.Module:
  """'layernorm' | 'rmsnorm' -> the norm module (use_bias applies to LayerNorm only)."""
  if norm_type == "layernorm":
    return LayerNorm(epsilon, use_bias=use_bias, fused_ops=fused_ops, name=name)
  if norm_type == "rmsnorm":
    return RMSNorm(epsilon, name=name)
  raise ValueError(f"unknown norm_type {norm_type!r}; choose one of {list(NORM_TYPES)}")
