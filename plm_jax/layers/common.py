"""Small shared pieces: dtypes, initializers, activations, sharding constraints, dropout.

Every parameter created through these helpers carries logical axis names
(`nn.with_logical_partitioning`); the trainer maps them to mesh axes.
Logical names used across plm_jax: 'vocab', 'embed', 'heads', 'kv' (head_dim),
'mlp', 'position', 'type_vocab', 'layers' (scan axis); activations use
'activation_batch', 'activation_length', 'activation_embed', 'activation_mlp',
'activation_heads', 'activation_kv'.
"""
import functools
import math
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from plm_jax.layers import fused

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


_ACTIVATIONS = ("gelu", "gelu_tanh", "relu", "silu")


def activation(name: str, fused_ops: bool = True) -> Callable[[jax.Array], jax.Array]:
  """'gelu' (exact erf), 'gelu_tanh' (tanh approximation; HF 'gelu_new'), 'relu' or 'silu'.

  fused_ops selects the exact GELU's implementation (fused.ops); same values.
  """
  if name == "gelu":
    return fused.ops(fused_ops).gelu
  if name == "gelu_tanh":
    return lambda x: jax.nn.gelu(x, approximate=True)
  if name == "relu":
    return jax.nn.relu
  if name == "silu":
    return jax.nn.silu
  raise ValueError(f"unknown hidden_act {name!r}; choose one of {list(_ACTIVATIONS)}")


def constrain(x: jax.Array, names: Sequence[str]) -> jax.Array:
  """Logical sharding constraint on an activation (no-op without rules/mesh)."""
  return nn.with_logical_constraint(x, tuple(names))


_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def threefry2x32(k0: jax.Array, k1: jax.Array, x0: jax.Array, x1: jax.Array):
  """The Threefry-2x32 block cipher (20 rounds; Salmon et al. 2011), unrolled.

  k0, k1: uint32 key words; x0, x1: uint32 counter words (broadcastable).
  Returns the two uint32 output words. Equals jax's threefry_2x32, but written
  as plain elementwise ops with no loop, so XLA fuses it into the consumer:
  random bits cost arithmetic only, no memory traffic. (jax.random lowers the
  hash as a rolled while loop on CPU, which materialises its state 5 times.)
  """
  u32 = lambda v: jnp.asarray(v, jnp.uint32)
  keys = (k0, k1, k0 ^ k1 ^ u32(0x1BD11BDA))
  x0 = x0 + keys[0]
  x1 = x1 + keys[1]
  for i in range(5):
    for r in _THREEFRY_ROTATIONS[i % 2]:
      x0 = x0 + x1
      x1 = (x1 << u32(r)) | (x1 >> u32(32 - r))
      x1 = x1 ^ x0
    x0 = x0 + keys[(i + 1) % 3]
    x1 = x1 + keys[(i + 2) % 3] + u32(i + 1)
  return x0, x1


def _element_counters(shape, limit: int = 2 ** 32):
  """Two uint32 words that number the elements of `shape` uniquely.

  The low word numbers the trailing dims (row-major) and the high word the
  leading ones, split where the trailing block has fewer than `limit` elements
  (a global activation can exceed 2**32 elements on a large mesh).
  """
  shape = tuple(int(d) for d in shape)
  split = 0  # trailing dims shape[split:] are numbered by the low word
  while split < len(shape) and math.prod(shape[split:]) >= limit:
    split += 1
  if math.prod(shape[:split]) >= limit:
    raise ValueError(f"dropout: cannot number the {math.prod(shape)} elements of {shape}")
  low = jax.lax.iota(jnp.uint32, math.prod(shape[split:])).reshape(shape[split:])
  low = jnp.broadcast_to(low, shape)
  if split == 0:
    return low, jnp.zeros((), jnp.uint32)
  high = jax.lax.iota(jnp.uint32, math.prod(shape[:split])).reshape(shape[:split])
  return low, jnp.broadcast_to(high.reshape(shape[:split] + (1,) * (len(shape) - split)), shape)


def _keep_mask(words: jax.Array, shape, threshold: int) -> jax.Array:
  low, high = _element_counters(shape)
  bits, _ = threefry2x32(words[0], words[1], low, high)
  return bits >= jnp.uint32(threshold)


def dropout(key: jax.Array, x: jax.Array, rate: float) -> jax.Array:
  """Inverted dropout whose mask is a counter-based hash of the element index.

  Two uint32 words are drawn from `key` (any jax PRNG implementation); element
  i is kept when threefry2x32(words, (i, 0))[0] >= round(rate * 2**32), and kept
  values are scaled by 2**32 / (2**32 - threshold), the exact inverse of the
  realised keep probability, so E[output] = x. The mask depends only on the
  key and the element's global position (the same on any mesh), is computed
  inside the fused elementwise loop in both passes, and is never stored: the
  backward pass recomputes it from the two key words.
  """
  threshold = int(round(rate * 2 ** 32))
  if threshold <= 0:
    return x
  if threshold >= 2 ** 32:
    return jnp.zeros_like(x)
  words = jax.random.bits(key, (2,), jnp.uint32)
  return _hashed_dropout(x, words, threshold)


def _hashed_dropout_value(x, words, threshold):
  scale = jnp.asarray(2.0 ** 32 / (2 ** 32 - threshold), x.dtype)
  return jnp.where(_keep_mask(words, x.shape, threshold), x * scale, jnp.zeros((), x.dtype))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _hashed_dropout(x, words, threshold):
  return _hashed_dropout_value(x, words, threshold)


def _hashed_dropout_fwd(x, words, threshold):
  return _hashed_dropout_value(x, words, threshold), words


def _hashed_dropout_bwd(threshold, words, g):
  # The barrier keeps XLA from fusing this (and the ops feeding it) into the
  # transposed copy that the preceding dense layer's weight gradient reads.
  return jax.lax.optimization_barrier(_hashed_dropout_value(g, words, threshold)), None


_hashed_dropout.defvjp(_hashed_dropout_fwd, _hashed_dropout_bwd)


class Dropout(nn.Module):
  """Dropout with the 'dropout' rng collection (see `dropout`); identity when deterministic."""
  rate: float
  rng_collection: str = "dropout"

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
    if deterministic or self.rate == 0.0:
      return x
    return dropout(self.make_rng(self.rng_collection), x, self.rate)
