"""Reading and writing Hugging Face checkpoint directories (config.json + weights)."""
import json
import os
from typing import Dict, Mapping

import numpy as np

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_BIN = "pytorch_model.bin"
TORCH_BIN_INDEX = "pytorch_model.bin.index.json"


def read_config(hf_dir: str) -> Dict:
  path = os.path.join(hf_dir, "config.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{hf_dir}: no config.json (not a Hugging Face model directory)")
  try:
    with open(path, encoding="utf-8") as f:
      config = json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})"
                     ) from None
  except UnicodeDecodeError:
    raise ValueError(f"{path}: not valid JSON (not UTF-8 text)") from None
  if not isinstance(config, dict):
    raise ValueError(f"{path}: expected a JSON object, got {type(config).__name__}")
  return config


def _first_line(e: BaseException) -> str:
  """The first sentence of an error's first line (torch's run on for paragraphs)."""
  text = str(e).strip()
  return text.splitlines()[0].split(". ")[0].rstrip(".") if text else type(e).__name__


def _read_safetensors(path: str) -> Dict[str, np.ndarray]:
  from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel
  try:
    try:
      return load_file(path)
    except (TypeError, ValueError):
      # bfloat16 tensors have no numpy dtype: go through torch.
      from safetensors.torch import load_file as load_torch  # pylint: disable=import-outside-toplevel
      return {k: (v.float() if v.is_floating_point() else v).numpy()
              for k, v in load_torch(path).items()}
  except Exception as e:  # pylint: disable=broad-except  (SafetensorError is no ValueError)
    raise ValueError(f"{path}: not a readable safetensors file ({_first_line(e)}); "
                     f"is it truncated or corrupt?") from None


def _read_torch_bin(path: str) -> Dict[str, np.ndarray]:
  import pickle  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  try:
    state = torch.load(path, weights_only=True, map_location="cpu")
  except pickle.UnpicklingError as e:
    raise ValueError(f"{path}: refused to load: it holds Python objects other than tensors "
                     f"(torch.load weights_only: {_first_line(e)[:200]}); only plain "
                     f"state dicts of tensors are read") from None
  except (RuntimeError, EOFError, OSError) as e:
    raise ValueError(f"{path}: not a readable PyTorch checkpoint ({_first_line(e)[:200]}); "
                     f"is it truncated or corrupt?") from None
  if not isinstance(state, dict):
    raise ValueError(f"{path}: holds a {type(state).__name__}, not a state dict of tensors")
  out = {}
  for k, v in state.items():
    if not isinstance(v, torch.Tensor):
      raise ValueError(f"{path}: entry {k!r} is a {type(v).__name__}, not a tensor (expected a "
                       f"state dict of tensors)")
    if v.is_floating_point() and v.dtype != torch.float32:
      v = v.float()
    out[k] = v.numpy()
  return out


def _shards(hf_dir: str, index_name: str):
  with open(os.path.join(hf_dir, index_name)) as f:
    return sorted(set(json.load(f)["weight_map"].values()))


def read_weights(hf_dir: str) -> Dict[str, np.ndarray]:
  """All tensors of a checkpoint directory: safetensors preferred, else pytorch_model.bin."""
  if os.path.isfile(os.path.join(hf_dir, SAFETENSORS)):
    return _read_safetensors(os.path.join(hf_dir, SAFETENSORS))
  for index, reader in ((SAFETENSORS_INDEX, _read_safetensors), (TORCH_BIN_INDEX, _read_torch_bin)):
    if os.path.isfile(os.path.join(hf_dir, index)):
      out = {}
      for shard in _shards(hf_dir, index):
        out.update(reader(os.path.join(hf_dir, shard)))
      return out
  if os.path.isfile(os.path.join(hf_dir, TORCH_BIN)):
    return _read_torch_bin(os.path.join(hf_dir, TORCH_BIN))
  raise FileNotFoundError(f"{hf_dir}: no {SAFETENSORS} or {TORCH_BIN} found")


def write_checkpoint(hf_dir: str, config: Mapping, tensors: Mapping[str, np.ndarray]) -> None:
  """Writes config.json and model.safetensors (float32, contiguous) into hf_dir."""
  from safetensors.numpy import save_file  # pylint: disable=import-outside-toplevel
  os.makedirs(hf_dir, exist_ok=True)
  with open(os.path.join(hf_dir, "config.json"), "w") as f:
    json.dump(dict(config), f, indent=2, sort_keys=True)
  arrays = {k: np.ascontiguousarray(np.asarray(v, dtype=np.float32)) for k, v in tensors.items()}
  save_file(arrays, os.path.join(hf_dir, SAFETENSORS), metadata={"format": "pt"})
  # safetensors creates its file private (0600); give it config.json's mode (the umask's).
  os.chmod(os.path.join(hf_dir, SAFETENSORS),
           os.stat(os.path.join(hf_dir, "config.json")).st_mode & 0o777)
