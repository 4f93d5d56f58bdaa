"""The seqio tasks of a run, registered once by name.

A task's name is its objective's prefix plus a hash of every config value
that shapes its examples, so two runs with the same data settings share one
registered task and a different setting gets another; nothing is removed or
re-registered.
"""
from __future__ import annotations

import hashlib
import json
import threading
from typing import Any, Callable, Dict

import seqio

_LOCK = threading.Lock()


def task_name(prefix: str, settings: Dict[str, Any]) -> str:
  blob = json.dumps(settings, sort_keys=True, default=str)
  return f"{prefix}_{hashlib.sha1(blob.encode()).hexdigest()[:12]}"


def get_or_register(name: str, make: Callable[[], Dict[str, Any]]) -> seqio.Task:
  """The task registered under `name`; registers it from make() -> TaskRegistry.add kwargs."""
  with _LOCK:
    if name in seqio.TaskRegistry.names():
      return seqio.TaskRegistry.get(name)
    return seqio.TaskRegistry.add(name, **make())
