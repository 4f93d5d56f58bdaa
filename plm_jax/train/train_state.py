"""The train state: step, parameters, optimizer state and carried state (one pytree).

The optimizer itself (an `optax.GradientTransformation`) is static and lives
outside the state, so the state is a plain pytree that jit can donate and Orbax
can save; no `flax.training` legacy pieces.
"""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  step: jax.Array          # int32 scalar: optimizer steps taken
  params: Any              # the model's 'params' collection (unboxed arrays)
  opt_state: Any           # optax state for `params`
  carry: Any = None        # state carried between steps (Objective.init_carry), or None

  @classmethod
  def create(cls, params: Any, tx: optax.GradientTransformation,
             carry: Any = None) -> "TrainState":
    return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
               carry=carry)

  def apply_gradients(self, grads: Any, tx: optax.GradientTransformation) -> "TrainState":
    updates, opt_state = tx.update(grads, self.opt_state, self.params)
    params = optax.apply_updates(self.params, updates)
    return self.replace(step=self.step + 1, params=params, opt_state=opt_state)
