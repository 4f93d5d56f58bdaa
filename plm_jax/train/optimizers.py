"""Optimizers from `config.optimizer`: AdamW or LAMB with warmup + decay.

Schedule: linear warmup from 0 to `learning_rate` over `warmup_steps`, then
linear / cosine decay to `end_learning_rate` at `train.num_steps`, or constant.
Weight decay skips biases and LayerNorm parameters (BERT, Devlin et al. 2019;
the reference `AdamWeightDecayOptimizer` excludes "LayerNorm" and "bias").
"""
from __future__ import annotations

from typing import Any

import jax
import ml_collections
import optax

OPTIMIZERS = ("adamw", "lamb")
DECAYS = ("linear", "cosine", "constant")


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  opt = config.optimizer
  if opt.decay not in DECAYS:
    raise ValueError(f"config.optimizer.decay={opt.decay!r}: unknown; choose one of {DECAYS}")
  peak, end = float(opt.learning_rate), float(opt.end_learning_rate)
  warmup = int(opt.warmup_steps)
  decay_steps = max(int(config.train.num_steps) - warmup, 1)
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


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  opt = config.optimizer
  if opt.name not in OPTIMIZERS:
    raise ValueError(f"config.optimizer.name={opt.name!r}: unknown; choose one of {OPTIMIZERS}")
  lr = learning_rate_schedule(config)
  kw = dict(b1=float(opt.b1), b2=float(opt.b2), eps=float(opt.eps),
            weight_decay=float(opt.weight_decay), mask=weight_decay_mask)
  if opt.name == "adamw":
    core = optax.adamw(lr, **kw)
  else:
    core = optax.lamb(lr, **kw)
  if float(opt.grad_clip_norm) > 0:
    return optax.chain(optax.clip_by_global_norm(float(opt.grad_clip_norm)), core)
  return core
