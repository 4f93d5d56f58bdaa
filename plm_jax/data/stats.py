"""Reference numbers computed from batches, for learning checks."""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np


def unigram_baseline_accuracy(batches: Iterable[Mapping[str, np.ndarray]]) -> float:
  """MLM accuracy of always predicting the most frequent target token.

  Counts masked_lm_ids where masked_lm_weights > 0 over `batches` and returns
  (count of the most frequent id) / (number of predictions). A model that
  learned anything beyond unigram statistics must beat this on the same data.
  """
  counts: dict = {}
  total = 0
  for batch in batches:
    ids = np.asarray(batch["masked_lm_ids"]).reshape(-1)
    weights = np.asarray(batch["masked_lm_weights"]).reshape(-1)
    values, n = np.unique(ids[weights > 0], return_counts=True)
    for v, c in zip(values.tolist(), n.tolist()):
      counts[v] = counts.get(v, 0) + c
    total += int((weights > 0).sum())
  if total == 0:
    raise ValueError("unigram_baseline_accuracy: the batches hold no masked prediction")
  return max(counts.values()) / total
