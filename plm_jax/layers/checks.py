"""Range checks of integer inputs (token ids, token types) with the offending id and position.

  first_out_of_range(values, size) -> (index, value) or None      host numpy
  check_ids(name, ids, size)        ValueError for concrete arrays; under jit a host callback
                                    that raises (the run stops with the same message)

An id outside [0, size) would otherwise read a clamped row (jnp.take clips -1 to the
last row) or produce NaN; models call check_ids when their config asks for checked
inputs, the trainer checks every batch on the host.
"""
from __future__ import annotations

from typing import Optional, Tuple

import jax
import numpy as np


def first_out_of_range(values, size: int) -> Optional[Tuple[Tuple[int, ...], int]]:
  """(index, value) of the first element outside [0, size), or None."""
  values = np.asarray(values)
  bad = (values < 0) | (values >= size)
  if not bad.any():
    return None
  index = tuple(int(i) for i in np.argwhere(bad)[0])
  return index, int(values[index])


def out_of_range_message(name: str, index: Tuple[int, ...], value: int, size: int,
                         what: str = "") -> str:
  where = f"{name}[{', '.join(map(str, index))}]"
  position = f" at example {index[0]}, position {index[-1]}" if len(index) == 2 else ""
  return (f"{where} = {value}{position} is out of range [0, {size})"
          f"{' (' + what + ')' if what else ''}")


def check_ids(name: str, ids, size: int, what: str = "") -> None:
  """Raises ValueError naming the first id outside [0, size) and its position."""
  def host(values):
    found = first_out_of_range(values, size)
    if found is not None:
      raise ValueError(out_of_range_message(name, *found, size, what))

  if isinstance(ids, jax.core.Tracer):
    jax.debug.callback(host, ids)
  else:
    host(np.asarray(ids))
