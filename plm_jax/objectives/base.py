"""The objective contract and registry.

An objective owns what is specific to one training signal: the model it
trains (backbone + heads), the batch format it consumes, its loss and metrics,
and the data pipeline that produces its batches. The trainer only ever talks
to an `Objective`; adding a family or objective never edits the trainer.

Metrics convention: `loss_fn` returns `metrics` as a dict name -> (sum, weight)
pairs of float32 scalars, so that they add up exactly across gradient
accumulation micro-batches, devices and eval batches; the reported value is
sum / weight.
"""
from __future__ import annotations

import abc
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import jax
import ml_collections

Metrics = Dict[str, Tuple[jax.Array, jax.Array]]
Batch = Mapping[str, jax.Array]

_REGISTRY: Dict[str, type] = {}


def register(name: str) -> Callable[[type], type]:
  """Class decorator: makes an Objective available as config.objective=name."""
  def deco(cls):
    if name in _REGISTRY and _REGISTRY[name] is not cls:
      raise ValueError(f"objective {name!r} registered twice")
    _REGISTRY[name] = cls
    cls.name = name
    return cls
  return deco


def get_objective(config: ml_collections.ConfigDict) -> "Objective":
  """Looks up config.objective once and builds it."""
  # Importing the package registers the built-in objectives.
  import plm_jax.objectives  # noqa: F401  pylint: disable=import-outside-toplevel
  name = config.objective
  if name not in _REGISTRY:
    raise ValueError(f"config.objective: unknown objective {name!r}; known: {sorted(_REGISTRY)}")
  return _REGISTRY[name](config)


class Objective(abc.ABC):
  """Base class. Subclasses are constructed with the whole run ConfigDict."""
  name: str = ""

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  @abc.abstractmethod
  def make_model(self, deterministic: bool):
    """The flax module trained by this objective (backbone + heads)."""

  @abc.abstractmethod
  def batch_spec(self, batch_size: int) -> Dict[str, jax.ShapeDtypeStruct]:
    """Shapes and dtypes of one global batch (used for init and shardings)."""

  @abc.abstractmethod
  def init_params(self, rng: jax.Array) -> Any:
    """Fresh parameters (the 'params' collection), from a dummy batch."""

  @abc.abstractmethod
  def loss_fn(self, params: Any, batch: Batch, rng: Optional[jax.Array],
              deterministic: bool) -> Tuple[jax.Array, Metrics]:
    """Mean loss for the batch and its metrics as (sum, weight) pairs.

    An objective that defines `loss_normalizers` also takes a keyword
    argument `normalizers` (that method's dict, or None for this batch's own).
    """

  def loss_normalizers(self, batch: Batch) -> Optional[Dict[str, jax.Array]]:
    """Denominators of the loss's means, computed from a whole batch, or None.

    For a loss that is a sum of means over different items (BERT: MLM over
    masked tokens + NSP over examples), gradient accumulation computes these
    once on the global batch and passes them to `loss_fn(..., normalizers=)`
    for every micro-batch; the micro-batch losses (and their gradients) then
    add up to the whole batch's exactly. None (the default): the step weights
    each micro-batch by its 'loss' metric's weight instead, which is exact for
    a loss that is one mean.
    """
    del batch
    return None

  @abc.abstractmethod
  def get_dataset(self, split: str, batch_size: int, seed: int,
                  shard_index: int = 0, num_shards: int = 1,
                  num_epochs: Optional[int] = None):
    """A tf.data.Dataset of host-local batches (dicts of fixed-shape tensors).

    split is 'train' or 'validation'. The stream is deterministic given
    (seed, shard): the trainer resumes by skipping already-consumed batches.
    """
