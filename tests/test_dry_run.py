"""Dry-run planning (plm_jax.train.dry_run, main.py --dry_run): its figures against a real
step of the same config, and against the 6N rule of thumb.

Tolerances: the dry run's per-device memory equals the real step's compiled program
exactly (same function, same shardings: only the arguments' provenance differs), and
its FLOPs are within 25% of 6 x parameters x tokens for a tiny BERT (the rule ignores
the attention scores and the optimizer update, and counts the embedding table, which
a lookup reads without multiplying: measured 1.08 for configs/bert.py:tiny).
"""
import os

import jax
import pytest

import main_runner

RULE_TOLERANCE = 0.25


def _tiny_bert(shape):
  from configs import bert
  c = bert.get_config("tiny")
  m, d, t = c.model, c.data, c.train
  m.hidden_size, m.num_layers, m.num_heads, m.intermediate_size = 32, 1, 2, 64
  m.max_position_embeddings = d.seq_length = 32
  c.mlm.max_predictions = 5
  d.shuffle_buffer = 64
  t.batch_size = 8
  c.mesh.shape = shape
  return c


def test_dry_run_memory_is_the_real_steps_and_flops_follow_6n():
  """A (1, 2, 1) mesh (fsdp: parameters and batch split) on 2 of the simulated devices: the
  dry run compiles without any array; the real step is lowered from the trainer's initial
  state and a batch of the objective's data pipeline, compiled and run."""
  from plm_jax import sharding as sharding_lib
  from plm_jax.train import dry_run, evaluation, trainer
  setup = trainer.build_setup(_tiny_bert((1, 2, 1)), jax.devices()[:2])
  plan = dry_run.plan_setup(setup, peak_flops=1e12)
  assert plan.num_devices == 2 and plan.mesh == {"data": 1, "fsdp": 2, "tensor": 1}
  assert plan.tokens_per_step == 8 * 32

  state = trainer.initial_state(setup, setup.run.seed)
  count = sum(x.size for x in jax.tree_util.tree_leaves(state.params))
  assert plan.params == count
  objective = setup.objective
  local = next(evaluation.host_iterator(objective.get_dataset("train", 8, 0), "train"))
  batch = evaluation.global_batch(local, objective.batch_spec(8),
                                  sharding_lib.batch_sharding(setup.mesh))
  rng = trainer.step_base_rng(0)
  with trainer.mesh_context(setup.run, setup.mesh):
    lowered = trainer.jit_train_fn(setup).lower(state, batch, rng)
  compiled = lowered.compile()
  real = dry_run.memory_stats(compiled)
  assert real == plan.memory, (real, plan.memory)
  assert real["total"] > 0 and real["aliased"] > 0   # the state is donated
  assert dry_run.compiled_flops(compiled) == pytest.approx(plan.flops_per_device, rel=1e-6)
  new_state, metrics = compiled(state, batch, rng)
  assert int(new_state.step) == 1 and float(metrics["loss"][0]) > 0

  # Per device: each device's program does about half of the whole step's work (the
  # unpartitioned program's count, from the lowering).
  whole = float(lowered.cost_analysis()["flops"])
  assert plan.flops_per_step == pytest.approx(whole, rel=0.1), (plan.flops_per_step, whole)
  ratio = plan.flops_per_step / plan.rule_flops
  assert abs(ratio - 1) <= RULE_TOLERANCE, ratio
  assert plan.rule_flops == 6 * count * 8 * 32
  assert plan.step_seconds == pytest.approx(plan.flops_per_device / 1e12)


@pytest.mark.slow
def test_main_dry_run_prints_the_plan_and_touches_nothing(tmp_path):
  """main.py --dry_run on 2 simulated devices (slow: a subprocess that compiles)."""
  workdir = tmp_path / "w"
  result = main_runner.run(str(workdir), "--dry_run", "--devices=2", "--peak_flops=1e12",
                           timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.splitlines()
  assert lines[1].startswith("dry run: compiling the train step for 2 device(s)"), lines
  for prefix in ("mesh: {'data': 2, 'fsdp': 1, 'tensor': 1} on 2 cpu device(s)",
                 "parameters: ", "tokens per step: 256 (batch 8)", "FLOPs per step (compiled): ",
                 "FLOPs per step (6N rule): ", "memory per device (compiled): ",
                 "step time at 1e+12 FLOP/s per device: ", "compiled in "):
    assert any(l.startswith(prefix) for l in lines), (prefix, lines)
  assert not os.path.exists(workdir)


@pytest.mark.slow
def test_dry_run_compiles_every_registered_objective():
  """Every registered objective's small config plans on a (2, 2, 1) mesh (slow: one compile
  per objective, ~5-30 s each)."""
  from plm_jax.data import paths
  from plm_jax.objectives.base import registered
  from plm_jax.train import dry_run
  configs = {k: c for k, (_, c) in main_runner.configs_by_objective().items()}
  missing = sorted(set(registered()) - set(configs))
  assert not missing, f"objectives without a configs/*.py file: {missing}"
  for name, config in sorted(configs.items()):
    if name in ("glue", "squad") and not (os.path.isdir(paths.data_dir())
                                          and paths.minilm_model_dir()):
      continue   # fine-tuning configs read the GLUE / SQuAD data and a Hugging Face model
    config.train.batch_size = 8
    config.mesh.shape = (2, 2, 1)
    plan = dry_run.plan(config, jax.devices()[:4], peak_flops=1e12)
    assert plan.params > 0 and plan.flops_per_device > 0, name
    assert plan.memory["total"] > plan.param_bytes / 4, name
