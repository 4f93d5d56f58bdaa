"""LSTM with a projection layer, cell clipping and projection clipping, run by lax.scan.

The cell is TensorFlow 1's `LSTMCell(num_units, num_proj, cell_clip, proj_clip)` as
bilm-tf (ELMo) trained it, so that its weights load without any reordering:

  z       = [x_t, h_{t-1}] @ kernel + bias              kernel [in + P, 4H], bias [4H]
  i, j, f, o = split(z, 4)                              (TensorFlow's gate order)
  c_t     = sigmoid(f + forget_bias) * c_{t-1} + sigmoid(i) * tanh(j)
  c_t     = clip(c_t, -cell_clip, cell_clip)            (cell_clip > 0)
  m_t     = sigmoid(o) * tanh(c_t)                      [B, H]
  h_t     = m_t @ projection                            [B, P] (projection [H, P]; P < H)
  h_t     = clip(h_t, -proj_clip, proj_clip)            (proj_clip > 0)

forget_bias is a constant 1.0 added at run time (TensorFlow's default), not a
parameter. Without a projection (P == H) h_t = m_t and proj_clip still applies.

Sequences are padded on the right; `mask` [B, T] marks real steps. At a padded
step the state is carried through unchanged and the output is zero, as
tf.nn.dynamic_rnn(sequence_length=...) does, so the final state of a row is its
state after its last real token (what a stateful reader carries on).

`run_lstms` steps D LSTMs (ELMo: a layer's two directions) through one loop, the
input half of the matmul done for all steps before it; its backward is written by
hand so that the weight gradients are one product over all steps, not one per step.
"""
import functools
from typing import Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

State = Tuple[jax.Array, jax.Array]   # (c [B, H], h [B, P])


def lstm_cell_step(kernel: jax.Array, bias: jax.Array, projection: Optional[jax.Array],
                   x: jax.Array, state: State, cell_clip: float = 0.0, proj_clip: float = 0.0,
                   forget_bias: float = 1.0) -> State:
  """One step of the cell: x [B, in], state (c [B, H], h [B, P]) -> new (c, h)."""
  c, h = state
  z = jnp.concatenate([x, h], axis=-1) @ kernel + bias
  return _gates(z, c, projection, cell_clip, proj_clip, forget_bias)


def _gates(z: jax.Array, c: jax.Array, projection: Optional[jax.Array], cell_clip: float,
           proj_clip: float, forget_bias: float) -> State:
  c, m = _cell(z, c, cell_clip, forget_bias)
  h = m @ projection if projection is not None else m
  if proj_clip > 0:
    h = jnp.clip(h, -proj_clip, proj_clip)
  return c, h


def run_lstm(kernel: jax.Array, bias: jax.Array, projection: Optional[jax.Array],
             x: jax.Array, mask: jax.Array, state: State, cell_clip: float = 0.0,
             proj_clip: float = 0.0, forget_bias: float = 1.0) -> Tuple[jax.Array, State]:
  """The cell over a sequence: x [B, T, in], mask [B, T] -> (outputs [B, T, P], final state).

  `run_lstms` with one LSTM (a leading axis of 1 added and removed).
  """
  out, (c, h) = run_lstms(kernel[None], bias[None],
                          None if projection is None else projection[None], x[None], mask,
                          (state[0][None], state[1][None]), cell_clip, proj_clip, forget_bias)
  return out[0], (c[0], h[0])


def run_lstms(kernels: jax.Array, biases: jax.Array, projections: Optional[jax.Array],
              x: jax.Array, mask: jax.Array, state: State, cell_clip: float = 0.0,
              proj_clip: float = 0.0, forget_bias: float = 1.0) -> Tuple[jax.Array, State]:
  """D independent LSTMs of the same sizes stepped together in one loop (ELMo: the forward
  and the backward direction of a layer, D = 2): kernels [D, in + P, 4H], biases [D, 4H],
  projections [D, H, P] or None, x [D, B, T, in], mask [B, T] (shared), state (c [D, B, H],
  h [D, B, P]) -> (outputs [D, B, T, P], final state). Each LSTM's math is its own; only
  the loop is shared, so the scan runs T trips instead of D T.

  The input half of the matmul is done for all steps at once before the scan;
  the scan body only multiplies the recurrent state.
  """
  n_in = x.shape[-1]
  xz = jnp.einsum("dbti,dig->tdbg", x, kernels[:, :n_in]) + biases[:, None]   # [T, D, B, 4H]
  keep = jnp.swapaxes(mask, 0, 1)[:, None, :, None].astype(bool)              # [T, 1, B, 1]
  out, final = _recurrence(kernels[:, n_in:], projections, xz, keep, state, cell_clip,
                           proj_clip, forget_bias)
  return jnp.moveaxis(out, 0, 2), final                                        # [D, B, T, P]


def _scan_forward(recurrent, projections, xz, keep, state, cell_clip, proj_clip, forget_bias,
                  save: bool):
  """The loop: recurrent [D, P, 4H], xz [T, D, B, 4H] (input half + bias), keep [T, 1, B, 1]
  -> (final state, (outputs [T, D, B, P], what the backward needs per step if save))."""
  def step(carry: State, inputs):
    c, h = carry
    zt, kt = inputs
    z = zt + jnp.einsum("dbp,dpg->dbg", h, recurrent)
    i, j, f, o = jnp.split(z, 4, axis=-1)
    si, tj, sf, so = (jax.nn.sigmoid(i), jnp.tanh(j), jax.nn.sigmoid(f + forget_bias),
                      jax.nn.sigmoid(o))
    c_pre = sf * c + si * tj
    c_new = jnp.clip(c_pre, -cell_clip, cell_clip) if cell_clip > 0 else c_pre
    tc = jnp.tanh(c_new)
    m = so * tc
    hp = jnp.einsum("dbh,dhp->dbp", m, projections) if projections is not None else m
    h_new = jnp.clip(hp, -proj_clip, proj_clip) if proj_clip > 0 else hp
    saved = (c, h, si, tj, sf, so, c_pre, tc, m, hp) if save else ()
    return ((jnp.where(kt, c_new, c), jnp.where(kt, h_new, h)),
            (jnp.where(kt, h_new, 0.0), saved))
  return jax.lax.scan(step, state, (xz, keep))


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7))
def _recurrence(recurrent, projections, xz, keep, state, cell_clip, proj_clip, forget_bias):
  """The cell's equations over the steps (see the module doc), with a hand-written backward:
  the backward loop only carries dc, dh and emits each step's gate gradient dz and
  projection-output gradient; the recurrent and projection weight gradients are then one
  product each over all T B rows (instead of a small product and an add per step, which
  differentiating the scan gives). tests/test_elmo_model.py checks it against autodiff of
  the plain cell."""
  final, (out, _) = _scan_forward(recurrent, projections, xz, keep, state, cell_clip,
                                  proj_clip, forget_bias, save=False)
  return out, final


def _recurrence_fwd(recurrent, projections, xz, keep, state, cell_clip, proj_clip, forget_bias):
  final, (out, saved) = _scan_forward(recurrent, projections, xz, keep, state, cell_clip,
                                      proj_clip, forget_bias, save=True)
  return (out, final), (recurrent, projections, keep, saved)


def _recurrence_bwd(cell_clip, proj_clip, forget_bias, residuals, cotangents):
  del forget_bias   # in the saved sigmoid
  recurrent, projections, keep, saved = residuals
  d_out, d_final = cotangents

  def step(carry: State, inputs):
    dc, dh = carry
    dy, kt, (c, _, si, tj, sf, so, c_pre, tc, _, hp) = inputs
    dh_new = jnp.where(kt, dh + dy, 0.0)             # a padded step passes dc, dh through
    dhp = dh_new * (jnp.abs(hp) <= proj_clip) if proj_clip > 0 else dh_new
    dm = jnp.einsum("dbp,dhp->dbh", dhp, projections) if projections is not None else dhp
    dcn = jnp.where(kt, dc, 0.0) + dm * so * (1.0 - tc * tc)
    dcp = dcn * (jnp.abs(c_pre) <= cell_clip) if cell_clip > 0 else dcn
    dz = jnp.concatenate([dcp * tj * si * (1.0 - si), dcp * si * (1.0 - tj * tj),
                          dcp * c * sf * (1.0 - sf), dm * tc * so * (1.0 - so)], axis=-1)
    dc_prev = dcp * sf + jnp.where(kt, 0.0, dc)
    dh_prev = jnp.einsum("dbg,dpg->dbp", dz, recurrent) + jnp.where(kt, 0.0, dh)
    return (dc_prev, dh_prev), (dz, dhp)

  d_state, (dz, dhp) = jax.lax.scan(step, d_final, (d_out, keep, saved), reverse=True)
  h_prev, m = saved[1], saved[8]                      # [T, D, B, P], [T, D, B, H]
  d_recurrent = jnp.einsum("tdbp,tdbg->dpg", h_prev, dz)
  d_projections = None if projections is None else jnp.einsum("tdbh,tdbp->dhp", m, dhp)
  return d_recurrent, d_projections, dz, None, d_state


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


def _cell(z: jax.Array, c: jax.Array, cell_clip: float, forget_bias: float):
  """z [..., 4H], c [..., H] -> (new c, m = sigmoid(o) tanh(c)) before the projection."""
  i, j, f, o = jnp.split(z, 4, axis=-1)
  c = jax.nn.sigmoid(f + forget_bias) * c + jax.nn.sigmoid(i) * jnp.tanh(j)
  if cell_clip > 0:
    c = jnp.clip(c, -cell_clip, cell_clip)
  return c, jax.nn.sigmoid(o) * jnp.tanh(c)


def lstm_params(module: nn.Module, n_in: int, cell_size: int, projection_size: int):
  """Declares one LSTM's params on `module` (inside its compact method): `kernel`
  [n_in + P, 4H], `bias` [4H], `projection` [H, P] (None when P == H)."""
  kernel = module.param("kernel", nn.initializers.glorot_uniform(),
                        (n_in + projection_size, 4 * cell_size))
  bias = module.param("bias", nn.initializers.zeros, (4 * cell_size,))
  projection = None
  if projection_size < cell_size:
    projection = module.param("projection", nn.initializers.glorot_uniform(),
                              (cell_size, projection_size))
  elif projection_size != cell_size:
    raise ValueError(f"{type(module).__name__}: projection_size {projection_size} > "
                     f"cell_size {cell_size}")
  return kernel, bias, projection


class LstmParams(nn.Module):
  """The params of one LstmWithProjection (same names and shapes) without running it, for
  `run_lstms`: __call__(n_in) -> (kernel, bias, projection or None)."""
  cell_size: int
  projection_size: int

  @nn.compact
  def __call__(self, n_in: int):
    return lstm_params(self, n_in, self.cell_size, self.projection_size)


class LstmWithProjection(nn.Module):
  """One direction of one layer: params `kernel` [in + P, 4H], `bias` [4H], `projection`
  [H, P] (absent when P == H), the names and layouts of bilm-tf's W_0, B, W_P_0."""
  cell_size: int
  projection_size: int
  cell_clip: float = 0.0
  proj_clip: float = 0.0

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array,
               state: Optional[State] = None) -> Tuple[jax.Array, State]:
    h_size, p_size = self.cell_size, self.projection_size
    kernel, bias, projection = lstm_params(self, x.shape[-1], h_size, p_size)
    if state is None:
      state = zero_state(x.shape[0], h_size, p_size, x.dtype)
    return run_lstm(kernel, bias, projection, x, mask, state, self.cell_clip, self.proj_clip)


def zero_state(batch: int, cell_size: int, projection_size: int, dtype=jnp.float32) -> State:
  return (jnp.zeros((batch, cell_size), dtype), jnp.zeros((batch, projection_size), dtype))
