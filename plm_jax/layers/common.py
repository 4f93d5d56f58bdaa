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


def dropout(key: jax.Array, x: jax.Array, rate: float) -> jax.Array:
  """Inverted dropout drawing 16 random bits per element (two per uint32 from the PRNG).

  An element is kept when its 16-bit draw is >= round(rate * 2**16); kept values
  are scaled by 2**16 / (2**16 - threshold), the exact inverse of the realised
  keep probability, so E[output] = x. The drop probability differs from `rate`
  by at most 2**-17. Half the PRNG work of jax.random.bernoulli's float path,
  which dominates dropout's cost on CPU.
  """
  threshold = int(round(rate * 65536))
  if threshold <= 0:
    return x
  if threshold >= 65536:
    return jnp.zeros_like(x)
  n = x.size
  bits = jax.random.bits(key, ((n + 1) // 2,), jnp.uint32)
  halves = jnp.stack([bits & jnp.uint32(0xFFFF), bits >> jnp.uint32(16)], axis=-1)
  keep = (halves.reshape(-1)[:n] >= jnp.uint32(threshold)).reshape(x.shape)
  scale = jnp.asarray(65536.0 / (65536 - threshold), x.dtype)
  return jnp.where(keep, x * scale, jnp.zeros((), x.dtype))


class Dropout(nn.Module):
  """Dropout with the 'dropout' rng collection (see `dropout`); identity when deterministic."""
  rate: float
  rng_collection: str = "dropout"

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
    if deterministic or self.rate == 0.0:
      return x
    return dropout(self.make_rng(self.rng_collection), x, self.rate)
