"""Config sections as frozen dataclasses, converted and checked once.

A run's `ml_collections.ConfigDict` has one section per owner: the trainer owns
`train`, `optimizer` and `mesh`; an objective owns its own (`model`, `data`,
`mlm`, ...). Each owner declares a section as a frozen dataclass whose fields
carry their defaults and constraints (`param(...)`), and converts it once:

  section = from_config(MlmConfig, config.mlm, "config.mlm")

Every problem is a one-line `ConfigError` (a ValueError) naming the key:
  config.mlm.mask_rate=1.5: must be < 1
  config.train.bogus: unknown key; known keys in config.train: [...]
A key left out of the ConfigDict takes the dataclass default.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Mapping, Optional, Sequence, Tuple

import ml_collections


class ConfigError(ValueError):
  """A config problem the user has to fix: one line naming the key."""


def param(default: Any = dataclasses.MISSING, *, choices: Optional[Sequence] = None,
          gt: Optional[float] = None, ge: Optional[float] = None, lt: Optional[float] = None,
          le: Optional[float] = None, doc: str = "") -> Any:
  """A dataclass field with its default and the constraints `from_config` checks."""
  meta = {"choices": tuple(choices) if choices is not None else None,
          "gt": gt, "ge": ge, "lt": lt, "le": le, "doc": doc}
  if isinstance(default, (list, dict)):
    raise TypeError("use a tuple (immutable) default")
  return dataclasses.field(default=default, metadata=meta)


def fail(key: str, value: Any, what: str) -> None:
  raise ConfigError(f"{key}={value!r}: {what}")


def _is_dataclass_type(tp) -> bool:
  return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def check_value(value: Any, tp: Any, key: str) -> Any:
  """Checks `value` against the annotation `tp` (one-line error naming `key`); returns it
  in that type (lists as tuples, ints as floats where a float is declared)."""
  origin = typing.get_origin(tp)
  if origin is typing.Union:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if value is None:
      return None
    return check_value(value, args[0], key)
  if _is_dataclass_type(tp):
    return from_config(tp, value, key)
  if tp is Any:
    return _freeze(value)
  if tp is bool:
    if not isinstance(value, bool):
      fail(key, value, "must be a bool (True/False)")
    return value
  if tp is int:
    if isinstance(value, bool) or not isinstance(value, int):
      fail(key, value, "must be an int")
    return int(value)
  if tp is float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      fail(key, value, "must be a number")
    return float(value)
  if tp is str:
    if not isinstance(value, str):
      fail(key, value, "must be a string")
    return value
  if origin in (tuple, Tuple) or tp is tuple:
    if not isinstance(value, (tuple, list)):
      fail(key, value, "must be a tuple")
    return _freeze(value)
  return value


def _freeze(value: Any) -> Any:
  """Lists (also nested, as ConfigDict overrides give them) -> tuples, so sections hash."""
  if isinstance(value, (list, tuple)):
    return tuple(_freeze(v) for v in value)
  if isinstance(value, (ml_collections.ConfigDict, dict)):
    return tuple(sorted((k, _freeze(v)) for k, v in dict(value).items()))
  return value


def _check_field(value: Any, meta: Mapping, key: str) -> None:
  if value is None:
    return
  if meta.get("choices") is not None and value not in meta["choices"]:
    fail(key, value, f"unknown; choose one of {list(meta['choices'])}")
  if isinstance(value, (int, float)) and not isinstance(value, bool):
    if isinstance(value, float) and not math.isfinite(value) and any(
        meta.get(b) is not None for b in ("gt", "ge", "lt", "le")):
      fail(key, value, "must be a finite number")
    for bound, ok, word in (("gt", lambda v, b: v > b, ">"), ("ge", lambda v, b: v >= b, ">="),
                            ("lt", lambda v, b: v < b, "<"), ("le", lambda v, b: v <= b, "<=")):
      b = meta.get(bound)
      if b is not None and not ok(value, b):
        fail(key, value, f"must be {word} {b}")


def from_config(cls: type, section: Any, prefix: str) -> Any:
  """ConfigDict/dict section -> frozen dataclass `cls`, every key checked.

  After the fields, a `check(self, prefix)` method on `cls` (if any) runs the
  checks that involve several fields.
  """
  if section is None:
    raise ConfigError(f"{prefix}: missing section")
  if not isinstance(section, (ml_collections.ConfigDict, Mapping)):
    fail(prefix, section, "must be a section (ConfigDict)")
  fields = {f.name: f for f in dataclasses.fields(cls)}
  hints = typing.get_type_hints(cls)
  keys = list(section.keys())
  unknown = sorted(set(keys) - set(fields))
  if unknown:
    raise ConfigError(f"{prefix}.{unknown[0]}: unknown key; known keys in {prefix}: "
                      f"{sorted(fields)}")
  kwargs = {}
  for name, f in fields.items():
    key = f"{prefix}.{name}"
    if name not in keys:
      if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
        raise ConfigError(f"{key}: missing key")
      continue
    value = check_value(section[name], hints[name], key)
    _check_field(value, f.metadata, key)
    kwargs[name] = value
  obj = cls(**kwargs)
  check = getattr(obj, "check", None)
  if callable(check):
    check(prefix)
  return obj


def defaults(cls: type) -> ml_collections.ConfigDict:
  """The dataclass's defaults as a ConfigDict section (nested dataclasses nested)."""
  out = ml_collections.ConfigDict()
  for f in dataclasses.fields(cls):
    if f.default is not dataclasses.MISSING:
      value = f.default
    elif f.default_factory is not dataclasses.MISSING:
      value = f.default_factory()
    else:
      continue
    if dataclasses.is_dataclass(value):
      value = defaults(type(value))
    out[f.name] = value
  return out


def check_top_level(config: ml_collections.ConfigDict, sections: Sequence[str],
                    scalars: Sequence[str]) -> None:
  """Unknown top-level keys and missing sections of the run config (one line, naming the key).
  The scalars' values are checked by their owner."""
  known = set(sections) | set(scalars)
  for key in sorted(config.keys()):
    if key not in known:
      raise ConfigError(f"config.{key}: unknown key; known top-level keys: {sorted(known)}")
  for key in sections:
    if key not in config:
      raise ConfigError(f"config.{key}: missing section")
