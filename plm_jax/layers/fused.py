"""CPU-specific custom VJPs and gradient barriers, behind one switch.

Everything here computes the same function as a plain jax formulation; what
changes is the backward pass that XLA (CPU) compiles: what it stores between
the passes and which loops it fuses. Layers never call these directly: they
ask `ops(fused_ops)` for an `Ops` bundle, where `fused_ops` is the model
config's switch (`BertConfig.fused_ops`, default True). `ops(False)` gives the
plain jax formulations (jax.nn.softmax, the LayerNorm formula under autodiff,
jax.nn.gelu(approximate=False), no barriers, a plain matmul), so the effect of
each trick can be measured (bench/bench_bert_step.py --fused_ops both) and a
new backend can start from the plain path.

The hashed Threefry dropout (common.dropout) is not here: it defines what
dropout is (the same mask on any mesh), not how fast it runs.
"""
import functools
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

_SQRT_HALF = 0.7071067811865476       # 1 / sqrt(2)
_INV_SQRT_2PI = 0.3989422804014327    # 1 / sqrt(2 pi)


# ---- GELU ---------------------------------------------------------------------------------

@jax.custom_vjp
def gelu_exact(x: jax.Array) -> jax.Array:
  """GELU with the exact normal CDF, x * (1 + erf(x / sqrt(2))) / 2 (BERT's and torch's form).

  Why: same function as jax.nn.gelu(approximate=False), which goes through
  erfc; XLA CPU evaluates erf (a rational approximation) several times faster.
  The backward pass, g * (cdf(x) + x * pdf(x)), is recomputed from the saved
  input in one fused loop instead of storing erf and exp intermediates.
  """
  return _gelu_value(x)


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


def plain_gelu(x: jax.Array) -> jax.Array:
  """jax.nn.gelu(approximate=False) under plain autodiff."""
  return jax.nn.gelu(x, approximate=False)


# ---- gradient barrier ---------------------------------------------------------------------

@jax.custom_vjp
def grad_barrier(x: jax.Array) -> jax.Array:
  """Identity whose cotangent is materialised (lax.optimization_barrier) before use.

  Why: put on the output of a dense layer. Its backward reads the incoming
  gradient twice (dx = dy W^T and dW = x^T dy, the latter through a transposed
  copy on CPU). Without the barrier XLA fuses the elementwise producer of dy
  (dropout, LayerNorm and GELU backward) into that transposed copy, which then
  walks every input in strided order; with it, dy is computed once and the
  transpose is a plain copy.
  """
  return x


def _grad_barrier_fwd(x):
  return x, None


def _grad_barrier_bwd(_, g):
  return (jax.lax.optimization_barrier(g),)


grad_barrier.defvjp(_grad_barrier_fwd, _grad_barrier_bwd)


# ---- dense layer with a transposed-input weight gradient ---------------------------------

@jax.custom_vjp
def matmul_transposed_input_grad(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """x [..., in] @ kernel [in, out], whose kernel gradient reads a materialised x^T.

  Why: for a widening layer (in < out, e.g. BERT's MLP input) the weight
  gradient x^T @ dy otherwise makes XLA CPU transpose dy, the larger operand;
  with x^T copied explicitly it is a plain [in, tokens] @ [tokens, out] GEMM.
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


# ---- softmax ------------------------------------------------------------------------------

@jax.custom_vjp
def softmax(x: jax.Array) -> jax.Array:
  """Softmax over the last axis with the textbook gradient p * (g - sum(g * p)).

  Why: autodiff of exp / sum differentiates through the division (a 1/sum**2
  term and materialised broadcasts on XLA CPU); this keeps only p for the
  backward pass and reads it once there.
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


def plain_softmax(x: jax.Array) -> jax.Array:
  return jax.nn.softmax(x, axis=-1)


# ---- LayerNorm ----------------------------------------------------------------------------

@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float) -> jax.Array:
  """(x - mean) / sqrt(var + epsilon) * scale + bias over the last axis (two-pass variance).

  Why: the backward pass recomputes the normalised input from x and the
  per-row mean and 1/std inside its fused loops; plain autodiff would store
  the centred and the normalised input as two extra activation-sized buffers.
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


def plain_layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float) -> jax.Array:
  """The same formula as `layer_norm` under plain autodiff."""
  mean = jnp.mean(x, axis=-1, keepdims=True)
  xc = x - mean
  rstd = jax.lax.rsqrt(jnp.mean(jnp.square(xc), axis=-1, keepdims=True) + epsilon)
  return xc * rstd * scale + bias


# ---- the switch ---------------------------------------------------------------------------

def _identity(x):
  return x


class Ops(NamedTuple):
  """The operations whose implementation the switch selects.

  softmax(x): over the last axis. layer_norm(x, scale, bias, epsilon): over the
  last axis. gelu(x): exact (erf) GELU. grad_barrier(x): identity (with or
  without a materialised cotangent). dense_dot_general: nn.Dense's dot_general
  for widening layers, or None for nn.Dense's default.
  """
  softmax: Callable
  layer_norm: Callable
  gelu: Callable
  grad_barrier: Callable
  dense_dot_general: Optional[Callable]


FUSED = Ops(softmax, layer_norm, gelu_exact, grad_barrier, dense_dot_general)
PLAIN = Ops(plain_softmax, plain_layer_norm, plain_gelu, _identity, None)


def ops(fused_ops: bool = True) -> Ops:
  """The model config's `fused_ops` switch -> FUSED (custom VJPs, barriers) or PLAIN (jax)."""
  return FUSED if fused_ops else PLAIN
