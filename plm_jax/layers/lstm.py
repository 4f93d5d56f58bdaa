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
"""
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
  i, j, f, o = jnp.split(z, 4, axis=-1)
  c = jax.nn.sigmoid(f + forget_bias) * c + jax.nn.sigmoid(i) * jnp.tanh(j)
  if cell_clip > 0:
    c = jnp.clip(c, -cell_clip, cell_clip)
  m = jax.nn.sigmoid(o) * jnp.tanh(c)
  h = m @ projection if projection is not None else m
  if proj_clip > 0:
    h = jnp.clip(h, -proj_clip, proj_clip)
  return c, h


def run_lstm(kernel: jax.Array, bias: jax.Array, projection: Optional[jax.Array],
             x: jax.Array, mask: jax.Array, state: State, cell_clip: float = 0.0,
             proj_clip: float = 0.0, forget_bias: float = 1.0) -> Tuple[jax.Array, State]:
  """The cell over a sequence: x [B, T, in], mask [B, T] -> (outputs [B, T, P], final state).

  The input half of the matmul is done for all steps at once before the scan;
  the scan body only multiplies the recurrent state (one compiled loop).
  """
  n_in = x.shape[-1]
  xz = jnp.einsum("bti,ig->tbg", x, kernel[:n_in]) + bias     # [T, B, 4H]
  recurrent = kernel[n_in:]                                     # [P, 4H]
  keep = jnp.swapaxes(mask, 0, 1)[..., None].astype(bool)      # [T, B, 1]

  def step(carry: State, inputs):
    c, h = carry
    zt, kt = inputs
    c_new, h_new = _gates(zt + h @ recurrent, c, projection, cell_clip, proj_clip, forget_bias)
    c = jnp.where(kt, c_new, c)
    h = jnp.where(kt, h_new, h)
    return (c, h), jnp.where(kt, h_new, 0.0)

  final, out = jax.lax.scan(step, state, (xz, keep))
  return jnp.swapaxes(out, 0, 1), final                         # [B, T, P]


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
    kernel = self.param("kernel", nn.initializers.glorot_uniform(),
                        (x.shape[-1] + p_size, 4 * h_size))
    bias = self.param("bias", nn.initializers.zeros, (4 * h_size,))
    projection = None
    if p_size < h_size:
      projection = self.param("projection", nn.initializers.glorot_uniform(), (h_size, p_size))
    elif p_size != h_size:
      raise ValueError(f"LstmWithProjection: projection_size {p_size} > cell_size {h_size}")
    if state is None:
      state = zero_state(x.shape[0], h_size, p_size, x.dtype)
    return run_lstm(kernel, bias, projection, x, mask, state, self.cell_clip, self.proj_clip)


def zero_state(batch: int, cell_size: int, projection_size: int, dtype=jnp.float32) -> State:
  return (jnp.zeros((batch, cell_size), dtype), jnp.zeros((batch, projection_size), dtype))
