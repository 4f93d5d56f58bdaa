"""Import and export of ELMo's released format: bilm-tf's options.json + HDF5 weights.

  load_options(path) -> ElmoConfig              (one-line errors naming the missing key)
  load_weights(path, config) -> params          (ElmoBiLM params; errors name the
                                                 missing variable or the shape and the
                                                 options key it contradicts)
  load_bilm(options_path, weight_path) -> (config, params)
  save_options(config, path); save_weights(params, config, path)   (the same layout back)

HDF5 layout (bilm-tf's dump_weights): char_embed [n_characters - 1, D] (the
file has no padding row: row 0 of ours is zeros), CNN/W_cnn_k [1, w, D, n],
CNN/b_cnn_k, CNN_high_k/{W_carry, b_carry, W_transform, b_transform},
CNN_proj/{W_proj, b_proj}, RNN_{0 forward, 1 backward}/RNN/MultiRNNCell/Cell{k}/
LSTMCell/{W_0 [in + P, 4H], B [4H], W_P_0 [H, P]}, and, when the file holds a
softmax, softmax/{W [V, P], b [V]}. The cell is TensorFlow's (gates i, j, f, o,
forget bias 1.0 added at run time) as plm_jax.layers.lstm, so weights copy as they are.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Mapping, Tuple

import numpy as np

from plm_jax.models.elmo import ElmoConfig

_RNN = "RNN_{d}/RNN/MultiRNNCell/Cell{k}/LSTMCell/"


def _get(tree: Mapping[str, Any], key: str, source: str) -> Any:
  node: Any = tree
  for part in key.split("."):
    if not isinstance(node, Mapping) or part not in node:
      raise ValueError(f"{source}: missing key {key!r}")
    node = node[part]
  return node


def config_from_options(options: Mapping[str, Any], source: str = "options.json",
                        vocab_size: int = 0) -> ElmoConfig:
  """bilm-tf's options dict -> ElmoConfig (n_tokens_vocab, when present, sizes the softmax)."""
  get = lambda key: _get(options, key, source)  # noqa: E731
  filters = tuple((int(w), int(n)) for w, n in get("char_cnn.filters"))
  lstm = get("lstm")
  cfg = ElmoConfig(
      vocab_size=int(options.get("n_tokens_vocab", vocab_size) or 0),
      n_characters=int(get("char_cnn.n_characters")),
      max_characters_per_token=int(get("char_cnn.max_characters_per_token")),
      char_embedding_dim=int(get("char_cnn.embedding.dim")),
      filters=filters,
      activation=str(get("char_cnn.activation")),
      n_highway=int(options["char_cnn"].get("n_highway") or 0),
      lstm_dim=int(get("lstm.dim")),
      projection_dim=int(get("lstm.projection_dim")),
      n_layers=int(lstm.get("n_layers", 1)),
      cell_clip=float(lstm.get("cell_clip") or 0.0),
      proj_clip=float(lstm.get("proj_clip") or 0.0),
      use_skip_connections=bool(get("lstm.use_skip_connections")),
      dropout=float(options.get("dropout", 0.1)))
  try:
    cfg.check()
  except ValueError as e:
    raise ValueError(f"{source}: {e}") from None
  return cfg


def load_options(path: str) -> ElmoConfig:
  try:
    with open(path, encoding="utf-8") as f:
      options = json.load(f)
  except FileNotFoundError:
    raise ValueError(f"{path}: no such options file") from None
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not JSON ({e})") from None
  return config_from_options(options, path)


def options_from_config(cfg: ElmoConfig) -> Dict[str, Any]:
  options = {
      "lstm": {"cell_clip": cfg.cell_clip, "use_skip_connections": cfg.use_skip_connections,
               "n_layers": cfg.n_layers, "proj_clip": cfg.proj_clip,
               "projection_dim": cfg.projection_dim, "dim": cfg.lstm_dim},
      "char_cnn": {"embedding": {"dim": cfg.char_embedding_dim},
                   "filters": [list(f) for f in cfg.filters], "n_highway": cfg.n_highway,
                   "n_characters": cfg.n_characters,
                   "max_characters_per_token": cfg.max_characters_per_token,
                   "activation": cfg.activation},
      "dropout": cfg.dropout}
  if cfg.vocab_size:
    options["n_tokens_vocab"] = cfg.vocab_size
  return options


def save_options(cfg: ElmoConfig, path: str) -> None:
  with open(path, "w", encoding="utf-8") as f:
    json.dump(options_from_config(cfg), f, indent=1)


def _table(cfg: ElmoConfig) -> Dict[str, Tuple[Tuple[str, ...], Tuple[int, ...], str]]:
  """HDF5 name -> (params path, expected HDF5 shape, the options key that sizes it)."""
  d, p, h, f = cfg.char_embedding_dim, cfg.projection_dim, cfg.lstm_dim, cfg.n_filters
  enc = "char_encoder"
  t = {"char_embed": ((enc, "char_embed"), (cfg.n_characters - 1, d),
                      "char_cnn.n_characters / char_cnn.embedding.dim")}
  for k, (w, n) in enumerate(cfg.filters):
    t[f"CNN/W_cnn_{k}"] = ((enc, f"cnn_{k}_kernel"), (1, w, d, n), f"char_cnn.filters[{k}]")
    t[f"CNN/b_cnn_{k}"] = ((enc, f"cnn_{k}_bias"), (n,), f"char_cnn.filters[{k}]")
  for k in range(cfg.n_highway):
    for part in ("carry", "transform"):
      t[f"CNN_high_{k}/W_{part}"] = ((enc, f"highway_{k}_{part}_kernel"), (f, f),
                                     "char_cnn.filters (sum of counts)")
      t[f"CNN_high_{k}/b_{part}"] = ((enc, f"highway_{k}_{part}_bias"), (f,),
                                     "char_cnn.filters (sum of counts)")
  if f != p:
    t["CNN_proj/W_proj"] = ((enc, "proj_kernel"), (f, p), "lstm.projection_dim")
    t["CNN_proj/b_proj"] = ((enc, "proj_bias"), (p,), "lstm.projection_dim")
  for di, direction in enumerate(("forward", "backward")):
    for k in range(cfg.n_layers):
      root, name = _RNN.format(d=di, k=k), f"{direction}_{k}"
      t[root + "W_0"] = ((name, "kernel"), (2 * p, 4 * h), "lstm.dim / lstm.projection_dim")
      t[root + "B"] = ((name, "bias"), (4 * h,), "lstm.dim")
      if p < h:
        t[root + "W_P_0"] = ((name, "projection"), (h, p), "lstm.dim / lstm.projection_dim")
  if cfg.vocab_size:
    t["softmax/W"] = (("softmax", "kernel"), (cfg.vocab_size, p), "n_tokens_vocab")
    t["softmax/b"] = (("softmax", "bias"), (cfg.vocab_size,), "n_tokens_vocab")
  return t


def load_weights(path: str, cfg: ElmoConfig) -> Dict[str, Any]:
  """The HDF5 file's arrays as ElmoBiLM params (nested dicts of float32 NumPy arrays)."""
  import h5py  # pylint: disable=import-outside-toplevel
  try:
    fin = h5py.File(path, "r")
  except (FileNotFoundError, OSError) as e:
    raise ValueError(f"{path}: cannot open as HDF5 ({e})") from None
  params: Dict[str, Any] = {}
  with fin:
    for name, (where, shape, key) in _table(cfg).items():
      if name not in fin:
        raise ValueError(f"{path}: missing variable {name!r} (expected shape {shape})")
      value = np.asarray(fin[name][...], np.float32)
      if value.shape != shape:
        raise ValueError(f"{path}: variable {name!r} has shape {value.shape}, but the "
                         f"options ({key}) give {shape}")
      if name == "char_embed":   # our row 0 is the padding token's (all-zero) embedding
        value = np.concatenate([np.zeros((1, shape[1]), np.float32), value])
      elif name.startswith("CNN/W_cnn_"):
        value = value[0]          # [1, w, D, n] -> [w, D, n]
      node = params
      for part in where[:-1]:
        node = node.setdefault(part, {})
      node[where[-1]] = value
  return params


def load_bilm(options_path: str, weight_path: str) -> Tuple[ElmoConfig, Dict[str, Any]]:
  cfg = load_options(options_path)
  return cfg, load_weights(weight_path, cfg)


def save_weights(params: Mapping[str, Any], cfg: ElmoConfig, path: str) -> None:
  """Writes params in bilm-tf's HDF5 layout (load_weights reads them back exactly)."""
  import h5py  # pylint: disable=import-outside-toplevel
  with h5py.File(path, "w") as fout:
    for name, (where, shape, _) in _table(cfg).items():
      node: Any = params
      for part in where:
        node = node[part]
      value = np.asarray(node, np.float32)
      if name == "char_embed":
        value = value[1:]
      elif name.startswith("CNN/W_cnn_"):
        value = value[None]
      if value.shape != shape:
        raise ValueError(f"save_weights: params {'/'.join(where)} has shape {value.shape}, "
                         f"the config gives {shape}")
      fout.create_dataset(name, data=value)


def export_to_bilm(export_dir: str, out_dir: str) -> Tuple[str, str]:
  """A plm_jax export of an ELMo biLM (workdir/export) -> out_dir/options.json and
  out_dir/lm_weights.hdf5 (with the softmax), and vocab.txt when the export has one."""
  import os  # pylint: disable=import-outside-toplevel
  import shutil  # pylint: disable=import-outside-toplevel
  from plm_jax.convert import export  # pylint: disable=import-outside-toplevel
  family, cfg, params = export.load_export(export_dir)
  if not isinstance(cfg, ElmoConfig):
    raise ValueError(f"{export_dir}: a {family!r} export, not an ELMo biLM")
  os.makedirs(out_dir, exist_ok=True)
  options, weights = os.path.join(out_dir, "options.json"), os.path.join(out_dir,
                                                                         "lm_weights.hdf5")
  save_options(cfg, options)
  save_weights(params, cfg, weights)
  vocab = os.path.join(export_dir, "vocab.txt")
  if os.path.isfile(vocab):
    shutil.copyfile(vocab, os.path.join(out_dir, "vocab.txt"))
  return options, weights


if __name__ == "__main__":
  import sys  # pylint: disable=import-outside-toplevel
  if len(sys.argv) != 3:
    sys.exit("usage: python -m plm_jax.convert.bilm_hdf5 EXPORT_DIR OUT_DIR")
  try:
    for written in export_to_bilm(sys.argv[1], sys.argv[2]):
      print(f"wrote {written}")
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
