"""A checkpoint's integrity record: one digest per array, computed on the host.

Saved as the checkpoint item `integrity` (JSON) next to `state` and `data`:

  {"version": 1,
   "arrays": {"params/bert/...": {"shape": [..], "dtype": "float32", "crc32": "1a2b3c4d"}, ...},
   "data": "<crc32 of the data position's canonical JSON>"}

On restore the record is checked three times: against the saved metadata
(shapes and dtypes, before anything is read, so that a flipped byte in the
metadata is corruption rather than a "config changed" error), against the
restored values (every array's digest), and against the data position.
Any disagreement raises CorruptCheckpoint naming the array or item.

The digest is CRC-32 over dtype, shape and the array's C-order bytes: any
single-byte (indeed any burst up to 32 bits) change of an array is detected
with certainty, at a few hundred MB/s on one core. Arrays that this process
cannot address completely (multi-host sharding) carry no digest (crc32 null)
and are not verified.
"""
from __future__ import annotations

import json
import zlib
from typing import Any, Dict, Mapping, Optional

import jax
import numpy as np

VERSION = 1


class CorruptCheckpoint(Exception):
  """A checkpoint whose content disagrees with its integrity record (or cannot be parsed)."""


def _key_name(k) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def _is_leaf(x) -> bool:
  return hasattr(x, "shape") and not isinstance(x, dict)


def flat_leaves(tree: Any) -> Dict[str, Any]:
  """'a/b/c' path -> leaf, for arrays and array metadata alike."""
  leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_leaf)[0]
  return {"/".join(_key_name(k) for k in path): leaf for path, leaf in leaves
          if hasattr(leaf, "shape")}


def _host_value(leaf) -> Optional[np.ndarray]:
  """The whole array on this host, or None when this process sees only part of it."""
  if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
    return None
  return np.asarray(jax.device_get(leaf), order="C")


def array_digest(value: np.ndarray) -> str:
  header = f"{value.dtype.str}{tuple(value.shape)}".encode()
  crc = zlib.crc32(header)
  crc = zlib.crc32(np.asarray(value, order="C").tobytes() if value.ndim == 0 else
                  memoryview(np.asarray(value, order="C")).cast("B"), crc)
  return f"{crc:08x}"


def data_digest(data: Mapping[str, Any]) -> str:
  text = json.dumps(dict(data), sort_keys=True, separators=(",", ":"))
  return f"{zlib.crc32(text.encode()):08x}"


def make_record(state: Any, data: Mapping[str, Any]) -> Dict[str, Any]:
  """The record of a state about to be saved (device arrays are fetched to the host)."""
  arrays = {}
  for name, leaf in flat_leaves(state).items():
    value = _host_value(leaf)
    arrays[name] = {"shape": [int(d) for d in np.shape(leaf)],
                    "dtype": str(np.dtype(leaf.dtype)),
                    "crc32": None if value is None else array_digest(value)}
  return {"version": VERSION, "arrays": arrays, "data": data_digest(data)}


def check_record_format(record: Any, where: str) -> Dict[str, Any]:
  """The record, or CorruptCheckpoint when it is not one (a damaged integrity file)."""
  ok = (isinstance(record, dict) and record.get("version") == VERSION
        and isinstance(record.get("arrays"), dict) and isinstance(record.get("data"), str)
        and all(isinstance(v, dict) and {"shape", "dtype", "crc32"} <= set(v)
                for v in record["arrays"].values()))
  if not ok:
    raise CorruptCheckpoint(f"{where}: the integrity record is damaged")
  return record


def check_metadata(record: Mapping[str, Any], saved: Any, where: str) -> None:
  """Saved metadata (names, shapes, dtypes) == the record's, before anything is restored."""
  arrays = record["arrays"]
  meta = flat_leaves(saved)
  if set(meta) != set(arrays):
    odd = sorted(set(meta) ^ set(arrays))
    raise CorruptCheckpoint(f"{where}: the saved metadata and the integrity record name "
                            f"different arrays (e.g. {odd[0]})")
  for name, leaf in meta.items():
    entry = arrays[name]
    if list(leaf.shape) != list(entry["shape"]):
      raise CorruptCheckpoint(f"{where}: array {name} has shape {tuple(leaf.shape)} in the saved "
                              f"metadata but {tuple(entry['shape'])} in the integrity record")
    dtype = getattr(leaf, "dtype", None)
    if dtype is not None and str(np.dtype(dtype)) != entry["dtype"]:
      raise CorruptCheckpoint(f"{where}: array {name} has dtype {np.dtype(dtype)} in the saved "
                              f"metadata but {entry['dtype']} in the integrity record")


def check_values(record: Mapping[str, Any], state: Any, data: Mapping[str, Any],
                 where: str) -> int:
  """Every restored array's digest == the record's; returns the number verified."""
  arrays = record["arrays"]
  verified = 0
  for name, leaf in flat_leaves(state).items():
    entry = arrays.get(name)
    if entry is None:
      raise CorruptCheckpoint(f"{where}: array {name} is not in the integrity record")
    if entry["crc32"] is None:
      continue
    value = _host_value(leaf)
    if value is None:
      continue
    if str(value.dtype) != entry["dtype"] or list(value.shape) != list(entry["shape"]):
      raise CorruptCheckpoint(f"{where}: array {name} restored as {value.dtype}"
                              f"{tuple(value.shape)}, recorded as {entry['dtype']}"
                              f"{tuple(entry['shape'])}")
    if array_digest(value) != entry["crc32"]:
      raise CorruptCheckpoint(f"{where}: array {name} does not match its digest (the data on "
                              f"disk changed after it was written)")
    verified += 1
  if data_digest(data) != record["data"]:
    raise CorruptCheckpoint(f"{where}: the data-iterator position does not match its digest")
  return verified
