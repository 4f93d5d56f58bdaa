"""Helpers shared by the MLM pipeline tests: collect batches, undo the masking."""
import numpy as np


def take(ds, n=None):
  """The first n batches of a tf.data dataset (all when n is None), concatenated per key."""
  it = ds.as_numpy_iterator()
  out = list(it) if n is None else [b for _, b in zip(range(n), it)]
  return {k: np.concatenate([b[k] for b in out]) for k in out[0]}


def originals(b):
  """Input ids with the masked positions restored to their targets."""
  ids = b["input_ids"].copy()
  for i in range(len(ids)):
    w = b["masked_lm_weights"][i] > 0
    ids[i, b["masked_lm_positions"][i][w]] = b["masked_lm_ids"][i][w]
  return ids


def dataset(config, split, batch_size, seed, **kwargs):
  """The batches of config's objective (built from the whole run config, as the trainer does)."""
  from plm_jax.objectives.base import get_objective  # pylint: disable=import-outside-toplevel
  return get_objective(config).get_dataset(split, batch_size, seed, **kwargs)


def vocabulary(config):
  from plm_jax.objectives.base import get_objective  # pylint: disable=import-outside-toplevel
  return get_objective(config).vocabulary()
