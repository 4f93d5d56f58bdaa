"""The seqio tasks of a run, registered once by name.

A task's name is its objective's prefix plus a hash of every config value
that shapes its examples, so two runs with the same data settings share one
registered task and a different setting gets another; nothing is removed or
re-registered.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
from typing import Any, Callable, Dict

import seqio

_LOCK = threading.Lock()


class _NoUncachedSourceWarning(logging.Filter):
  """Drops seqio's warning, logged on every shuffled read of a FunctionDataSource, that an
  uncached source may shuffle differently after a restart. It does not apply here: the
  builtin and text sources (plm_jax.data.sources) hold every document in memory, their
  order is a function of the seed, and the trainer resumes by skipping the batches it
  consumed, so a restart sees the same stream. Only that record, from that module, goes."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not (record.pathname.endswith("dataset_providers.py")
                and str(record.msg).startswith("Using an uncached FunctionDataset"))


_FILTER = _NoUncachedSourceWarning()
logging.getLogger("absl").addFilter(_FILTER)   # seqio logs through absl.logging


def task_name(prefix: str, settings: Dict[str, Any]) -> str:
  blob = json.dumps(settings, sort_keys=True, default=str)
  return f"{prefix}_{hashlib.sha1(blob.encode()).hexdigest()[:12]}"


def get_or_register(name: str, make: Callable[[], Dict[str, Any]]) -> seqio.Task:
  """The task registered under `name`; registers it from make() -> TaskRegistry.add kwargs."""
  with _LOCK:
    if name in seqio.TaskRegistry.names():
      return seqio.TaskRegistry.get(name)
    return seqio.TaskRegistry.add(name, **make())
