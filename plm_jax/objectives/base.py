"""The objective contract and registry: the one place a family or task plugs in.

An objective owns everything specific to one training signal, so the trainer
never has to know it:
  * its config sections (`SECTIONS`: name -> frozen dataclass), converted and
    checked once when it is built, with its own defaults;
  * the model it trains (backbone + heads) and its fresh parameters, and
    optionally initial parameters from a pretrained / imported checkpoint;
  * the data: its seqio task(s) and feature converter, and so the batch spec;
  * its loss and metrics; optionally predictions for evaluation with metric
    functions computed on the host over the whole eval set, decoding, and
    state carried from step to step;
  * what is exported at the end (one model, or several trained together).

Metrics convention: `loss_fn` returns `metrics` as a dict name -> (sum, weight)
pairs of float32 scalars, so that they add up exactly across gradient
accumulation micro-batches, devices and eval batches; the reported value is
sum / weight.

Evaluation batches carry an extra feature `example_mask` (float32 [B], 1 for a
real example, 0 for padding that fills the last partial batch): losses and
predictions must give padded rows no weight (see `example_weights`).
"""
from __future__ import annotations

import abc
import math
from typing import Any, ClassVar, Dict, Mapping, Optional, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from plm_jax import configlib
from plm_jax.objectives import flops as flops_lib

Metrics = Dict[str, Tuple[jax.Array, jax.Array]]
Batch = Mapping[str, jax.Array]
EXAMPLE_MASK = "example_mask"

_REGISTRY: Dict[str, type] = {}


def register(name: str):
  """Class decorator: makes an Objective available as config.objective=name."""
  def deco(cls):
    if name in _REGISTRY and _REGISTRY[name] is not cls:
      raise ValueError(f"objective {name!r} registered twice")
    _REGISTRY[name] = cls
    cls.name = name
    return cls
  return deco


def registered() -> Tuple[str, ...]:
  import plm_jax.objectives  # noqa: F401  pylint: disable=import-outside-toplevel
  # The fine-tuning objectives live in plm_jax.finetune (they build on plm_jax.objectives,
  # so that package cannot import them while it initialises).
  import plm_jax.finetune.objectives  # noqa: F401  pylint: disable=import-outside-toplevel
  return tuple(sorted(_REGISTRY))


def get_objective(config: ml_collections.ConfigDict) -> "Objective":
  """Looks up config.objective once and builds it (which checks its sections)."""
  name = config.get("objective")
  if name not in registered():
    raise configlib.ConfigError(f"config.objective={name!r}: unknown objective; known: "
                                f"{list(registered())}")
  return _REGISTRY[name].variant(config)(config)


def example_weights(batch: Batch) -> jax.Array:
  """float32 [B]: the batch's example_mask, or ones for a batch without padding."""
  first = next(iter(batch.values()))
  if EXAMPLE_MASK in batch:
    return batch[EXAMPLE_MASK].astype(jnp.float32)
  return jnp.ones((first.shape[0],), jnp.float32)


class Objective(abc.ABC):
  """Base class. Built with the whole run ConfigDict; converts its SECTIONS once.

  Subclasses set `SECTIONS` (config section -> frozen dataclass, see
  plm_jax.configlib) and `family` (the model family, recorded in exports), and
  implement make_model, init_params, loss_fn and get_dataset. The parsed
  sections are `self.sections[name]`.
  """
  name: ClassVar[str] = ""
  family: ClassVar[str] = ""
  SECTIONS: ClassVar[Mapping[str, type]] = {}
  # Batch features whose dimension 1 may be shorter than batch_spec's from batch to
  # batch (length-bucketed data): the step compiles once per length.
  variable_length_features: ClassVar[Tuple[str, ...]] = ()

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self.seed = int(config.get("seed", 0))
    self.sections: Dict[str, Any] = {
        name: configlib.from_config(cls, config.get(name), f"config.{name}")
        for name, cls in self.SECTIONS.items()}

  @classmethod
  def default_config(cls) -> ml_collections.ConfigDict:
    """A complete run config for this objective: its sections' defaults plus the trainer's."""
    from plm_jax.train.config import default_sections  # pylint: disable=import-outside-toplevel
    c = default_sections()
    c.objective = cls.name
    c.seed = 0
    for name, section in cls.SECTIONS.items():
      c[name] = configlib.defaults(section)
    return c

  @classmethod
  def variant(cls, config: ml_collections.ConfigDict) -> type:
    """The class that runs `config` under this objective's name: cls, or a subclass that an
    objective hands some configs to (glue with model.family elmo: the feature-based ELMo)."""
    del config
    return cls

  def check_run(self, run) -> None:
    """Checks that involve the trainer's sections too (run: train.config.RunConfig)."""
    del run

  # ---- model ----------------------------------------------------------------------------
  @abc.abstractmethod
  def make_model(self):
    """The flax module trained by this objective (backbone + heads)."""

  @abc.abstractmethod
  def init_params(self, rng: jax.Array) -> Any:
    """Fresh parameters (the 'params' collection; leaves may be logically boxed)."""

  def initial_params(self) -> Optional[Mapping]:
    """Parameters to start from instead of fresh ones (host arrays, nested dicts), or None.

    May hold only part of the tree (a pretrained backbone without the task's
    heads): the trainer keeps the fresh values for the rest, checks every
    shape, and places the arrays in the sharded layout. See
    `load_pretrained_params` for reading a Hugging Face directory or an export.
    """
    return None

  def export_models(self, params: Any) -> Dict[str, Tuple[Any, Any]]:
    """What to export at the end: subdirectory -> (model config dataclass, params).

    '' is the export directory itself. An objective that trains several
    modules together returns one entry each. Default: nothing when the
    objective has no `model_config()`.
    """
    model_config = getattr(self, "model_config", None)
    if model_config is None:
      return {}
    return {"": (model_config(), params)}

  def vocabulary(self):
    """The run's vocabulary (a seqio.Vocabulary), whose files are exported with the model
    (plm_jax.convert.export.save_tokenizer); None: no tokenizer to export."""
    return None

  # ---- data -----------------------------------------------------------------------------
  @abc.abstractmethod
  def get_dataset(self, split: str, batch_size: int, seed: int, shard_index: int = 0,
                  num_shards: int = 1, num_epochs: Optional[int] = None):
    """A tf.data.Dataset of host-local batches (dicts of fixed-shape tensors).

    split 'train' (repeated, drop_remainder) or 'validation' (num_epochs=1: a
    finite stream whose last batch may be partial; the trainer pads it). The
    stream is deterministic given (seed, shard): the trainer resumes by
    skipping already-consumed batches.
    """

  def feature_converter(self):
    """The seqio FeatureConverter the objective's batches come from (or None)."""
    return None

  def feature_lengths(self) -> Mapping[str, int]:
    """Task feature lengths for the converter (e.g. {'inputs': 128})."""
    return {}

  def batch_spec(self, batch_size: int) -> Dict[str, jax.ShapeDtypeStruct]:
    """Shapes and dtypes of one global batch, derived from the converter's model features."""
    converter = self.feature_converter()
    if converter is None:
      raise NotImplementedError(f"{type(self).__name__}: define feature_converter() or "
                                "batch_spec()")
    lengths = converter.get_model_feature_lengths(self.feature_lengths())
    spec = {}
    for name, feature in converter.MODEL_FEATURES.items():
      shape = (batch_size,) + ((lengths[name],) if feature.rank == 1 else ())
      spec[name] = jax.ShapeDtypeStruct(shape, jnp.dtype(feature.dtype.as_numpy_dtype))
    return spec

  def tokens_per_batch(self, spec: Mapping[str, jax.ShapeDtypeStruct]) -> int:
    """Tokens one global batch of `spec` carries, for the tokens/s the trainer reports:
    the input_ids grid (padding included), or one per example without input_ids."""
    if "input_ids" in spec:
      return int(math.prod(spec["input_ids"].shape))
    return int(next(iter(spec.values())).shape[0])

  def forward_flops_per_example(self, lookups: bool = True) -> Optional[float]:
    """Forward FLOPs of one training example (the network and its loss as the train step
    runs them), counted as the ELECTRA paper counts them (plm_jax.objectives.flops and
    flops_families), or None. lookups=False counts embedding lookups as free gathers
    instead of one-hot products (what XLA's cost analysis sees; tests compare with it)."""
    del lookups
    return None

  def train_flops_per_example(self) -> Optional[float]:
    """Training FLOPs (forward + backward) of one example: flops.TRAIN_FACTOR x
    forward_flops_per_example(), or None; the trainer reports the running total as
    `train_flops` so that runs can be compared at equal compute."""
    forward = self.forward_flops_per_example()
    return None if forward is None else flops_lib.TRAIN_FACTOR * forward

  def input_ranges(self) -> Dict[str, int]:
    """Batch feature -> exclusive upper bound of its integer values (e.g. input_ids ->
    vocab_size); the trainer checks every batch against them on the host."""
    return {}

  # ---- loss -----------------------------------------------------------------------------
  @abc.abstractmethod
  def loss_fn(self, params: Any, batch: Batch, rng: Optional[jax.Array],
              deterministic: bool, normalizers: Optional[Dict[str, jax.Array]] = None
              ) -> Tuple[jax.Array, Metrics]:
    """Mean loss for the batch and its metrics as (sum, weight) pairs."""

  def loss_normalizers(self, batch: Batch) -> Optional[Dict[str, jax.Array]]:
    """Denominators of the loss's means, computed from a whole batch, or None.

    For a loss that is a sum of means over different items (BERT: MLM over
    masked tokens + NSP over examples), gradient accumulation computes these
    once on the global batch and passes them to `loss_fn(..., normalizers=)`
    for every micro-batch, so the micro-batch losses add up to the whole
    batch's. None: the step weights each micro-batch by its 'loss' metric's
    weight instead, which is exact for a loss that is one mean.
    """
    del batch
    return None

  # ---- state carried between steps ------------------------------------------------------
  def init_carry(self, batch_size: int) -> Any:
    """State carried from one train step to the next (XLNet memory, LSTM state), or None.

    A pytree of arrays; leaves whose leading dimension is the global batch are
    split over the data axes, the rest replicated. It is checkpointed and
    restored with the train state. Evaluation calls `loss_fn` (no carry), and
    gradient accumulation is refused for an objective that carries state.
    """
    del batch_size
    return None

  def loss_fn_with_carry(self, params: Any, batch: Batch, rng: Optional[jax.Array],
                         deterministic: bool, carry: Any,
                         normalizers: Optional[Dict[str, jax.Array]] = None
                         ) -> Tuple[jax.Array, Metrics, Any]:
    """(loss, metrics, new carry). Objectives with carried state override this."""
    extra = {} if normalizers is None else {"normalizers": normalizers}
    loss, metrics = self.loss_fn(params, batch, rng, deterministic, **extra)
    return loss, metrics, carry

  # ---- evaluation -----------------------------------------------------------------------
  def predict_fn(self, params: Any, batch: Batch) -> Optional[Dict[str, jax.Array]]:
    """Per-example predictions for evaluation (jit-compiled; arrays [B, ...]), or None.

    Whatever `compute_metrics` needs, labels included. A generative objective
    returns decoded tokens here (see `decode`). Rows of padding are dropped by
    the trainer before `compute_metrics` sees them.
    """
    del params, batch
    return None

  def compute_metrics(self, predictions: Dict[str, np.ndarray]) -> Dict[str, float]:
    """Host-side metrics over the whole eval set (every example exactly once)."""
    del predictions
    return {}

  def decode(self, params: Any, batch: Batch, rng: Optional[jax.Array] = None,
             max_length: Optional[int] = None) -> jax.Array:
    """Autoregressive generation for the batch's prompts (generative objectives)."""
    raise NotImplementedError(f"objective {self.name!r} does not decode")

  def lr_scales(self, params: Any, decay: float) -> Any:
    """Per-parameter learning-rate factors for config.optimizer.layer_decay=decay < 1 (a
    tree like `params`, e.g. decay ** (layers above)); None: the objective has none."""
    del params, decay
    return None

  def frozen_params(self, params: Any) -> Any:
    """A tree like `params` of bools, True for a parameter the optimizer must leave as it is
    (no update, no weight decay, no optimizer state), or None: every parameter trains."""
    del params
    return None

  def finalize(self, workdir: str, predict) -> Dict[str, str]:
    """After training: write the objective's outputs (test-set predictions, ...) under
    workdir; `predict(split)` gives the predictions over a whole split, with the best
    params when config.train.best_metric is set. Returns name -> path written."""
    del workdir, predict
    return {}

  @property
  def has_predictions(self) -> bool:
    return type(self).predict_fn is not Objective.predict_fn


class ConfiguredVocabulary:
  """vocabulary() built once from the `data.vocab` section (tasks, the model's size and the
  export share it); vocab_size() is the vocabulary's, or the size fixed at construction
  (shape-only uses: tests, dry runs) without building it.

  Mixed into objectives before Objective; the objective sets `self.data` and calls
  `self.init_vocabulary(vocab_size)`. build_vocabulary() is the hook for a family whose
  vocabulary is not plm_jax.data.vocab.get_vocabulary(data.vocab) (T5: + sentinel ids).
  """
  _vocabulary = None
  _fixed_vocab_size: Optional[int] = None

  def init_vocabulary(self, vocab_size: Optional[int] = None) -> None:
    self._fixed_vocab_size = vocab_size
    self._vocabulary = None

  def build_vocabulary(self):
    from plm_jax.data import vocab as vocab_lib  # pylint: disable=import-outside-toplevel
    return vocab_lib.get_vocabulary(self.data.vocab)

  def vocabulary(self):
    if self._vocabulary is None:
      self._vocabulary = self.build_vocabulary()
    return self._vocabulary

  def vocab_size(self) -> int:
    if self._fixed_vocab_size is not None:
      return int(self._fixed_vocab_size)
    return int(self.vocabulary().vocab_size)


def load_pretrained_params(path: str) -> Mapping:
  """Host params from a Hugging Face directory (config.json) or a plm_jax export."""
  import os  # pylint: disable=import-outside-toplevel
  if os.path.isfile(os.path.join(path, "config.json")):
    import plm_jax  # pylint: disable=import-outside-toplevel
    _, params = plm_jax.load_pretrained(path)
  else:
    from plm_jax.convert import export  # pylint: disable=import-outside-toplevel
    _, _, params = export.load_export(path)
  return jax.tree_util.tree_map(np.asarray, params)

