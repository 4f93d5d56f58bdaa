"""The training loop: one function, `train_and_evaluate(config, workdir)`.

config -> (trainer sections, objective) -> mesh + sharded state -> (a new workdir:
the data read and checked before anything is created) -> restore the latest
checkpoint, or init (fresh, or from the objective's initial params); a checkpoint
at num_steps: "nothing to do" -> train iterator (its saved state restored, or the
consumed batches replayed: plm_jax.train.data_state) -> jitted steps (a line after
the first, with its compile time) -> progress / TensorBoard every log_every, eval every eval_every, checkpoint every
checkpoint_every and at the end -> params-only export(s) with the tokenizer files.

Everything objective-specific goes through plm_jax.objectives.base.Objective;
this module reads only config.train / optimizer / mesh / seed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from typing import Any, Dict, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from plm_jax import sharding as sharding_lib
from plm_jax.objectives.base import Objective
from plm_jax.train import best as best_lib
from plm_jax.train import checkpointing, data_state, evaluation, host_data, multihost
from plm_jax.train import optimizers, reporting, step as step_lib
from plm_jax.train.config import RunConfig, validate_config
from plm_jax.train.train_state import TrainState


class NonFiniteLossError(RuntimeError):
  """Training produced NaN/Inf; the last good checkpoint is left untouched."""


@dataclasses.dataclass
class ShardedSetup:
  """Everything derived from the config that the loop and tests need."""
  run: RunConfig
  objective: Objective
  mesh: Any
  rules: Any
  tx: Any
  state_shardings: TrainState
  abstract_state: TrainState          # ShapeDtypeStructs carrying their shardings
  init_fn: Any                        # jitted rng -> TrainState, created sharded
  start_fn: Any                       # jitted (params, rng) -> TrainState (given params)


def _carry_shardings(abstract_carry: Any, batch_size: int, mesh) -> Any:
  """Leaves with the global batch as leading dim split like the batch; others replicated."""
  def one(leaf):
    if leaf.ndim and leaf.shape[0] == batch_size:
      return sharding_lib.batch_sharding(mesh)
    return sharding_lib.replicated(mesh)
  return jax.tree_util.tree_map(one, abstract_carry)


def build_setup(config: ml_collections.ConfigDict,
                devices: Optional[Sequence[jax.Device]] = None,
                objective: Optional[Objective] = None) -> ShardedSetup:
  """Mesh, optimizer and the state's shardings, without materialising anything."""
  devices = list(jax.devices() if devices is None else devices)
  run, built = validate_config(config, num_devices=len(devices),
                               process_count=jax.process_count())
  objective = objective or built
  mesh = sharding_lib.make_mesh(run.mesh, devices)
  rules = sharding_lib.axis_rules(run.mesh)
  batch_size = run.train.batch_size
  rng = jax.random.PRNGKey(0)
  boxed = jax.eval_shape(objective.init_params, rng)
  scales = None
  if run.optimizer.layer_decay != 1.0:
    scales = objective.lr_scales(nn.meta.unbox(boxed), run.optimizer.layer_decay)
    if scales is None:
      raise ValueError(f"config.optimizer.layer_decay={run.optimizer.layer_decay}: objective "
                       f"{objective.name!r} defines no layer-wise learning rates; use 1.0")
  frozen = objective.frozen_params(nn.meta.unbox(boxed))
  tx = optimizers.make_optimizer(run.optimizer, run.train.num_steps, scales, frozen)

  # Init runs without logical rules: the parameters' layout comes from
  # out_shardings, and activation constraints are pointless while initialising.
  def start_state(params, rng):
    del rng
    return TrainState.create(params, tx, objective.init_carry(batch_size))

  def init_state(rng):
    return start_state(nn.meta.unbox(objective.init_params(rng)), rng)

  param_sh = sharding_lib.logical_shardings(boxed, mesh, rules)
  abstract = jax.eval_shape(init_state, rng)
  if abstract.carry is not None and run.train.grad_accum_steps > 1:
    raise ValueError(f"config.train.grad_accum_steps={run.train.grad_accum_steps}: must be 1 "
                     f"for objective {objective.name!r}, which carries state between steps")
  state_sh = TrainState(
      step=sharding_lib.replicated(mesh), params=param_sh,
      opt_state=sharding_lib.match_shardings(abstract.opt_state, abstract.params, param_sh, mesh),
      carry=_carry_shardings(abstract.carry, batch_size, mesh))
  abstract = jax.tree_util.tree_map(
      lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), abstract, state_sh)
  init_fn = jax.jit(init_state, out_shardings=state_sh)
  start_fn = jax.jit(start_state, in_shardings=(param_sh, sharding_lib.replicated(mesh)),
                     out_shardings=state_sh)
  return ShardedSetup(run, objective, mesh, rules, tx, state_sh, abstract, init_fn, start_fn)


def initial_state(setup: ShardedSetup, seed: int) -> TrainState:
  """Fresh state, with the objective's initial params (pretrained) placed over the fresh ones."""
  rng = jax.random.PRNGKey(seed)
  state = setup.init_fn(rng)
  pretrained = setup.objective.initial_params()
  if pretrained is None:
    return state
  params, fresh = place_params(pretrained, state.params, setup.state_shardings.params)
  if fresh:
    print(f"initialised {len(fresh)} parameter(s) fresh (not in the initial checkpoint): "
          f"{', '.join(fresh[:6])}{' ...' if len(fresh) > 6 else ''}", flush=True)
  return setup.start_fn(params, rng)


def _flat(tree: Any) -> Dict[str, Any]:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {"/".join(str(getattr(k, "key", k)) for k in path): leaf for path, leaf in leaves}


def place_params(host: Any, fresh: Any, shardings: Any):
  """`host` params (possibly a sub-tree) over `fresh` ones, each in its sharded layout.

  Returns (params, paths kept fresh). A host parameter the model lacks, or one
  of another shape, is a one-line ValueError naming it.
  """
  host_flat, fresh_flat = _flat(host), _flat(fresh)
  for path, value in host_flat.items():
    if path not in fresh_flat:
      raise ValueError(f"initial params: parameter {path} is in the checkpoint but not in the "
                       f"model")
    if tuple(np.shape(value)) != tuple(fresh_flat[path].shape):
      raise ValueError(f"initial params: parameter {path} has shape {tuple(np.shape(value))} "
                       f"in the checkpoint but {tuple(fresh_flat[path].shape)} in the model")
  kept = sorted(set(fresh_flat) - set(host_flat))
  paths, treedef = jax.tree_util.tree_flatten_with_path(fresh)
  sh_leaves = jax.tree_util.tree_leaves(shardings)
  out = []
  for (path, leaf), sh in zip(paths, sh_leaves):
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    if name in host_flat:
      value = np.asarray(host_flat[name], dtype=leaf.dtype)
      leaf = jax.make_array_from_callback(value.shape, sh, lambda idx, v=value: v[idx])
    out.append(leaf)
  return jax.tree_util.tree_unflatten(treedef, out), kept


def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.floating)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def export_models(workdir: str, params: Any, objective: Objective) -> Dict[str, str]:
  """workdir/export[/<name>] for each model the objective exports; name -> directory."""
  from plm_jax.convert import export  # pylint: disable=import-outside-toplevel
  out = {}
  for name, (model_config, model_params) in objective.export_models(params).items():
    directory = os.path.abspath(os.path.join(workdir, "export", name))
    out[name] = export.save_export(directory, model_params, model_config, objective.family)
    export.save_tokenizer(directory, objective.vocabulary(),
                          getattr(model_config, "max_position_embeddings", None))
  return out


def _finalize(setup: ShardedSetup, workdir: str, params: Any, best: best_lib.BestTracker,
              per_host: int, spec) -> Dict[str, str]:
  """The objective's end-of-run outputs, from the best params when they are kept."""
  objective = setup.objective
  if type(objective).finalize is Objective.finalize or not objective.has_predictions:
    return {}
  chosen = []

  def predict(split: str) -> Dict[str, np.ndarray]:
    if not chosen:          # the best params, read only when the objective predicts
      host = best.params()
      chosen.append(params if host is None else
                    place_params(host, params, setup.state_shardings.params)[0])
    return evaluation.Evaluator(setup, per_host, spec, split=split).predictions(chosen[0])

  return objective.finalize(workdir, predict)


def mesh_context(run: RunConfig, mesh):
  """The global mesh while tracing, so the model's logical activation constraints
  take effect (config.mesh.activation_constraints); otherwise only parameters and
  batches carry shardings and XLA propagates the rest."""
  if run.mesh.activation_constraints:
    return jax.set_mesh(mesh)
  return contextlib.nullcontext()


def jit_train_fn(setup: ShardedSetup):
  """The jitted train step the loop runs (state donated and sharded); trace and call it
  inside `mesh_context`. plm_jax.train.dry_run lowers this same function."""
  return step_lib.jit_train_step(setup.objective, setup.tx, setup.mesh, setup.state_shardings,
                                 setup.run.train.grad_accum_steps, setup.rules)


def step_base_rng(seed: int) -> jax.Array:
  """The key every step folds its step number into (dropout masks)."""
  return jax.random.fold_in(jax.random.PRNGKey(seed), 1)


def abstract_step_args(setup: ShardedSetup) -> tuple:
  """(state, global batch, base rng) of the train step as ShapeDtypeStructs with the
  shardings the loop gives its arrays: what `jit_train_fn(setup)` is called with."""
  batch_sh = sharding_lib.batch_sharding(setup.mesh)
  spec = setup.objective.batch_spec(setup.run.train.batch_size)
  batch = {k: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=batch_sh) for k, s in spec.items()}
  rng = jax.eval_shape(step_base_rng, setup.run.seed)
  rng = jax.ShapeDtypeStruct(rng.shape, rng.dtype, sharding=sharding_lib.replicated(setup.mesh))
  return setup.abstract_state, batch, rng


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       devices: Optional[Sequence[jax.Device]] = None) -> Dict[str, float]:
  """Trains config.train.num_steps steps in workdir (resuming); returns final metrics."""
  setup = build_setup(config, devices)
  with mesh_context(setup.run, setup.mesh):
    return _run(setup, workdir)


def _run(setup: ShardedSetup, workdir: str) -> Dict[str, float]:
  run, objective, mesh = setup.run, setup.objective, setup.mesh
  t, seed = run.train, run.seed
  per_host = t.batch_size // jax.process_count()
  spec = objective.batch_spec(t.batch_size)
  ranges = objective.input_ranges()
  batch_sh = sharding_lib.batch_sharding(mesh)

  def datasets():
    train = host_data.train_dataset(objective, t.batch_size, seed, t.data_shards)
    return train, (evaluation.Evaluator(setup, per_host, spec) if t.eval_every >= 0 else None)

  # A new workdir: the data is read and checked before any file or directory is created.
  # An existing one: its checkpoint first (a finished run has nothing to read).
  data_sets = None
  if not os.path.isdir(os.path.join(workdir, checkpointing.CHECKPOINT_DIR)):
    data_sets = datasets()
  checkpointing.prepare_workdir(workdir)
  ckpt = checkpointing.Checkpointer(workdir, t.keep_checkpoints, t.allow_fresh_start)
  try:
    restored = ckpt.restore_latest(setup.abstract_state)
    if restored is None:
      state = initial_state(setup, seed)
      batches_consumed = 0
      print(f"initialised a new run in {workdir} (mesh {dict(mesh.shape)})", flush=True)
    else:
      ckpt_step, state, data = restored
      if int(data.get("seed", seed)) != seed:
        raise ValueError(f"config.seed={seed}: the checkpoint in {ckpt.directory} was "
                         f"written with seed {data['seed']}; use the same seed or a new --workdir")
      batches_consumed = int(data["batches_consumed"])
      if ckpt_step < t.num_steps:
        print(f"resumed from step {ckpt_step} in {ckpt.directory} "
              f"({batches_consumed} batches consumed)", flush=True)
    start = int(jax.device_get(state.step))
    if start < t.num_steps and data_sets is None:
      data_sets = datasets()
  except Exception:
    ckpt.close()
    raise
  if start >= t.num_steps:
    ckpt.close()
    return _finished(workdir, start, t, state, objective)

  train_ds, evaluator = data_sets
  train_it = data_state.TrainIterator(train_ds, "train")
  if restored is not None:
    data_state.resume(train_it, ckpt.restored_iterator, batches_consumed)
  best = best_lib.BestTracker(workdir, t.best_metric, t.best_mode)

  train_fn = jit_train_fn(setup)
  finite_fn = jax.jit(_all_finite)
  base_rng = step_base_rng(seed)
  tokens = objective.tokens_per_batch(spec)
  per_example = objective.train_flops_per_example()
  flops = None if per_example is None else per_example * t.batch_size
  if flops is not None:
    print(f"training FLOPs: {flops:.4g} per step, {flops * t.num_steps:.4g} for "
          f"{t.num_steps} steps (plm_jax.objectives.flops)", flush=True)
  reporter = reporting.Reporter(workdir, t.num_steps, tokens, flops_per_step=flops)
  lr_schedule = optimizers.learning_rate_schedule(run.optimizer, t.num_steps)

  def run_eval(step: int) -> Dict[str, float]:
    if not evaluated:
      print("compiling the eval step ...", flush=True)
      evaluated.append(step)
    metrics = evaluator.evaluate(state.params, t.eval_steps)
    reporter.eval(step, metrics)
    if best.update(step, metrics, state.params, objective):
      print(f"new best {t.best_metric}={metrics[t.best_metric]:.4f} at step {step}: "
            f"saved to {best.directory}", flush=True)
    return metrics

  def save(step: int) -> None:
    if not bool(jax.device_get(finite_fn((state.params, state.carry)))):
      raise NonFiniteLossError(f"step {step}: parameters are NaN/Inf; not saving (the last good "
                               f"checkpoint in {ckpt.directory} is kept)")
    ckpt.save(step, state, {"batches_consumed": batches_consumed, "seed": seed}, train_it)

  window, train_metrics, eval_metrics, evaluated = None, {}, {}, []
  last_saved = start if restored is not None else None
  print("compiling the train step ...", flush=True)
  try:
    for step in range(start, t.num_steps):
      local = next(train_it)
      if step == start:
        evaluation.check_batch(local, spec, per_host, "train",
                               variable_length=objective.variable_length_features)
        compile_start = time.perf_counter()
      evaluation.check_ranges(local, ranges, "train", step + 1)
      batch = evaluation.global_batch(local, spec, batch_sh)
      if step == start:   # several hosts: all compiled before the first collective
        multihost.compile_together(train_fn, state, batch, base_rng, name=f"train_{start}")
      state, metrics = train_fn(state, batch, base_rng)
      batches_consumed += 1
      window = metrics if window is None else jax.tree_util.tree_map(jnp.add, window, metrics)
      done = step + 1
      # The first step's line reports the compile time; rates and ETA start after it.
      first = (time.perf_counter() - compile_start) if step == start else None
      is_log = done % t.log_every == 0 or done == t.num_steps or step == start
      is_ckpt = (t.checkpoint_every > 0 and done % t.checkpoint_every == 0) or done == t.num_steps
      if is_log or is_ckpt:
        train_metrics = step_lib.metrics_to_host(window)
        if not all(math.isfinite(v) for v in train_metrics.values()):
          raise NonFiniteLossError(
              f"step {done}: loss is NaN/Inf ({reporting.format_metrics(train_metrics)}); "
              f"stopping without saving (the last good checkpoint in {ckpt.directory} is kept)")
      if is_log:
        reporter.train(done, train_metrics, float(lr_schedule(done - 1)), compile_seconds=first)
        window = None
      if t.eval_every > 0 and done % t.eval_every == 0:
        eval_metrics = run_eval(done)
        reporter.start(done)  # the evaluation's time is not the train steps' rate
      if is_ckpt:
        save(done)
        last_saved = done
    if last_saved != int(jax.device_get(state.step)):
      save(int(jax.device_get(state.step)))
    ckpt.wait()
    final_step = int(jax.device_get(state.step))
    if evaluator is not None and (t.eval_every == 0 or final_step % t.eval_every
                                  or not eval_metrics):
      eval_metrics = run_eval(final_step)
  finally:
    ckpt.close()
    reporter.close()

  if t.params_export:
    for directory in export_models(workdir, state.params, objective).values():
      print(f"exported params to {directory}", flush=True)
  for name, path in _finalize(setup, workdir, state.params, best, per_host, spec).items():
    print(f"wrote {name}: {path}", flush=True)
  final = {f"train/{k}": v for k, v in train_metrics.items()}
  final.update({f"eval/{k}": v for k, v in eval_metrics.items()})
  final.update(best.summary())
  final["step"] = float(final_step)
  if flops is not None:
    final["train_flops"] = flops * final_step
  print("final metrics: " + ", ".join(f"{k}={v:.4g}" if abs(v) >= 1e6 else f"{k}={v:.4f}"
                                     for k, v in sorted(final.items())),
        flush=True)
  return final


def _finished(workdir: str, step: int, t, state: TrainState, objective: Objective
              ) -> Dict[str, float]:
  """A workdir whose checkpoint is at (or past) config.train.num_steps: nothing is trained,
  evaluated or logged again; the export is written only if it is missing."""
  if step > t.num_steps:
    raise ValueError(f"config.train.num_steps={t.num_steps}: the checkpoint in {workdir} is "
                     f"already at step {step}; set num_steps >= {step} to continue it, or use a "
                     f"new --workdir")
  print(f"nothing to do: {workdir} has finished all {t.num_steps} steps (its metrics and "
        f"export are from that run); raise config.train.num_steps to train further, or use a "
        f"new --workdir", flush=True)
  if t.params_export and not os.path.isdir(os.path.join(workdir, "export")):
    for directory in export_models(workdir, state.params, objective).values():
      print(f"exported params to {directory} (missing after the finished run)", flush=True)
  out = {"step": float(step)}
  out.update(best_lib.BestTracker(workdir, t.best_metric, t.best_mode).summary())
  return out
