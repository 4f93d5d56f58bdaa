"""Host batches -> global arrays, and evaluation over a whole eval set.

Evaluation reads one pass of the objective's 'validation' split (no
drop_remainder). The last partial batch is padded with zero rows and every
batch gets `example_mask` (1 real, 0 padding), so each example counts exactly
once: in the loss metrics (objectives weight rows by the mask) and in the
host-side metrics over the objective's predictions (padded rows are dropped
before `Objective.compute_metrics`). With several hosts, every host runs the
same number of batches (a host out of data feeds all-padding ones).
"""
from __future__ import annotations

from typing import Any, Dict, Iterator, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from plm_jax import sharding as sharding_lib
from plm_jax.objectives.base import EXAMPLE_MASK
from plm_jax.train import multihost, step as step_lib


def global_batch(local: Dict[str, np.ndarray], spec: Dict[str, jax.ShapeDtypeStruct],
                 sharding) -> Dict[str, jax.Array]:
  """Host-local numpy batch -> global jax.Arrays split over (data, fsdp).

  The global shape is the spec's batch size with the local batch's other
  dimensions (a bucketed feature's length varies from batch to batch)."""
  return {k: jax.make_array_from_process_local_data(
      sharding, np.asarray(local[k], dtype=s.dtype),
      (s.shape[0],) + tuple(np.shape(local[k])[1:])) for k, s in spec.items()}


def check_batch(local: Dict[str, Any], spec: Dict[str, jax.ShapeDtypeStruct],
                per_host: int, split: str, partial: bool = False,
                variable_length: Sequence[str] = ()) -> None:
  """One-line error when the data pipeline's batch does not fit the objective.

  Features in `variable_length` (Objective.variable_length_features) may be
  shorter than the spec in dimension 1 (length-bucketed batches)."""
  missing = sorted(set(spec) - set(local) - {EXAMPLE_MASK})
  if missing:
    raise ValueError(f"data ({split}): batch lacks feature(s) {missing}; has {sorted(local)}")
  for k, s in spec.items():
    if k not in local:
      continue
    shape = tuple(np.shape(local[k]))
    want = (per_host,) + tuple(s.shape[1:])
    if k in variable_length and len(shape) == len(want) and 0 < shape[1] <= want[1]:
      want = want[:1] + shape[1:2] + want[2:]
    if shape != want and not (partial and shape[1:] == want[1:] and 0 < shape[0] <= per_host):
      raise ValueError(f"data ({split}): feature {k} has shape {shape}, expected {want}")


def check_ranges(local: Dict[str, Any], ranges: Dict[str, int], split: str, step: int) -> None:
  """One-line error naming the feature, id and position of a value outside [0, bound)."""
  from plm_jax.layers import checks  # pylint: disable=import-outside-toplevel
  for name, bound in ranges.items():
    if name in local:
      found = checks.first_out_of_range(local[name], bound)
      if found is not None:
        raise ValueError(f"data ({split}, step {step}): "
                         + checks.out_of_range_message(name, *found, bound))


def host_iterator(dataset, split: str) -> Iterator[Dict[str, np.ndarray]]:
  it = iter(dataset.as_numpy_iterator())
  while True:
    try:
      yield next(it)
    except StopIteration:
      raise ValueError(f"data ({split}): the dataset ran out of batches") from None


def pad_batch(local: Optional[Dict[str, np.ndarray]], spec: Dict[str, jax.ShapeDtypeStruct],
              per_host: int) -> Dict[str, np.ndarray]:
  """Zero rows up to per_host, plus example_mask; None -> an all-padding batch."""
  rows = 0 if local is None else len(next(iter(local[k] for k in spec if k in local)))
  out = {}
  for k, s in spec.items():
    if k == EXAMPLE_MASK:
      continue
    rest = tuple(s.shape[1:]) if local is None else tuple(np.shape(local[k])[1:])
    full = np.zeros((per_host,) + rest, s.dtype)
    if rows:
      full[:rows] = local[k]
    out[k] = full
  out[EXAMPLE_MASK] = (np.arange(per_host) < rows).astype(np.float32)
  return out


def _any_host(flag: bool) -> bool:
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  return bool(np.any(multihost_utils.process_allgather(np.asarray(flag))))


def _to_host(tree: Any) -> Any:
  if jax.process_count() == 1:
    return jax.device_get(tree)
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  return multihost_utils.process_allgather(tree, tiled=True)


class Evaluator:
  """Loss metrics and host-side prediction metrics over the objective's eval set."""

  def __init__(self, setup, per_host: int, spec: Dict[str, jax.ShapeDtypeStruct],
               split: str = "validation"):
    self.objective = setup.objective
    self.split = split
    self.variable_length = tuple(getattr(self.objective, "variable_length_features", ()))
    self.per_host = per_host
    self.spec = dict(spec)
    batch = next(iter(spec.values())).shape[0]
    self.spec[EXAMPLE_MASK] = jax.ShapeDtypeStruct((batch,), jnp.float32)
    self.sharding = sharding_lib.batch_sharding(setup.mesh)
    self.dataset = self.objective.get_dataset(
        split, per_host, setup.run.seed, jax.process_index(), jax.process_count(),
        num_epochs=1)
    param_sh = setup.state_shardings.params
    self.eval_fn = step_lib.jit_eval_step(self.objective, setup.mesh, param_sh, setup.rules)
    self.predict_fn = (step_lib.jit_predict_step(self.objective, setup.mesh, param_sh,
                                                 setup.rules)
                       if self.objective.has_predictions else None)
    self._passes = 0   # evaluate() calls: names the multi-host barrier of each

  def batches(self, max_batches: int = 0) -> Iterator[Dict[str, np.ndarray]]:
    """Padded host batches of one pass (at most max_batches when > 0)."""
    it = iter(self.dataset.as_numpy_iterator())
    count = 0
    while max_batches <= 0 or count < max_batches:
      local = next(it, None)
      if not _any_host(local is not None):
        return
      if local is not None:
        check_batch(local, self.spec, self.per_host, self.split, partial=True,
                    variable_length=self.variable_length)
      yield pad_batch(local, self.spec, self.per_host)
      count += 1

  def evaluate(self, params: Any, max_batches: int = 0, losses: bool = True
               ) -> Dict[str, float]:
    """Loss metrics (unless losses=False) and the objective's metrics over its predictions."""
    totals, predictions, examples = None, [], 0
    self._passes += 1
    for i, local in enumerate(self.batches(max_batches)):
      batch = global_batch(local, self.spec, self.sharding)
      if i == 0 and self._passes == 1:   # several hosts: all compiled before the first
        # collective; later passes reuse jit's compiled functions (lower().compile() would
        # compile again every pass)
        name = f"{self.split}_{self._passes}"
        if losses:
          multihost.compile_together(self.eval_fn, params, batch, name="eval_" + name)
        if self.predict_fn is not None:
          multihost.compile_together(self.predict_fn, params, batch, name="predict_" + name)
      if losses:
        m = self.eval_fn(params, batch)
        totals = m if totals is None else jax.tree_util.tree_map(jnp.add, totals, m)
      if self.predict_fn is not None:
        out, mask = _to_host((self.predict_fn(params, batch), batch[EXAMPLE_MASK]))
        keep = np.asarray(mask) > 0
        predictions.append({k: np.asarray(v)[keep] for k, v in out.items()})
      examples += int(local[EXAMPLE_MASK].sum())
    if not examples and not _count_all(examples):
      raise ValueError(f"data ({self.split}): the eval set is empty")
    metrics = step_lib.metrics_to_host(totals) if totals is not None else {}
    if self.predict_fn is not None:
      self.last_predictions = {k: np.concatenate([p[k] for p in predictions])
                               for k in predictions[0]}
      metrics.update(self.objective.compute_metrics(self.last_predictions))
    metrics["examples"] = float(_count_all(examples))
    return metrics

  def predictions(self, params: Any) -> Dict[str, np.ndarray]:
    """The objective's predictions over the whole split (every example once)."""
    self.evaluate(params, losses=False)
    return self.last_predictions


def _count_all(local_count: int) -> int:
  if jax.process_count() == 1:
    return local_count
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
  return int(np.sum(multihost_utils.process_allgather(np.asarray(local_count))))
