"""Optimizers from `config.optimizer`: AdamW, LAMB or Adafactor with warmup + decay.

Schedule: linear warmup from 0 to `learning_rate` over `warmup_steps`, then
linear / cosine decay to `end_learning_rate` at `train.num_steps`, or constant;
or `rsqrt` (T5): `learning_rate` for the first warmup_steps, then
learning_rate * sqrt(warmup_steps / step), i.e. 1/sqrt(max(step, 10^4)) for
learning_rate 0.01 and warmup 10^4 (Raffel et al. 2020, section 3.1.2).
Adafactor (Shazeer & Stern 2018) with T5's settings: factored second moments
for matrices with both dims >= 128, decay 1 - t^-0.8, updates clipped to RMS 1,
scaled by the parameter's RMS (at least 1e-3), no momentum (optax.adafactor).
Weight decay skips biases and LayerNorm parameters (BERT, Devlin et al. 2019;
the reference `AdamWeightDecayOptimizer` excludes "LayerNorm" and "bias").
AdamW (with its global-norm clipping) is `clipped_adamw`, one fused update per
parameter that equals optax's clip_by_global_norm + adamw chain (tested).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import optax

from plm_jax.train.config import DECAYS, OPTIMIZERS


def learning_rate_schedule(opt, num_steps: int) -> optax.Schedule:
  """opt: the optimizer section (plm_jax.train.config.OptimizerConfig)."""
  if opt.decay not in DECAYS:
    raise ValueError(f"config.optimizer.decay={opt.decay!r}: unknown; choose one of {DECAYS}")
  peak, end = float(opt.learning_rate), float(opt.end_learning_rate)
  warmup = int(opt.warmup_steps) or int(round(float(opt.warmup_ratio) * int(num_steps)))
  decay_steps = max(int(num_steps) - warmup, 1)
  if opt.decay == "rsqrt":
    return lambda step: peak * jnp.sqrt(max(warmup, 1) / jnp.maximum(
        jnp.asarray(step, jnp.float32), max(warmup, 1)))
  warm = optax.linear_schedule(0.0, peak, max(warmup, 1))
  if opt.decay == "linear":
    after = optax.linear_schedule(peak, end, decay_steps)
  elif opt.decay == "cosine":
    after = optax.cosine_decay_schedule(peak, decay_steps, alpha=end / peak if peak else 0.0)
  else:
    after = optax.constant_schedule(peak)
  if warmup <= 0:
    return after
  return optax.join_schedules([warm, after], [warmup])


def _is_decayed(path, leaf) -> bool:
  """False for biases and LayerNorm scale/bias (and any 1-D parameter)."""
  names = [str(getattr(k, "key", getattr(k, "name", k))).lower() for k in path]
  if names and names[-1] in ("bias", "scale"):
    return False
  if any("layernorm" in n or "layer_norm" in n or n.startswith("ln") for n in names):
    return False
  return getattr(leaf, "ndim", 0) > 1


def weight_decay_mask(params: Any) -> Any:
  return jax.tree_util.tree_map_with_path(_is_decayed, params)


class ClippedAdamWState(NamedTuple):
  count: jax.Array  # int32 scalar: updates taken (optax's ScaleByAdamState.count)
  mu: Any           # first moments, like params
  nu: Any           # second moments, like params


def clipped_adamw(learning_rate: Union[float, optax.Schedule], b1: float = 0.9,
                  b2: float = 0.999, eps: float = 1e-8, weight_decay: float = 1e-4,
                  mask: Optional[Union[Any, Callable[[Any], Any]]] = None,
                  clip_norm: float = 0.0) -> optax.GradientTransformation:
  """Global-norm clipping then AdamW, as one elementwise expression per parameter.

  Same arithmetic as optax.chain(optax.clip_by_global_norm(clip_norm),
  optax.adamw(learning_rate, b1, b2, eps, weight_decay=weight_decay, mask=mask))
  (clip_norm <= 0: no clipping), in the same order of operations except that the
  clip multiplies by one scalar (equal up to float rounding). The optax
  chain evaluates clip, moments, bias correction, decay and step size as separate
  tree maps, which XLA turns into several passes over every parameter-sized
  buffer; here mu, nu and the update of a parameter come from one fused loop, so
  the optimizer moves about half the memory (the step is memory-bound on CPU).
  """
  schedule = learning_rate if callable(learning_rate) else (lambda _: learning_rate)

  def init_fn(params):
    return ClippedAdamWState(count=jnp.zeros([], jnp.int32),
                             mu=jax.tree.map(jnp.zeros_like, params),
                             nu=jax.tree.map(jnp.zeros_like, params))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("clipped_adamw needs params (for weight decay)")
    if clip_norm > 0:
      g_norm = optax.global_norm(updates)
      # optax computes select(norm < max, g, g / norm * max) per element; one
      # scalar factor is the same up to rounding and lets XLA fuse the clip
      # into the moment updates instead of materialising clipped gradients.
      factor = jnp.where(g_norm < clip_norm, 1.0, clip_norm / g_norm)
      clip = lambda g: g * factor.astype(g.dtype)
    else:
      clip = lambda g: g
    count_inc = optax.safe_increment(state.count)
    correction1 = 1 - b1 ** count_inc
    correction2 = 1 - b2 ** count_inc
    step_size = -schedule(state.count)
    decayed = mask(params) if callable(mask) else mask
    if decayed is None:
      decayed = jax.tree.map(lambda _: True, params)

    def one(g, m, v, p, decay):
      g = clip(g)
      m = (1 - b1) * g + b1 * m
      v = (1 - b2) * (g ** 2) + b2 * v
      u = (m / correction1.astype(m.dtype)) / (jnp.sqrt(v / correction2.astype(v.dtype)) + eps)
      if isinstance(decay, bool):
        u = u + weight_decay * p if decay else u
      else:
        u = jnp.where(decay, u + weight_decay * p, u)
      return u * step_size, m, v

    flat_g, treedef = jax.tree.flatten(updates)
    rows = [one(*args) for args in zip(flat_g, treedef.flatten_up_to(state.mu),
                                       treedef.flatten_up_to(state.nu),
                                       treedef.flatten_up_to(params),
                                       treedef.flatten_up_to(decayed))]
    new_updates, mu, nu = (treedef.unflatten(col) for col in zip(*rows))
    return new_updates, ClippedAdamWState(count=count_inc, mu=mu, nu=nu)

  return optax.GradientTransformation(init_fn, update_fn)


def scale_by_tree(scales: Any) -> optax.GradientTransformation:
  """Multiplies each update by its own constant factor (layer-wise learning rates)."""
  def update_fn(updates, state, params=None):
    del params
    return jax.tree.map(lambda u, s: u * jnp.asarray(s, u.dtype), updates, scales), state
  return optax.GradientTransformation(lambda _: optax.EmptyState(), update_fn)


def make_optimizer(opt, num_steps: int, lr_scales: Any = None,
                   frozen: Any = None) -> optax.GradientTransformation:
  """opt: the optimizer section; num_steps: config.train.num_steps (for the decay);
  lr_scales: a tree like the params of per-parameter learning-rate factors, or None;
  frozen: a tree like the params of bools (True: never updated, no optimizer state), or None."""
  if opt.name not in OPTIMIZERS:
    raise ValueError(f"config.optimizer.name={opt.name!r}: unknown; choose one of {OPTIMIZERS}")
  tx = _make_base(opt, num_steps)
  tx = tx if lr_scales is None else optax.chain(tx, scale_by_tree(lr_scales))
  return tx if frozen is None else freeze(tx, frozen)


def freeze(tx: optax.GradientTransformation, frozen: Any) -> optax.GradientTransformation:
  """`tx` on the parameters whose `frozen` leaf is False, zero updates for the rest (their
  optimizer state is empty; weight decay and gradient clipping see only the trained ones)."""
  labels = jax.tree.map(lambda f: "frozen" if f else "train", frozen)
  return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)


def _make_base(opt, num_steps: int) -> optax.GradientTransformation:
  lr = learning_rate_schedule(opt, num_steps)
  kw = dict(b1=float(opt.b1), b2=float(opt.b2), eps=float(opt.eps),
            weight_decay=float(opt.weight_decay), mask=weight_decay_mask)
  if opt.name == "adamw":
    return clipped_adamw(lr, clip_norm=float(opt.grad_clip_norm), **kw)
  if opt.name == "adagrad":   # bilm-tf: accumulators start at 1.0
    core = optax.adagrad(lr, initial_accumulator_value=1.0, eps=float(opt.eps))
  elif opt.name == "adafactor":
    core = optax.adafactor(
        lr, min_dim_size_to_factor=128, decay_rate=0.8, multiply_by_parameter_scale=True,
        clipping_threshold=1.0, momentum=None, eps=1e-30, factored=True,
        weight_decay_rate=float(opt.weight_decay) or None,
        weight_decay_mask=weight_decay_mask if float(opt.weight_decay) else None)
  else:
    core = optax.lamb(lr, **kw)
  if float(opt.grad_clip_norm) > 0:
    return optax.chain(optax.clip_by_global_norm(float(opt.grad_clip_norm)), core)
  return core
