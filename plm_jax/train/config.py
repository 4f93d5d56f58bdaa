"""Validation of the whole run ConfigDict, once, before anything is built.

Every problem is a one-line ValueError naming the key, e.g.
  config.train.batch_size=30: must be divisible by grad_accum_steps=4
Unknown and missing keys are found by comparing with the defaults of the
family's config file (configs/<family>.py get_config()); value types must match
those defaults (an int is accepted where a float is expected).
"""
from __future__ import annotations

import importlib.util
import math
import os
from typing import Any, Callable, Optional

import ml_collections

DTYPES = ("float32", "bfloat16")
REPO_CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "configs")


def reference_config(family: str) -> Optional[ml_collections.ConfigDict]:
  """get_config() of configs/<family>.py, or None when that file is not present."""
  path = os.path.join(REPO_CONFIG_DIR, f"{family}.py")
  if not os.path.exists(path):
    return None
  spec = importlib.util.spec_from_file_location(f"_plm_reference_config_{family}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def _check_keys(config: Any, reference: Any, prefix: str) -> None:
  keys, ref_keys = set(config.keys()), set(reference.keys())
  for key in sorted(keys - ref_keys):
    raise ValueError(f"{prefix}.{key}: unknown key; known keys in {prefix}: {sorted(ref_keys)}")
  for key in sorted(ref_keys - keys):
    raise ValueError(f"{prefix}.{key}: missing key")
  for key in sorted(keys):
    value, ref = config[key], reference[key]
    name = f"{prefix}.{key}"
    if isinstance(ref, (ml_collections.ConfigDict, dict)):
      if not isinstance(value, (ml_collections.ConfigDict, dict)):
        raise ValueError(f"{name}={value!r}: must be a section (ConfigDict)")
      _check_keys(value, ref, name)
    elif ref is None:
      continue
    elif isinstance(ref, bool):
      if not isinstance(value, bool):
        raise ValueError(f"{name}={value!r}: must be a bool (True/False)")
    elif isinstance(ref, int):
      if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}={value!r}: must be an int")
    elif isinstance(ref, float):
      if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}={value!r}: must be a number")
    elif isinstance(ref, str):
      if not isinstance(value, str):
        raise ValueError(f"{name}={value!r}: must be a string")
    elif isinstance(ref, (tuple, list)):
      if not isinstance(value, (tuple, list)):
        raise ValueError(f"{name}={value!r}: must be a tuple")


def _require(config: ml_collections.ConfigDict, key: str, ok: Callable[[Any], bool],
             what: str) -> None:
  node = config
  for part in key.split("."):
    if part not in node:
      return  # families without this key: nothing to check
    node = node[part]
  if not ok(node):
    raise ValueError(f"config.{key}={node!r}: {what}")


def _ranges(config: ml_collections.ConfigDict) -> None:
  pos = lambda x: x > 0
  nonneg = lambda x: x >= 0
  prob = lambda x: 0.0 <= x <= 1.0
  for key in ("model.hidden_size", "model.num_layers", "model.num_heads",
              "model.intermediate_size", "model.max_position_embeddings",
              "model.type_vocab_size", "data.seq_length", "mlm.max_predictions",
              "train.batch_size", "train.num_steps", "train.grad_accum_steps",
              "train.log_every", "train.keep_checkpoints", "optimizer.eps"):
    _require(config, key, pos, "must be > 0")
  for key in ("model.vocab_size", "train.eval_every", "train.eval_steps",
              "train.checkpoint_every", "optimizer.warmup_steps", "optimizer.weight_decay",
              "optimizer.grad_clip_norm", "optimizer.end_learning_rate", "model.layer_norm_eps"):
    _require(config, key, nonneg, "must be >= 0")
  _require(config, "optimizer.learning_rate", lambda x: x > 0 and math.isfinite(x),
           "must be a finite number > 0")
  for key in ("model.hidden_dropout_rate", "model.attention_dropout_rate"):
    _require(config, key, lambda x: 0.0 <= x < 1.0, "must be in [0, 1)")
  for key in ("optimizer.b1", "optimizer.b2"):
    _require(config, key, lambda x: 0.0 <= x < 1.0, "must be in [0, 1)")
  _require(config, "model.dtype", lambda x: x in DTYPES, f"unknown dtype; choose one of {DTYPES}")
  _require(config, "mlm.mask_rate", lambda x: 0.0 < x < 1.0, "must be in (0, 1)")
  for key in ("mlm.mask_token_prob", "mlm.random_token_prob", "mlm.short_seq_prob"):
    _require(config, key, prob, "must be in [0, 1]")
  if "mlm" in config:
    total = config.mlm.mask_token_prob + config.mlm.random_token_prob
    if total > 1.0:
      raise ValueError(f"config.mlm.random_token_prob={config.mlm.random_token_prob!r}: "
                       f"mask_token_prob + random_token_prob = {total} must be <= 1")
  if "model" in config and "num_heads" in config.model:
    _require(config, "model.hidden_size", lambda x: x % config.model.num_heads == 0,
             f"must be divisible by model.num_heads={config.model.num_heads}")
  if "model" in config and "max_position_embeddings" in config.model and "data" in config:
    _require(config, "data.seq_length", lambda x: x <= config.model.max_position_embeddings,
             f"must be <= model.max_position_embeddings={config.model.max_position_embeddings}")
  if "mlm" in config and "data" in config:
    _require(config, "mlm.max_predictions", lambda x: x <= config.data.seq_length,
             f"must be <= data.seq_length={config.data.seq_length}")
  if config.train.eval_every > 0:
    _require(config, "train.eval_steps", pos, "must be > 0 when train.eval_every > 0")


def _batch_divisibility(config: ml_collections.ConfigDict, num_devices: Optional[int],
                        process_count: int) -> None:
  t = config.train
  if t.batch_size % t.grad_accum_steps:
    raise ValueError(f"config.train.batch_size={t.batch_size}: must be divisible by "
                     f"grad_accum_steps={t.grad_accum_steps}")
  if t.batch_size % process_count:
    raise ValueError(f"config.train.batch_size={t.batch_size}: must be divisible by the "
                     f"number of hosts {process_count}")
  if num_devices is None:
    return
  from plm_jax import sharding  # pylint: disable=import-outside-toplevel
  shape = sharding.mesh_shape(config, num_devices)
  dp = shape[0] * shape[1]
  micro = t.batch_size // t.grad_accum_steps
  if micro % dp:
    raise ValueError(f"config.train.batch_size={t.batch_size}: must be divisible by data-parallel "
                     f"size (data*fsdp={dp}) * grad_accum_steps={t.grad_accum_steps}")


def validate_config(config: ml_collections.ConfigDict,
                    reference: Optional[ml_collections.ConfigDict] = None,
                    num_devices: Optional[int] = None, process_count: int = 1) -> None:
  """Raises a one-line ValueError for the first problem found."""
  for key in ("family", "objective", "seed", "train", "optimizer", "mesh"):
    if key not in config:
      raise ValueError(f"config.{key}: missing key")
  if reference is None:
    reference = reference_config(config.family)
  if reference is not None:
    _check_keys(config, reference, "config")
  _ranges(config)
  from plm_jax.train import optimizers  # pylint: disable=import-outside-toplevel
  if config.optimizer.name not in optimizers.OPTIMIZERS:
    raise ValueError(f"config.optimizer.name={config.optimizer.name!r}: unknown; choose one "
                     f"of {optimizers.OPTIMIZERS}")
  if config.optimizer.decay not in optimizers.DECAYS:
    raise ValueError(f"config.optimizer.decay={config.optimizer.decay!r}: unknown; choose one "
                     f"of {optimizers.DECAYS}")
  _batch_divisibility(config, num_devices, process_count)
