"""One pure train step and one eval step, and their jit-compiled forms.

train_step(state, batch, base_rng) -> (state, metrics)
  * the objective's loss gets the state's carried state (state.carry, see
    Objective.init_carry) and returns the next one, stored without gradient;
  * the step key is `fold_in(base_rng, state.step)`: reruns and resumed runs
    draw the same dropout masks;
  * with `grad_accum_steps = A > 1` the global batch [B, ...] is split into A
    micro-batches of B/A examples (example i goes to micro-batch i % A, so every
    device's shard feeds every micro-batch) and `lax.scan` sums their gradients
    and (sum, weight) metrics. The result equals one step on the whole batch:
    where the objective has `loss_normalizers`, they are computed once on the
    whole batch and every micro-batch loss is its share of the whole batch's
    loss (exact for a sum of means, e.g. MLM + NSP); otherwise each micro-batch
    gradient is weighted by the weight of its 'loss' metric, so a loss that is
    one mean over w_i items accumulates to the exact mean over all sum(w_i).
metrics are a dict name -> (sum, weight) of float32 scalars (see
plm_jax.objectives.base).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import optax

from plm_jax import sharding as sharding_lib
from plm_jax.objectives.base import Batch, Metrics, Objective
from plm_jax.train.train_state import TrainState


def _add(a: Any, b: Any) -> Any:
  return jax.tree_util.tree_map(jnp.add, a, b)


def _loss_weight(metrics: Metrics) -> jax.Array:
  if "loss" in metrics:
    return jnp.asarray(metrics["loss"][1], jnp.float32)
  return jnp.ones((), jnp.float32)


def _split_micro_batches(batch: Batch, num: int, mesh) -> Batch:
  """[B, ...] -> [num, B/num, ...]; micro-batch j holds examples j, j+num, ..."""
  def one(x):
    b = x.shape[0]
    y = x.reshape((b // num, num) + x.shape[1:])
    y = jnp.swapaxes(y, 0, 1)
    if mesh is None:
      return y
    return jax.lax.with_sharding_constraint(
        y, NamedSharding(mesh, P(None, sharding_lib.BATCH_AXES)))
  return jax.tree_util.tree_map(one, batch)


def train_step(state: TrainState, batch: Batch, base_rng: jax.Array, *,
               objective: Objective, tx: optax.GradientTransformation,
               grad_accum_steps: int = 1, rules=(), mesh: Mesh | None = None
               ) -> Tuple[TrainState, Metrics]:
  rng = jax.random.fold_in(base_rng, state.step)

  normalizers = objective.loss_normalizers(batch) if grad_accum_steps > 1 else None

  def grads_and_metrics(params, micro_batch, micro_rng, carry):
    def loss(p):
      with nn.logical_axis_rules(rules):
        value, metrics, new_carry = objective.loss_fn_with_carry(
            p, micro_batch, micro_rng, False, carry, normalizers=normalizers)
      return value, (metrics, new_carry)
    (_, (metrics, new_carry)), grads = jax.value_and_grad(loss, has_aux=True)(params)
    return grads, _as_float32(metrics), jax.lax.stop_gradient(new_carry)

  if grad_accum_steps <= 1:
    grads, metrics, carry = grads_and_metrics(state.params, batch, rng, state.carry)
  else:
    if state.carry is not None:
      raise ValueError("config.train.grad_accum_steps must be 1 for an objective that carries "
                       "state between steps")
    micro = _split_micro_batches(batch, grad_accum_steps, mesh)
    first = jax.tree_util.tree_map(lambda x: x[0], micro)
    g_shape, m_shape, _ = jax.eval_shape(grads_and_metrics, state.params, first, rng, None)
    zeros = lambda t: jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), t)

    def body(acc, xs):
      g_acc, m_acc, w_acc = acc
      index, micro_batch = xs
      g, m, _ = grads_and_metrics(state.params, micro_batch, jax.random.fold_in(rng, index), None)
      # With normalizers the micro-batch losses are shares of one loss: plain sum.
      w = _loss_weight(m) if normalizers is None else jnp.ones((), jnp.float32)
      g_acc = jax.tree_util.tree_map(lambda a, b: a + w * b, g_acc, g)
      return (g_acc, _add(m_acc, m), w_acc + w), None

    init = (zeros(g_shape), zeros(m_shape), jnp.zeros((), jnp.float32))
    (g_sum, metrics, w_sum), _ = jax.lax.scan(
        body, init, (jnp.arange(grad_accum_steps), micro))
    carry = None
    if normalizers is None:
      grads = jax.tree_util.tree_map(lambda g: g / jnp.maximum(w_sum, 1e-12), g_sum)
    else:
      grads = g_sum
      metrics = dict(metrics, loss=(metrics["loss"][0], jnp.ones((), jnp.float32)))

  new_state = state.apply_gradients(grads, tx).replace(carry=carry)
  metrics = dict(metrics)
  metrics["grad_norm"] = (optax.global_norm(grads), jnp.ones((), jnp.float32))
  return new_state, metrics


def _as_float32(metrics: Metrics) -> Metrics:
  return {k: (jnp.asarray(s, jnp.float32), jnp.asarray(w, jnp.float32))
          for k, (s, w) in metrics.items()}


def eval_step(params: Any, batch: Batch, *, objective: Objective, rules=()) -> Metrics:
  """Loss metrics of one eval batch (padded rows carry no weight: Objective.example_weights)."""
  with nn.logical_axis_rules(rules):
    _, metrics = objective.loss_fn(params, batch, None, deterministic=True)
  return _as_float32(metrics)


def predict_step(params: Any, batch: Batch, *, objective: Objective, rules=()) -> Any:
  with nn.logical_axis_rules(rules):
    return objective.predict_fn(params, batch)


def jit_train_step(objective: Objective, tx: optax.GradientTransformation, mesh: Mesh,
                   state_shardings: Any, grad_accum_steps: int, rules) -> Callable:
  """jit with the state donated and sharded, the batch split over (data, fsdp)."""
  fn = functools.partial(train_step, objective=objective, tx=tx,
                         grad_accum_steps=grad_accum_steps, rules=rules, mesh=mesh)
  rep = sharding_lib.replicated(mesh)
  return jax.jit(fn,
                 in_shardings=(state_shardings, sharding_lib.batch_sharding(mesh), rep),
                 out_shardings=(state_shardings, rep),
                 donate_argnums=(0,))


def jit_eval_step(objective: Objective, mesh: Mesh, param_shardings: Any, rules) -> Callable:
  fn = functools.partial(eval_step, objective=objective, rules=rules)
  return jax.jit(fn, in_shardings=(param_shardings, sharding_lib.batch_sharding(mesh)),
                 out_shardings=sharding_lib.replicated(mesh))


def jit_predict_step(objective: Objective, mesh: Mesh, param_shardings: Any, rules) -> Callable:
  """Predictions stay split over the batch axes like the batch they come from."""
  fn = functools.partial(predict_step, objective=objective, rules=rules)
  return jax.jit(fn, in_shardings=(param_shardings, sharding_lib.batch_sharding(mesh)),
                 out_shardings=sharding_lib.batch_sharding(mesh))


def metrics_to_host(metrics: Dict[str, Tuple[Any, Any]]) -> Dict[str, float]:
  """(sum, weight) pairs -> plain floats sum / weight (weight 0 -> nan)."""
  host = jax.device_get(metrics)
  out = {}
  for k, (s, w) in host.items():
    out[k] = float(s) / float(w) if float(w) else float("nan")
  return out
