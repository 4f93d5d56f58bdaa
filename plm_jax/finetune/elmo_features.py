"""ELMo used as features (Peters et al., 2018, section 3.3): a biLM's layers, mixed, fed to a
small task model.

  bilm = load_bilm(path)                   # bilm-tf dir (options.json + *.hdf5) or an export
  cfg = ElmoTaskConfig(bilm.config, num_labels=2)
  model = ElmoTaskModel(cfg)
  params = with_bilm(model.init(rng, chars_a)["params"], bilm.params)
  out = model.apply({"params": params}, chars_a, chars_b=None, deterministic=True)
  tx = optax.multi_transform({"train": opt, "frozen": optax.set_to_zero()},
                             trainable_labels(params, cfg))

The task model (what each text goes through; char ids [B, T, C] from
plm_jax.data.elmo_chars, sentences with <S> ... </S>):

  biLM (ElmoBiLM, no softmax)   -> layers h_0..h_L [L + 1, B, T, 2P] (elmo_layers)
  ELMo_task = gamma * sum_k softmax(w)_k h_k   (ScalarMix, params mix/{weights,gamma};
                                                optional layer norm of each layer)
  input  = [x; dropout(ELMo_task)]             x = the biLM's context-independent token
                                               representation [B, T, P] (the char CNN's,
                                               standing in for the paper's word vectors)
  BiLSTM (task_layers layers of task_dim cells each way, no projection; params
         task_forward, task_backward, then task_forward_1, task_backward_1, ...)
  pool   = [max; mean] over real tokens        [B, 4 task_dim]
  pair   = [u; v; |u - v|; u * v] for two texts (the same encoder on each; both run as one
           [2B, T, C] batch, so layer_norm's statistics cover both texts)
  MLP    = dropout -> dense mlp_dim (0: task_dim), relu -> dropout -> dense num_labels
           (task_hidden, task_output) -> {"logits": [B, num_labels]} (num_labels 1:
           regression)

Frozen biLM (the paper's default, `fine_tune_bilm=False`): its outputs pass through
stop_gradient, it runs without dropout, and `trainable_labels` marks its params
"frozen" so that an optimizer built with optax.multi_transform leaves them as they
are (weight decay included). With fine_tune_bilm=True every param is "train".

The GLUE command runs this model with config.model.family=elmo
(plm_jax/finetune/objective_elmo.py); `read_bilm_config` reads only a biLM's sizes.
"""
from __future__ import annotations

import dataclasses
import glob
import os
from typing import Any, Dict, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from plm_jax.layers.lstm import LstmWithProjection
from plm_jax.models.elmo import ElmoBiLM, ElmoConfig, ScalarMix, elmo_layers, reverse_padded

BILM = "bilm"       # param names: bilm/... (ElmoBiLM's), mix/..., task/...


@dataclasses.dataclass(frozen=True)
class ElmoTaskConfig:
  bilm: ElmoConfig                   # the biLM's sizes (its vocab_size is ignored: no softmax)
  num_labels: int = 2
  fine_tune_bilm: bool = False       # False: frozen biLM (stop_gradient, no dropout)
  layer_norm: bool = False           # ScalarMix's per-layer normalisation
  task_dim: int = 64                 # BiLSTM cells per direction (and MLP width, mlp_dim 0)
  dropout: float = 0.5               # on ELMo_task and inside the MLP
  task_layers: int = 1               # stacked BiLSTM layers
  mlp_dim: int = 0                   # MLP hidden width; 0: task_dim

  def check(self) -> None:
    if min(self.num_labels, self.task_dim, self.task_layers) < 1 or self.mlp_dim < 0:
      raise ValueError(f"ElmoTaskConfig: num_labels={self.num_labels}, task_dim="
                       f"{self.task_dim} and task_layers={self.task_layers} must be >= 1, "
                       f"mlp_dim={self.mlp_dim} >= 0")

  @classmethod
  def from_dict(cls, values: Dict[str, Any]) -> "ElmoTaskConfig":
    """The inverse of dataclasses.asdict (JSON lists back to tuples): exports round-trip."""
    values = dict(values)
    bilm = dict(values.pop("bilm"))
    bilm["filters"] = tuple(tuple(f) for f in bilm.get("filters", ()))
    return cls(bilm=ElmoConfig(**bilm), **values)


class TextEncoder(nn.Module):
  """char ids [B, T, C] -> pooled text vector [B, 4 task_dim] (see the module doc)."""
  config: ElmoTaskConfig

  @nn.compact
  def __call__(self, char_ids: jax.Array, deterministic: bool) -> jax.Array:
    cfg = self.config
    bilm_cfg = dataclasses.replace(cfg.bilm, vocab_size=0)
    bilm = ElmoBiLM(bilm_cfg, name=BILM)
    out = bilm(char_ids, deterministic=deterministic or not cfg.fine_tune_bilm)
    layers = elmo_layers(out)                                          # [L + 1, B, T, 2P]
    token = out["token"]                                               # [B, T, P]
    if not cfg.fine_tune_bilm:
      layers, token = jax.lax.stop_gradient(layers), jax.lax.stop_gradient(token)
    mask = out["mask"]
    elmo = ScalarMix(bilm_cfg.n_layers + 1, cfg.layer_norm, name="mix")(layers, mask)
    elmo = nn.Dropout(cfg.dropout)(elmo, deterministic=deterministic)
    x = jnp.concatenate([token, elmo], axis=-1) * mask[..., None]     # [B, T, 3P]
    lengths = out["lengths"]
    h = x
    for k in range(cfg.task_layers):
      suffix = f"_{k}" if k else ""
      fwd, _ = LstmWithProjection(cfg.task_dim, cfg.task_dim, name="task_forward" + suffix)(
          h, mask)
      bwd, _ = LstmWithProjection(cfg.task_dim, cfg.task_dim, name="task_backward" + suffix)(
          reverse_padded(h, lengths), mask)
      h = jnp.concatenate([fwd, reverse_padded(bwd, lengths)], axis=-1)  # [B, T, 2 task_dim]
    m = mask[..., None]
    pooled_max = jnp.max(jnp.where(m, h, -1e9), axis=1)
    pooled_max = jnp.where(jnp.any(m, axis=1), pooled_max, 0.0)     # an all-padding row: 0
    pooled_mean = jnp.sum(h * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1)
    return jnp.concatenate([pooled_max, pooled_mean], axis=-1)


class ElmoTaskModel(nn.Module):
  """One text (or a pair, the same encoder on both) -> {"logits": [B, num_labels]}."""
  config: ElmoTaskConfig

  @nn.compact
  def __call__(self, chars_a: jax.Array, chars_b: Optional[jax.Array] = None,
               deterministic: bool = True) -> Dict[str, jax.Array]:
    cfg = self.config
    encoder = TextEncoder(cfg, name="encoder")
    if chars_b is None:
      u = encoder(chars_a, deterministic)
    else:       # both texts in one pass: [2B, T, C], the shorter padded with empty words
      n, t = chars_a.shape[0], max(chars_a.shape[1], chars_b.shape[1])
      pad = lambda c: jnp.pad(c, ((0, 0), (0, t - c.shape[1]), (0, 0)))  # noqa: E731
      both = encoder(jnp.concatenate([pad(chars_a), pad(chars_b)]), deterministic)
      u, v = both[:n], both[n:]
      u = jnp.concatenate([u, v, jnp.abs(u - v), u * v], axis=-1)
    h = nn.Dropout(cfg.dropout)(u, deterministic=deterministic)
    h = jax.nn.relu(nn.Dense(cfg.mlp_dim or cfg.task_dim, name="task_hidden")(h))
    h = nn.Dropout(cfg.dropout)(h, deterministic=deterministic)
    return {"logits": nn.Dense(cfg.num_labels, name="task_output")(h).astype(jnp.float32)}


class Bilm(NamedTuple):
  config: ElmoConfig
  params: Dict[str, Any]       # ElmoBiLM params (the softmax, if any, dropped)
  source: str


def _bilm_source(path: str) -> str:
  """'bilm-tf' or 'export' (a one-line error for anything else)."""
  if os.path.isfile(os.path.join(path, "options.json")):
    return "bilm-tf"
  if os.path.isfile(os.path.join(path, "plm_config.json")):
    return "export"
  what = "no such directory" if not os.path.isdir(path) else "neither a bilm-tf model " \
      "(options.json + .hdf5) nor a plm_jax export (plm_config.json)"
  raise ValueError(f"{path}: {what}")


def _weights_file(path: str) -> str:
  weights = sorted(glob.glob(os.path.join(path, "*.hdf5")))
  if len(weights) != 1:
    raise ValueError(f"{path}: expected one .hdf5 weight file next to options.json, found "
                     f"{len(weights)}")
  return weights[0]


def _as_bilm_config(cfg: Any, family: str, path: str) -> ElmoConfig:
  """An export's model config -> the biLM's (an ELMo biLM, or this module's task model)."""
  if family == "elmo" and isinstance(cfg, ElmoTaskConfig):
    cfg = cfg.bilm
  if family != "elmo" or not isinstance(cfg, ElmoConfig):
    raise ValueError(f"{path}: a {family!r} export ({type(cfg).__name__}), not an ELMo biLM")
  cfg = dataclasses.replace(cfg, filters=tuple(tuple(f) for f in cfg.filters))   # JSON lists
  return dataclasses.replace(cfg, vocab_size=0)


def read_bilm_config(path: str) -> ElmoConfig:
  """The biLM's sizes (no softmax) from a bilm-tf dir or an export, without its weights."""
  from plm_jax.convert import bilm_hdf5, export  # pylint: disable=import-outside-toplevel
  if _bilm_source(path) == "bilm-tf":
    _weights_file(path)
    return dataclasses.replace(bilm_hdf5.load_options(os.path.join(path, "options.json")),
                               vocab_size=0)
  family, cfg = export.read_export_config(path)
  return _as_bilm_config(cfg, family, path)


def load_bilm(path: str) -> Bilm:
  """A bilm-tf model directory (options.json and one .hdf5 weight file), a plm_jax ELMo
  export (plm_config.json + params/), or an export of an ElmoTaskModel (its biLM)."""
  from plm_jax.convert import bilm_hdf5, export  # pylint: disable=import-outside-toplevel
  if _bilm_source(path) == "bilm-tf":
    cfg, params = bilm_hdf5.load_bilm(os.path.join(path, "options.json"), _weights_file(path))
    cfg = dataclasses.replace(cfg, vocab_size=0)
  else:
    cfg = read_bilm_config(path)         # checks the family before reading any weights
    _, task_cfg, params = export.load_export(path)
    params = jax.tree_util.tree_map(np.asarray, params)
    if isinstance(task_cfg, ElmoTaskConfig):
      params = params["encoder"][BILM]
  params = {k: v for k, v in params.items() if k != "softmax"}
  return Bilm(cfg, params, path)


def with_bilm(params: Dict[str, Any], bilm_params: Dict[str, Any]) -> Dict[str, Any]:
  """`params` of an ElmoTaskModel with the encoder's biLM replaced by `bilm_params` (every
  array checked against the fresh one's shape)."""
  fresh = params["encoder"][BILM]
  flat_new = dict(jax.tree_util.tree_flatten_with_path(bilm_params)[0])
  for path, leaf in jax.tree_util.tree_flatten_with_path(fresh)[0]:
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    if path not in flat_new:
      raise ValueError(f"the biLM params have no {name!r} (shape {leaf.shape})")
    if np.shape(flat_new[path]) != leaf.shape:
      raise ValueError(f"biLM param {name!r} has shape {np.shape(flat_new[path])}, the model "
                       f"{leaf.shape}")
  out = dict(params)
  out["encoder"] = dict(params["encoder"])
  out["encoder"][BILM] = jax.tree_util.tree_map(jnp.asarray, bilm_params)
  return out


def trainable_labels(params: Any, config: ElmoTaskConfig) -> Any:
  """'frozen' for the biLM's params (unless fine_tune_bilm), 'train' for the rest."""
  def label(path, _):
    frozen = not config.fine_tune_bilm and any(getattr(k, "key", None) == BILM for k in path)
    return "frozen" if frozen else "train"
  return jax.tree_util.tree_map_with_path(label, params)
