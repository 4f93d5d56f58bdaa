"""The training loop: one function, `train_and_evaluate(config, workdir)`.

mesh + objective + sharded state -> restore the latest checkpoint or init ->
train iterator (skipping the batches already consumed) -> jitted steps ->
progress / TensorBoard every log_every, eval every eval_every, checkpoint every
checkpoint_every and at the end -> params-only export.

Exports (read by plm_jax.convert's loader):
  workdir/export/params               Orbax StandardSave of the params tree
  workdir/export/<family>_config.json dataclasses.asdict(model config), vocab_size filled
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
from typing import Any, Dict, Optional, Sequence

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from plm_jax import sharding as sharding_lib
from plm_jax.objectives.base import Objective, get_objective
from plm_jax.train import checkpointing, optimizers, reporting, step as step_lib
from plm_jax.train.config import validate_config
from plm_jax.train.train_state import TrainState


class NonFiniteLossError(RuntimeError):
  """Training produced NaN/Inf; the last good checkpoint is left untouched."""


@dataclasses.dataclass
class ShardedSetup:
  """Everything derived from the config that the loop and tests need."""
  objective: Objective
  mesh: Any
  rules: Any
  tx: Any
  state_shardings: TrainState
  abstract_state: TrainState          # ShapeDtypeStructs carrying their shardings
  init_fn: Any                        # jitted rng -> TrainState, created sharded


def build_setup(config: ml_collections.ConfigDict,
                devices: Optional[Sequence[jax.Device]] = None,
                objective: Optional[Objective] = None) -> ShardedSetup:
  """Mesh, optimizer and the state's shardings, without materialising anything."""
  objective = objective or get_objective(config)
  mesh = sharding_lib.make_mesh(config, devices)
  rules = sharding_lib.axis_rules(config)
  tx = optimizers.make_optimizer(config)

  # Init runs without logical rules: the parameters' layout comes from
  # out_shardings, and activation constraints are pointless while initialising
  # (flax's DenseGeneral even applies 3-D names to its flattened 2-D kernel there).
  def init_state(rng):
    params = nn.meta.unbox(objective.init_params(rng))
    return TrainState.create(params, tx)

  rng = jax.random.PRNGKey(0)
  boxed = jax.eval_shape(objective.init_params, rng)
  param_sh = sharding_lib.logical_shardings(boxed, mesh, rules)
  abstract = jax.eval_shape(init_state, rng)
  state_sh = TrainState(
      step=sharding_lib.replicated(mesh), params=param_sh,
      opt_state=sharding_lib.match_shardings(abstract.opt_state, abstract.params, param_sh, mesh))
  abstract = jax.tree_util.tree_map(
      lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), abstract, state_sh)
  init_fn = jax.jit(init_state, out_shardings=state_sh)
  return ShardedSetup(objective, mesh, rules, tx, state_sh, abstract, init_fn)


def global_batch(local: Dict[str, np.ndarray], spec: Dict[str, jax.ShapeDtypeStruct],
                 sharding) -> Dict[str, jax.Array]:
  """Host-local numpy batch -> global jax.Arrays split over (data, fsdp)."""
  out = {}
  for k, s in spec.items():
    out[k] = jax.make_array_from_process_local_data(
        sharding, np.asarray(local[k], dtype=s.dtype), s.shape)
  return out


def check_batch(local: Dict[str, Any], spec: Dict[str, jax.ShapeDtypeStruct],
                per_host: int, split: str) -> None:
  """One-line error when the data pipeline's batch does not fit the objective."""
  missing = sorted(set(spec) - set(local))
  if missing:
    raise ValueError(f"data ({split}): batch lacks feature(s) {missing}; has {sorted(local)}")
  for k, s in spec.items():
    want = (per_host,) + tuple(s.shape[1:])
    if tuple(np.shape(local[k])) != want:
      raise ValueError(f"data ({split}): feature {k} has shape {tuple(np.shape(local[k]))}, "
                       f"expected {want}")


def _host_iterator(dataset, split: str):
  it = iter(dataset.as_numpy_iterator())
  while True:
    try:
      yield next(it)
    except StopIteration:
      raise ValueError(f"data ({split}): the dataset ran out of batches") from None


def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.floating)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def export_params(workdir: str, params: Any, objective: Objective, family: str) -> str:
  """workdir/export/params (+ the model config as JSON); returns the export dir."""
  export_dir = os.path.abspath(os.path.join(workdir, "export"))
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(os.path.join(export_dir, "params"), params, force=True)
  checkpointer.wait_until_finished()
  model_config = getattr(objective, "model_config", None)
  if model_config is not None and jax.process_index() == 0:
    with open(os.path.join(export_dir, f"{family}_config.json"), "w") as f:
      json.dump(dataclasses.asdict(model_config()), f, indent=2, sort_keys=True)
  return export_dir


def evaluate(eval_fn, params, eval_dataset, spec, sharding, per_host: int,
             num_batches: int) -> Dict[str, float]:
  totals = None
  it = _host_iterator(eval_dataset, "validation")
  for _ in range(num_batches):
    local = next(it)
    check_batch(local, spec, per_host, "validation")
    m = eval_fn(params, global_batch(local, spec, sharding))
    totals = m if totals is None else jax.tree_util.tree_map(jnp.add, totals, m)
  return step_lib.metrics_to_host(totals) if totals is not None else {}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       devices: Optional[Sequence[jax.Device]] = None) -> Dict[str, float]:
  """Trains config.train.num_steps steps in workdir (resuming); returns final metrics."""
  devices = list(jax.devices() if devices is None else devices)
  validate_config(config, num_devices=len(devices), process_count=jax.process_count())
  t = config.train
  os.makedirs(workdir, exist_ok=True)
  setup = build_setup(config, devices)
  objective, mesh = setup.objective, setup.mesh
  per_host = t.batch_size // jax.process_count()
  spec = objective.batch_spec(t.batch_size)
  batch_sh = sharding_lib.batch_sharding(mesh)
  lr_schedule = optimizers.learning_rate_schedule(config)

  with mesh_context(config, mesh):
    return _run(config, workdir, setup, per_host, spec, batch_sh, lr_schedule)


def mesh_context(config: ml_collections.ConfigDict, mesh):
  """The global mesh while tracing, so the model's logical activation constraints
  take effect (config.mesh.activation_constraints); otherwise only parameters and
  batches carry shardings and XLA propagates the rest."""
  if config.mesh.get("activation_constraints", True):
    return jax.set_mesh(mesh)
  return contextlib.nullcontext()


def _run(config, workdir, setup: ShardedSetup, per_host, spec, batch_sh, lr_schedule):
  t = config.train
  objective, mesh = setup.objective, setup.mesh
  ckpt = checkpointing.Checkpointer(workdir, t.keep_checkpoints)
  try:
    restored = ckpt.restore_latest(setup.abstract_state)
  except Exception:
    ckpt.close()
    raise
  if restored is None:
    state = setup.init_fn(jax.random.PRNGKey(config.seed))
    batches_consumed = 0
    print(f"initialised a new run in {workdir} (mesh {dict(mesh.shape)})", flush=True)
  else:
    ckpt_step, state, data = restored
    if int(data.get("seed", config.seed)) != int(config.seed):
      raise ValueError(f"config.seed={config.seed}: the checkpoint in {ckpt.directory} was "
                       f"written with seed {data['seed']}; use the same seed or a new --workdir")
    batches_consumed = int(data["batches_consumed"])
    print(f"resumed from step {ckpt_step} in {ckpt.directory} "
          f"(skipping {batches_consumed} consumed batches)", flush=True)
  start = int(jax.device_get(state.step))

  train_ds = objective.get_dataset("train", per_host, config.seed, jax.process_index(),
                                   jax.process_count())
  if batches_consumed:
    train_ds = train_ds.skip(batches_consumed)
  train_it = _host_iterator(train_ds, "train")
  eval_ds = None
  if t.eval_every > 0 or t.eval_steps > 0:
    eval_ds = objective.get_dataset("validation", per_host, config.seed, jax.process_index(),
                                    jax.process_count())

  train_fn = step_lib.jit_train_step(objective, setup.tx, mesh, setup.state_shardings,
                                     t.grad_accum_steps, setup.rules)
  eval_fn = step_lib.jit_eval_step(objective, mesh, setup.state_shardings.params, setup.rules)
  finite_fn = jax.jit(_all_finite)
  base_rng = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1)
  tokens = int(math.prod(spec["input_ids"].shape)) if "input_ids" in spec else t.batch_size
  reporter = reporting.Reporter(workdir, t.num_steps, tokens)

  def run_eval(step: int) -> Dict[str, float]:
    metrics = evaluate(eval_fn, state.params, eval_ds, spec, batch_sh, per_host, t.eval_steps)
    reporter.eval(step, metrics)
    return metrics

  def save(step: int) -> None:
    if not bool(jax.device_get(finite_fn(state.params))):
      raise NonFiniteLossError(f"step {step}: parameters are NaN/Inf; not saving (the last good "
                               f"checkpoint in {ckpt.directory} is kept)")
    ckpt.save(step, state, {"batches_consumed": batches_consumed, "seed": int(config.seed)})

  window, train_metrics, eval_metrics = None, {}, {}
  last_saved = start if restored is not None else None
  reporter.start(start)
  try:
    for step in range(start, t.num_steps):
      local = next(train_it)
      if step == start:
        check_batch(local, spec, per_host, "train")
      state, metrics = train_fn(state, global_batch(local, spec, batch_sh), base_rng)
      batches_consumed += 1
      window = metrics if window is None else jax.tree_util.tree_map(jnp.add, window, metrics)
      done = step + 1
      is_log = done % t.log_every == 0 or done == t.num_steps
      is_ckpt = (t.checkpoint_every > 0 and done % t.checkpoint_every == 0) or done == t.num_steps
      if is_log or is_ckpt:
        train_metrics = step_lib.metrics_to_host(window)
        if not all(math.isfinite(v) for v in train_metrics.values()):
          raise NonFiniteLossError(
              f"step {done}: loss is NaN/Inf ({reporting.format_metrics(train_metrics)}); "
              f"stopping without saving (the last good checkpoint in {ckpt.directory} is kept)")
      if is_log:
        reporter.train(done, train_metrics, float(lr_schedule(done - 1)))
        window = None
      if t.eval_every > 0 and done % t.eval_every == 0 and eval_ds is not None:
        eval_metrics = run_eval(done)
      if is_ckpt:
        save(done)
        last_saved = done
    if last_saved != int(jax.device_get(state.step)):
      save(int(jax.device_get(state.step)))
    ckpt.wait()
    final_step = int(jax.device_get(state.step))
    if eval_ds is not None and t.eval_steps > 0 and (
        t.eval_every <= 0 or final_step % t.eval_every or not eval_metrics):
      eval_metrics = run_eval(final_step)
  finally:
    ckpt.close()
    reporter.close()

  if t.params_export:
    export_dir = export_params(workdir, state.params, objective, config.family)
    print(f"exported params to {export_dir}", flush=True)
  final = {f"train/{k}": v for k, v in train_metrics.items()}
  final.update({f"eval/{k}": v for k, v in eval_metrics.items()})
  final["step"] = float(final_step)
  print("final metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(final.items())),
        flush=True)
  return final
