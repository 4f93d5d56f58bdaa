"""Keeping the processes of a multi-host run in step (a no-op with one process).

On CPU, JAX's cross-process collectives (gloo) give a peer 30 s to join a
collective's first use; on a busy machine one process may finish compiling the
train step minutes after another. `compile_together` compiles a jitted function
ahead of its first call and then waits at a barrier of the coordination service
(not a collective), so the first collective starts on every process at once.
"""
from __future__ import annotations

from typing import Any

import jax

BARRIER_TIMEOUT_S = 3600   # a peer that died is caught by the heartbeat long before this


def barrier(name: str, timeout_s: int = BARRIER_TIMEOUT_S) -> None:
  """Every process waits here until all have arrived."""
  if jax.process_count() == 1:
    return
  from jax._src import distributed  # pylint: disable=import-outside-toplevel
  client = distributed.global_state.client
  if client is None:   # several processes without jax.distributed (not expected)
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
    multihost_utils.sync_global_devices(name)
    return
  client.wait_at_barrier(name, timeout_in_ms=int(timeout_s * 1000))


def compile_together(fn: Any, *args: Any, name: str) -> None:
  """Compiles jitted `fn` for `args` (a later fn(*args) reuses it), then waits for every
  process to have done so."""
  if jax.process_count() == 1:
    return
  fn.lower(*args).compile()
  barrier(f"plm_jax_compiled_{name}")
