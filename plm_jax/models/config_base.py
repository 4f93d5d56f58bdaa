"""What every family's frozen model config dataclass shares: building from a dict with
unknown keys named, and `replace`."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping


class ModelConfig:
  """Mixin for `@dataclasses.dataclass(frozen=True)` model configs."""

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
      raise ValueError(f"config.model: unknown key(s) {unknown} for {cls.__name__}; "
                       f"known: {sorted(names)}")
    return cls(**dict(d))

  def replace(self, **kw):
    return dataclasses.replace(self, **kw)
