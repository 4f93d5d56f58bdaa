"""Small shared pieces: dtypes, initializers, activations, float32 LayerNorm.

Every parameter created through these helpers carries logical axis names
(`nn.with_logical_partitioning`); the trainer maps them to mesh axes.
Logical names used across plm_jax: 'vocab', 'embed', 'heads', 'kv' (head_dim),
'mlp', 'position', 'type_vocab', 'layers' (scan axis); activations use
'activation_batch', 'activation_length', 'activation_embed', 'activation_mlp',
'activation_heads', 'activation_kv'.
"""
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# Logical names of the common activation layouts.
BATCH_LENGTH_EMBED = ("activation_batch", "activation_length", "activation_embed")
BATCH_LENGTH_MLP = ("activation_batch", "activation_length", "activation_mlp")
BATCH_LENGTH_HEADS_KV = ("activation_batch", "activation_length", "activation_heads", "activation_kv")

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def get_dtype(name) -> jnp.dtype:
  """'float32' | 'bfloat16' (or a dtype) -> jnp dtype."""
  if not isinstance(name, str):
    return jnp.dtype(name)
  if name not in _DTYPES:
    raise ValueError(f"unknown dtype {name!r}; choose one of {sorted(_DTYPES)}")
  return _DTYPES[name]


def kernel_init(stddev: float) -> Callable:
  """BERT's weight initializer: truncated normal (at 2 std) with this std."""
  return nn.initializers.truncated_normal(stddev=stddev)


def partitioned(init: Callable, names: Sequence) -> Callable:
  """An initializer whose value is boxed with logical axis names."""
  return nn.with_logical_partitioning(init, tuple(names))


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
  """'gelu' (exact erf), 'gelu_tanh' (tanh approximation) or 'relu'."""
  if name == "gelu":
    return lambda x: jax.nn.gelu(x, approximate=False)
  if name == "gelu_tanh":
    return lambda x: jax.nn.gelu(x, approximate=True)
  if name == "relu":
    return jax.nn.relu
  raise ValueError(f"unknown hidden_act {name!r}; choose one of ['gelu', 'gelu_tanh', 'relu']")


def constrain(x: jax.Array, names: Sequence[str]) -> jax.Array:
  """Logical sharding constraint on an activation (no-op without rules/mesh)."""
  return nn.with_logical_constraint(x, tuple(names))


class LayerNorm(nn.Module):
  """LayerNorm over the last axis, computed and returned in float32.

  Params: scale (ones) and bias (zeros), both [features] with logical axis
  `axis_name`.
  """
  epsilon: float = 1e-12
  axis_name: str = "embed"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    features = x.shape[-1]
    scale = self.param("scale", partitioned(nn.initializers.ones, (self.axis_name,)),
                       (features,), jnp.float32)
    bias = self.param("bias", partitioned(nn.initializers.zeros, (self.axis_name,)),
                      (features,), jnp.float32)
    x = x.astype(jnp.float32)
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
    return y * scale + bias
