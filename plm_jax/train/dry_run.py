"""Dry-run planning: what a config's train step costs on a mesh, before paying for one.

  python main.py --config=configs/bert.py:large --dry_run --devices=256 --peak_flops=275e12

builds the run exactly as the trainer does (`trainer.build_setup`: mesh, optimizer,
the state's shardings), takes the train step the loop runs (`trainer.jit_train_fn`)
and lowers it for abstract arguments (`trainer.abstract_step_args`: ShapeDtypeStructs
carrying the loop's shardings), then compiles it. Nothing is allocated: the
parameters exist only as `jax.eval_shape` results, and no data is read (the batch
is the objective's `batch_spec`).

Reported, per step:
  * parameter count, and the tokens of one global batch (batch x the longest int
    feature of each sequence input: input_ids, or encoder + decoder tokens);
  * FLOPs from the compiled program (`compiled.cost_analysis()`, which XLA
    counts per device for a partitioned program; x devices for the step) and by
    the 6N rule of thumb (6 x parameters x tokens: forward 2N, backward 4N per
    token; it ignores attention scores and counts embedding rows that a lookup
    reads for free);
  * per-device memory of the compiled program (`compiled.memory_analysis()`):
    arguments + outputs - donated (aliased) + temporaries;
  * the step time implied by a peak FLOP/s per device: compiled FLOPs per device /
    peak (a lower bound: 100% utilisation).

`--devices=N` simulates N CPU devices (jax_num_cpu_devices), so a pod's mesh can be
planned on a laptop; the figures are then XLA:CPU's (another backend fuses and
lays out buffers differently, so memory on a TPU differs somewhat; the FLOPs
do not depend on the backend much).
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Dict, Optional, Sequence

import jax
import ml_collections

from plm_jax.train import trainer

GIB = 1024 ** 3


@dataclasses.dataclass
class Plan:
  num_devices: int
  platform: str
  mesh: Dict[str, int]
  params: int
  param_bytes: int                  # parameters, all devices together (unsharded size)
  batch_size: int
  tokens_per_step: int
  flops_per_device: float           # compiled program (cost_analysis)
  rule_flops: float                 # 6 x params x tokens_per_step
  memory: Dict[str, int]            # per device, bytes (memory_analysis)
  compile_seconds: float
  peak_flops: Optional[float] = None   # per device, FLOP/s

  @property
  def flops_per_step(self) -> float:
    return self.flops_per_device * self.num_devices

  @property
  def memory_per_device(self) -> int:
    return self.memory["total"]

  @property
  def step_seconds(self) -> Optional[float]:
    if not self.peak_flops:
      return None
    return self.flops_per_device / self.peak_flops


def tokens_per_step(spec: Dict[str, jax.ShapeDtypeStruct]) -> int:
  """Tokens one global batch feeds the model: input_ids [B, L] -> B x L; an encoder-decoder
  batch (encoder_input_tokens, decoder_input_tokens) -> the sum of both; otherwise the
  batch size."""
  if "input_ids" in spec:
    return int(math.prod(spec["input_ids"].shape))
  token_features = [k for k in spec if k.endswith("_input_tokens")]
  if token_features:
    return int(sum(math.prod(spec[k].shape) for k in token_features))
  return int(next(iter(spec.values())).shape[0])


def memory_stats(compiled: Any) -> Dict[str, int]:
  """Per-device bytes of a compiled program: arguments, outputs, aliased (donated
  arguments reused as outputs), temporaries, generated code, and their total."""
  m = compiled.memory_analysis()
  if m is None:
    raise ValueError("this backend reports no memory analysis for compiled programs")
  out = {"arguments": int(m.argument_size_in_bytes), "outputs": int(m.output_size_in_bytes),
         "aliased": int(m.alias_size_in_bytes), "temporaries": int(m.temp_size_in_bytes),
         "code": int(m.generated_code_size_in_bytes)}
  out["total"] = (out["arguments"] + out["outputs"] - out["aliased"] + out["temporaries"]
                  + out["code"])
  return out


def compiled_flops(compiled: Any) -> float:
  """FLOPs of one run of a compiled program, per device (XLA's cost analysis)."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):   # older jax: one dict per partition
    cost = cost[0]
  if not cost or "flops" not in cost:
    raise ValueError("this backend reports no FLOP count for compiled programs")
  return float(cost["flops"])


def lower_train_step(setup: trainer.ShardedSetup):
  """The loop's jitted train step lowered for abstract arguments (under the trainer's mesh
  context, as the loop traces it)."""
  with trainer.mesh_context(setup.run, setup.mesh):
    return trainer.jit_train_fn(setup).lower(*trainer.abstract_step_args(setup))


def plan(config: ml_collections.ConfigDict, devices: Optional[Sequence[jax.Device]] = None,
         peak_flops: Optional[float] = None) -> Plan:
  """Builds, lowers and compiles the train step of `config` on `devices` (default: all)."""
  return plan_setup(trainer.build_setup(config, devices), peak_flops)


def plan_setup(setup: trainer.ShardedSetup, peak_flops: Optional[float] = None) -> Plan:
  """`plan` for a setup already built (trainer.build_setup)."""
  start = time.perf_counter()
  compiled = lower_train_step(setup).compile()
  seconds = time.perf_counter() - start
  params = setup.abstract_state.params
  leaves = jax.tree_util.tree_leaves(params)
  count = int(sum(math.prod(x.shape) for x in leaves))
  nbytes = int(sum(math.prod(x.shape) * x.dtype.itemsize for x in leaves))
  spec = setup.objective.batch_spec(setup.run.train.batch_size)
  tokens = tokens_per_step(spec)
  mesh_devices = setup.mesh.devices.flat
  return Plan(num_devices=setup.mesh.size, platform=next(iter(mesh_devices)).platform,
              mesh=dict(setup.mesh.shape), params=count, param_bytes=nbytes,
              batch_size=setup.run.train.batch_size, tokens_per_step=tokens,
              flops_per_device=compiled_flops(compiled), rule_flops=6.0 * count * tokens,
              memory=memory_stats(compiled), compile_seconds=seconds, peak_flops=peak_flops)


def _gib(n: float) -> str:
  """Bytes in the largest binary unit that keeps the value >= 1 (3 significant digits)."""
  for unit, size in (("GiB", GIB), ("MiB", 1024 ** 2), ("KiB", 1024)):
    if abs(n) >= size:
      return f"{n / size:.3g} {unit}"
  return f"{int(n)} B"


def format_plan(p: Plan) -> str:
  """The console report of a plan (one fact per line)."""
  m = p.memory
  lines = [
      f"mesh: {p.mesh} on {p.num_devices} {p.platform} device(s)",
      f"parameters: {p.params:,} ({_gib(p.param_bytes)})",
      f"tokens per step: {p.tokens_per_step:,} (batch {p.batch_size})",
      f"FLOPs per step (compiled): {p.flops_per_step:.4g} = {p.flops_per_device:.4g} per "
      f"device x {p.num_devices}",
      f"FLOPs per step (6N rule): {p.rule_flops:.4g} = 6 x {p.params:,} x "
      f"{p.tokens_per_step:,} tokens (compiled / rule = {p.flops_per_step / p.rule_flops:.3f})",
      f"memory per device (compiled): {_gib(m['total'])} = arguments {_gib(m['arguments'])} "
      f"+ outputs {_gib(m['outputs'])} - donated {_gib(m['aliased'])} + temporaries "
      f"{_gib(m['temporaries'])}" + (f" + code {_gib(m['code'])}" if m["code"] else ""),
  ]
  if p.step_seconds is not None:
    lines.append(f"step time at {p.peak_flops:.4g} FLOP/s per device: {p.step_seconds * 1e3:.4g} "
                 f"ms at 100% of peak ({p.step_seconds * 2e3:.4g} ms at 50%)")
  else:
    lines.append("step time: give --peak_flops (FLOP/s per device, e.g. 275e12 for a TPU v4 "
                 "chip in bfloat16)")
  lines.append(f"compiled in {p.compile_seconds:.1f} s")
  return "\n".join(lines)
