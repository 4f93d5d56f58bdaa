"""Device mesh, logical axis rules and sharded initialisation.

Every parameter carries logical axis names (`nn.with_logical_partitioning` in
the model); one rules table in the config (`config.mesh.rules`) maps logical
names to the mesh axes ('data', 'fsdp', 'tensor'). Parameters are created
directly in their sharded layout: `eval_shape(init)` -> logical partition specs
-> mesh shardings -> `jit(init, out_shardings=...)`.

A dimension that does not divide evenly over its mesh axes is replicated
instead (with a log line), so e.g. 2 attention heads on a 4-way tensor axis
still run.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple

from absl import logging
import flax.linen as nn
import jax
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

AXIS_NAMES = ("data", "fsdp", "tensor")
# Batch dimension of every input and activation: split over both data axes.
BATCH_AXES = ("data", "fsdp")


def mesh_shape(mesh_config: Any, num_devices: int) -> Tuple[int, ...]:
  """mesh_config.shape (config.mesh) with one -1 resolved to the remaining devices."""
  shape = tuple(int(s) for s in mesh_config.shape)
  names = tuple(mesh_config.axis_names)
  if names != AXIS_NAMES:
    raise ValueError(f"config.mesh.axis_names={names}: must be {AXIS_NAMES}")
  if len(shape) != len(AXIS_NAMES):
    raise ValueError(f"config.mesh.shape={shape}: needs {len(AXIS_NAMES)} entries {AXIS_NAMES}")
  if shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
    raise ValueError(f"config.mesh.shape={shape}: entries must be positive, with at most one -1")
  known = math.prod(s for s in shape if s != -1)
  if -1 in shape:
    if num_devices % known:
      raise ValueError(f"config.mesh.shape={shape}: {num_devices} devices are not divisible "
                       f"by the fixed axes' product {known}{_cpu_hint(known, num_devices)}")
    shape = tuple(num_devices // known if s == -1 else s for s in shape)
  if math.prod(shape) != num_devices:
    raise ValueError(f"config.mesh.shape={tuple(mesh_config.shape)}: product {math.prod(shape)} "
                     f"does not match jax.device_count()={num_devices}"
                     f"{_cpu_hint(math.prod(shape), num_devices)}")
  return shape


def _cpu_hint(needed: int, num_devices: int) -> str:
  """How to get more devices on CPU, when the mesh needs more than there are."""
  if needed <= num_devices or jax.default_backend() != "cpu":
    return ""
  return (f"; on CPU, XLA_FLAGS=--xla_force_host_platform_device_count={needed} (set before "
          f"the program starts) simulates {needed} devices")


def make_mesh(mesh_config: Any, devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """The (data, fsdp, tensor) mesh over `devices` (default: all devices)."""
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(mesh_config, len(devices))
  try:
    grid = mesh_utils.create_device_mesh(shape, devices=devices)
  except (ValueError, NotImplementedError, AssertionError):
    # Topology-aware placement is not available for every platform/shape.
    grid = np.asarray(devices, dtype=object).reshape(shape)
  return Mesh(grid, AXIS_NAMES)


def axis_rules(mesh_config: Any) -> Tuple[Tuple[str, Any], ...]:
  """mesh_config.rules (config.mesh.rules) as the tuple-of-pairs flax's logical API expects."""
  rules = []
  for entry in mesh_config.rules:
    if len(entry) != 2:
      raise ValueError(f"config.mesh.rules: entry {entry!r} must be (logical_name, mesh_axes)")
    name, axes = entry
    if isinstance(axes, list):
      axes = tuple(axes)
    for a in (axes if isinstance(axes, tuple) else (axes,)):
      if a is not None and a not in AXIS_NAMES:
        raise ValueError(f"config.mesh.rules: {name!r} -> unknown mesh axis {a!r}; "
                         f"known: {AXIS_NAMES}")
    rules.append((str(name), axes))
  return tuple(rules)


def _axis_size(mesh: Mesh, axes: Any) -> int:
  if axes is None:
    return 1
  if isinstance(axes, str):
    axes = (axes,)
  return math.prod(mesh.shape[a] for a in axes)


def fit_spec(spec: P, shape: Sequence[int], mesh: Mesh, name: str = "") -> P:
  """Replaces mesh axes of dims that do not divide evenly with None (replicated)."""
  entries = list(spec) + [None] * (len(shape) - len(spec))
  fitted = []
  for dim, axes in zip(shape, entries):
    size = _axis_size(mesh, axes)
    if size > 1 and dim % size:
      logging.info("sharding: %s dim %d (size %d) not divisible by mesh axes %s (size %d); "
                   "replicating it", name or "array", len(fitted), dim, axes, size)
      axes = None
    fitted.append(axes)
  while fitted and fitted[-1] is None:
    fitted.pop()
  return P(*fitted)


def _path_name(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def logical_shardings(boxed_abstract: Any, mesh: Mesh, rules) -> Any:
  """NamedShardings for a tree of (possibly logically-boxed) abstract arrays.

  Unboxed leaves (no logical names) are replicated. The result has the
  structure of the *unboxed* tree.
  """
  logical_specs = nn.get_partition_spec(boxed_abstract)
  unboxed = nn.meta.unbox(boxed_abstract)

  def one(path, leaf, logical):
    mesh_spec = nn.logical_to_mesh_axes(tuple(logical), rules) if logical else P()
    return NamedSharding(mesh, fit_spec(mesh_spec, leaf.shape, mesh, _path_name(path)))

  return jax.tree_util.tree_map_with_path(
      one, unboxed, logical_specs, is_leaf=lambda x: isinstance(x, P))


def match_shardings(tree: Any, params: Any, param_shardings: Any, mesh: Mesh) -> Any:
  """Shardings for a tree that embeds copies of the params tree (optimizer state).

  A leaf whose key path ends with a parameter's key path and has its shape gets
  that parameter's sharding (Adam's mu/nu, ...); anything else is replicated.
  """
  by_path = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    by_path[tuple(path)] = (leaf.shape, None)
  flat_sh = jax.tree_util.tree_leaves(param_shardings)
  for (path, _), sh in zip(by_path.items(), flat_sh):
    by_path[path] = (by_path[path][0], sh)
  lengths = sorted({len(p) for p in by_path}, reverse=True)
  replicated = NamedSharding(mesh, P())

  def one(path, leaf):
    path = tuple(path)
    for n in lengths:
      if len(path) >= n and path[-n:] in by_path:
        shape, sh = by_path[path[-n:]]
        if tuple(shape) == tuple(leaf.shape):
          return sh
    return replicated

  return jax.tree_util.tree_map_with_path(one, tree)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Inputs: dim 0 split over ('data', 'fsdp'), the rest replicated."""
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())
