"""The trainer's config sections: `train`, `optimizer`, `mesh` (and the top level).

The trainer converts and checks only these; every other section belongs to the
objective (`config.objective`), which converts and checks its own
(plm_jax.objectives.base). Nothing here reads files under configs/.

  cfg = parse(config)          # -> RunConfig(seed, objective, train, optimizer, mesh)
  validate_config(config, num_devices=8)   # trainer sections + the objective's sections
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, Tuple

import ml_collections

from plm_jax import configlib
from plm_jax.configlib import ConfigError, fail, param

OPTIMIZERS = ("adamw", "lamb", "adagrad", "adafactor")   # adagrad: ELMo (bilm-tf); adafactor: T5
DECAYS = ("linear", "cosine", "constant", "rsqrt")
TRAINER_SECTIONS = ("train", "optimizer", "mesh")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  batch_size: int = param(256, gt=0)          # global batch (examples per optimizer step)
  grad_accum_steps: int = param(1, gt=0)      # micro-batches per step
  num_steps: int = param(1000, gt=0)
  num_epochs: float = param(0.0, ge=0.0)      # > 0: num_steps = ceil(epochs * examples / batch)
  log_every: int = param(100, gt=0)           # console + TensorBoard scalars
  eval_every: int = param(0, ge=-1)           # 0: evaluate only at the end; -1: never
  eval_steps: int = param(0, ge=0)            # batches per evaluation; 0: the whole eval set
  checkpoint_every: int = param(1000, ge=0)
  keep_checkpoints: int = param(3, gt=0)
  params_export: bool = True                  # params-only export at the end (workdir/export)
  best_metric: str = ""                       # eval metric to keep the best params of
                                              # (workdir/best); empty: off
  best_mode: str = param("max", choices=("max", "min"))
  # Start from scratch in a workdir that held checkpoints none of which can be restored
  # (they stay in workdir/checkpoints_unreadable); without it such a run stops.
  allow_fresh_start: bool = False
  # Logical shards of the training stream (plm_jax.train.host_data); 0: one per host. Fixed
  # (e.g. 2), the global batches are the same on 1 or 2 hosts (a multiple of the host count).
  data_shards: int = param(0, ge=0)

  def check(self, prefix: str) -> None:
    if self.batch_size % self.grad_accum_steps:
      fail(f"{prefix}.batch_size", self.batch_size,
           f"must be divisible by grad_accum_steps={self.grad_accum_steps}")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  name: str = param("adamw", choices=OPTIMIZERS)
  learning_rate: float = param(1e-4, gt=0.0)
  warmup_steps: int = param(0, ge=0)
  warmup_ratio: float = param(0.0, ge=0.0, lt=1.0)  # > 0: warmup_steps = ratio * num_steps
  decay: str = param("linear", choices=DECAYS)  # after warmup (rsqrt: constant during warmup,
                                                # then learning_rate * sqrt(warmup / step), T5)
  end_learning_rate: float = param(0.0, ge=0.0)
  weight_decay: float = param(0.01, ge=0.0)     # not applied to biases and norm parameters
  b1: float = param(0.9, ge=0.0, lt=1.0)
  b2: float = param(0.999, ge=0.0, lt=1.0)
  eps: float = param(1e-6, gt=0.0)
  grad_clip_norm: float = param(1.0, ge=0.0)    # global-norm clipping; 0 disables
  layer_decay: float = param(1.0, gt=0.0, le=1.0)  # layer-wise lr decay (objectives that
                                                # define lr_scales); 1: off

  def check(self, prefix: str) -> None:
    if self.warmup_steps and self.warmup_ratio:
      fail(f"{prefix}.warmup_ratio", self.warmup_ratio,
           f"set warmup_steps ({self.warmup_steps}) or warmup_ratio, not both")


@dataclasses.dataclass(frozen=True)
class MeshConfig:
  shape: Tuple[int, ...] = (-1, 1, 1)             # (data, fsdp, tensor); one -1 = the rest
  axis_names: Tuple[str, ...] = ("data", "fsdp", "tensor")
  rules: Tuple[Any, ...] = ()                     # (logical name, mesh axes) pairs
  activation_constraints: bool = True             # trace under the mesh (logical constraints)


@dataclasses.dataclass(frozen=True)
class RunConfig:
  seed: int
  objective: str
  train: TrainConfig
  optimizer: OptimizerConfig
  mesh: MeshConfig


def parse(config: ml_collections.ConfigDict) -> RunConfig:
  """The trainer's view of the run config, checked (one-line ConfigError naming the key)."""
  for key, tp in (("seed", int), ("objective", str)):
    if key not in config:
      raise ConfigError(f"config.{key}: missing key")
    configlib.check_value(config[key], tp, f"config.{key}")
  sections = {}
  for name, cls in (("train", TrainConfig), ("optimizer", OptimizerConfig),
                    ("mesh", MeshConfig)):
    if name not in config:
      raise ConfigError(f"config.{name}: missing section")
    sections[name] = configlib.from_config(cls, config[name], f"config.{name}")
  return RunConfig(seed=int(config.seed), objective=str(config.objective), **sections)


def default_sections() -> ml_collections.ConfigDict:
  """train / optimizer / mesh with the trainer's defaults (for configs built in code)."""
  c = ml_collections.ConfigDict()
  c.train = configlib.defaults(TrainConfig)
  c.optimizer = configlib.defaults(OptimizerConfig)
  c.mesh = configlib.defaults(MeshConfig)
  return c


def check_batch_divisibility(cfg: RunConfig, num_devices: Optional[int],
                             process_count: int) -> None:
  t = cfg.train
  if t.batch_size % process_count:
    fail("config.train.batch_size", t.batch_size,
         f"must be divisible by the number of hosts {process_count}")
  from plm_jax.train import host_data  # pylint: disable=import-outside-toplevel
  host_data.shards_per_host(t.data_shards, t.batch_size, process_count)
  if num_devices is None:
    return
  from plm_jax import sharding  # pylint: disable=import-outside-toplevel
  shape = sharding.mesh_shape(cfg.mesh, num_devices)
  dp = shape[0] * shape[1]
  if (t.batch_size // t.grad_accum_steps) % dp:
    fail("config.train.batch_size", t.batch_size,
         f"must be divisible by data-parallel size (data*fsdp={dp}) * "
         f"grad_accum_steps={t.grad_accum_steps}")


def validate_config(config: ml_collections.ConfigDict, num_devices: Optional[int] = None,
                    process_count: int = 1):
  """Checks the whole run config once: top-level keys, the trainer's sections, and the
  objective's sections (by building it). Returns (RunConfig, Objective)."""
  from plm_jax.objectives.base import get_objective  # pylint: disable=import-outside-toplevel
  cfg = parse(config)
  objective = get_objective(config)
  configlib.check_top_level(config, TRAINER_SECTIONS + tuple(objective.SECTIONS),
                            ("seed", "objective"))
  check_batch_divisibility(cfg, num_devices, process_count)
  cfg = resolve_epochs(cfg, objective)
  objective.check_run(cfg)
  return cfg, objective


def resolve_epochs(cfg: RunConfig, objective) -> RunConfig:
  """train.num_epochs > 0: num_steps from the objective's number of training examples."""
  t = cfg.train
  if t.num_epochs <= 0:
    return cfg
  count = getattr(objective, "num_train_examples", None)
  if count is None:
    fail("config.train.num_epochs", t.num_epochs,
         f"objective {cfg.objective!r} has no fixed number of training examples; set num_steps")
  steps = max(int(math.ceil(count() * t.num_epochs / t.batch_size)), 1)
  return dataclasses.replace(cfg, train=dataclasses.replace(t, num_steps=steps))
