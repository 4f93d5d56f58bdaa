"""Small shared pieces: dtypes, initializers, activations, float32 LayerNorm.

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


@jax.custom_vjp
def gelu_exact(x: jax.Array) -> jax.Array:
  """GELU with the exact normal CDF, x * (1 + erf(x / sqrt(2))) / 2 (BERT's and torch's form).

  Same function as jax.nn.gelu(approximate=False), which goes through erfc; XLA
  CPU evaluates erf (a rational approximation) several times faster. The
  backward pass, g * (cdf(x) + x * pdf(x)), is recomputed from the saved input
  in one fused loop instead of storing erf and exp intermediates.
  """
  return _gelu_value(x)


_SQRT_HALF = 0.7071067811865476       # 1 / sqrt(2)
_INV_SQRT_2PI = 0.3989422804014327    # 1 / sqrt(2 pi)


def _normal_cdf(x):
  return 0.5 * (1.0 + jax.lax.erf(x * jnp.asarray(_SQRT_HALF, x.dtype)))


def _gelu_value(x):
  return x * _normal_cdf(x)


def _gelu_fwd(x):
  return _gelu_value(x), x


def _gelu_bwd(x, g):
  # The barrier stops XLA from sharing erf(x) between the two passes (CSE),
  # which would store it as an extra activation-sized buffer.
  x = jax.lax.optimization_barrier(x)
  pdf = jnp.exp(-0.5 * x * x) * jnp.asarray(_INV_SQRT_2PI, x.dtype)
  return (g * (_normal_cdf(x) + x * pdf),)


gelu_exact.defvjp(_gelu_fwd, _gelu_bwd)


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
  """'gelu' (exact erf), 'gelu_tanh' (tanh approximation) or 'relu'."""
  if name == "gelu":
    return gelu_exact
  if name == "gelu_tanh":
    return lambda x: jax.nn.gelu(x, approximate=True)
  if name == "relu":
    return jax.nn.relu
  raise ValueError(f"unknown hidden_act {name!r}; choose one of ['gelu', 'gelu_tanh', 'relu']")


@jax.custom_vjp
def grad_barrier(x: jax.Array) -> jax.Array:
  """Identity whose cotangent is materialised (lax.optimization_barrier) before use.

  Put on the output of a dense layer: its backward reads the incoming gradient
  twice (dx = dy W^T and dW = x^T dy, the latter through a transposed copy on
  CPU). Without the barrier XLA fuses the elementwise producer of dy (dropout,
  LayerNorm and GELU backward) into that transposed copy, which then walks
  every input in strided order; with it, dy is computed once and the transpose
  is a plain copy.
  """
  return x


def _grad_barrier_fwd(x):
  return x, None


def _grad_barrier_bwd(_, g):
  return (jax.lax.optimization_barrier(g),)


grad_barrier.defvjp(_grad_barrier_fwd, _grad_barrier_bwd)


@jax.custom_vjp
def matmul_transposed_input_grad(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """x [..., in] @ kernel [in, out], whose kernel gradient reads a materialised x^T.

  For a widening layer (in < out, e.g. BERT's MLP input) the weight gradient
  x^T @ dy otherwise makes XLA CPU transpose dy, the larger operand; with x^T
  copied explicitly it is a plain [in, tokens] @ [tokens, out] GEMM.
  """
  return jnp.matmul(x, kernel)


def _mtig_fwd(x, kernel):
  return jnp.matmul(x, kernel), (x, kernel)


def _mtig_bwd(res, g):
  x, kernel = res
  x2 = x.reshape(-1, x.shape[-1])
  g2 = g.reshape(-1, g.shape[-1])
  x_t = jax.lax.optimization_barrier(x2.T)  # [in, tokens], materialised
  dx = jnp.matmul(g, kernel.T)
  return dx, jnp.matmul(x_t, g2).astype(kernel.dtype)


matmul_transposed_input_grad.defvjp(_mtig_fwd, _mtig_bwd)


def dense_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
  """lax.dot_general for nn.Dense (x [..., in] . kernel [in, out]) via matmul_transposed_input_grad."""
  (lc, rc), (lb, rb) = dimension_numbers
  if tuple(lc) != (lhs.ndim - 1,) or tuple(rc) != (0,) or lb or rb or rhs.ndim != 2:
    return jax.lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                               preferred_element_type=preferred_element_type)
  out = matmul_transposed_input_grad(lhs, rhs)
  return out if preferred_element_type is None else out.astype(preferred_element_type)


@jax.custom_vjp
def softmax(x: jax.Array) -> jax.Array:
  """Softmax over the last axis with the textbook gradient p * (g - sum(g * p)).

  Autodiff of exp / sum differentiates through the division (a 1/sum**2 term
  and materialised broadcasts on XLA CPU); this keeps only p for the backward
  pass and reads it once there.
  """
  return _softmax_value(x)


def _softmax_value(x):
  e = jnp.exp(x - jax.lax.stop_gradient(jnp.max(x, axis=-1, keepdims=True)))
  return e / jnp.sum(e, axis=-1, keepdims=True)


def _softmax_fwd(x):
  p = _softmax_value(x)
  return p, p


def _softmax_bwd(p, g):
  return (p * (g - jnp.sum(g * p, axis=-1, keepdims=True)),)


softmax.defvjp(_softmax_fwd, _softmax_bwd)


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
    return layer_norm(x.astype(jnp.float32), scale, bias, self.epsilon)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float) -> jax.Array:
  """(x - mean) / sqrt(var + epsilon) * scale + bias over the last axis (two-pass variance).

  The backward pass recomputes the normalised input from x and the per-row
  mean and 1/std inside its fused loops; plain autodiff would store the
  centred and the normalised input as two extra activation-sized buffers.
  """
  return _layer_norm_fwd(x, scale, bias, epsilon)[0]


def _layer_norm_fwd(x, scale, bias, epsilon):
  mean = jnp.mean(x, axis=-1, keepdims=True)
  rstd = jax.lax.rsqrt(jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True) + epsilon)
  return (x - mean) * rstd * scale + bias, (x, mean, rstd, scale)


def _layer_norm_bwd(epsilon, res, g):
  del epsilon
  # The barrier keeps XLA from sharing the forward's (x - mean) * rstd with
  # this pass, which would store it as an activation-sized buffer again.
  x, mean, rstd, scale = jax.lax.optimization_barrier(res)
  xhat = (x - mean) * rstd
  gs = g * scale
  rows = tuple(range(x.ndim - 1))
  dx = rstd * (gs - jnp.mean(gs, axis=-1, keepdims=True)
               - xhat * jnp.mean(gs * xhat, axis=-1, keepdims=True))
  return dx, jnp.sum(g * xhat, axis=rows), jnp.sum(g, axis=rows)


layer_norm.defvjp(_layer_norm_fwd, _layer_norm_bwd)


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
