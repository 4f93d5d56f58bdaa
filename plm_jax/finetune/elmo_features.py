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
  BiLSTM (task_dim cells each way, no projection; params task/forward, task/backward)
  pool   = [max; mean] over real tokens        [B, 4 task_dim]
  pair   = [u; v; |u - v|; u * v] for two texts (the same encoder on each)
  MLP    = dropout -> dense task_dim, relu -> dropout -> dense num_labels (task/hidden,
           task/output) -> {"logits": [B, num_labels]} (num_labels 1: regression)

Frozen biLM (the paper's default, `fine_tune_bilm=False`): its outputs pass through
stop_gradient, it runs without dropout, and `trainable_labels` marks its params
"frozen" so that an optimizer built with optax.multi_transform leaves them as they
are (weight decay included). With fine_tune_bilm=True every param is "train".
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
  task_dim: int = 64                 # BiLSTM cells per direction and MLP width
  dropout: float = 0.5               # on ELMo_task and inside the MLP

  def check(self) -> None:
    if self.num_labels < 1 or self.task_dim < 1:
      raise ValueError(f"ElmoTaskConfig: num_labels={self.num_labels} and task_dim="
                       f"{self.task_dim} must be >= 1")


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
    fwd, _ = LstmWithProjection(cfg.task_dim, cfg.task_dim, name="task_forward")(x, mask)
    bwd, _ = LstmWithProjection(cfg.task_dim, cfg.task_dim, name="task_backward")(
        reverse_padded(x, lengths), mask)
    h = jnp.concatenate([fwd, reverse_padded(bwd, lengths)], axis=-1)  # [B, T, 2 task_dim]
    m = mask[..., None]
    pooled_max = jnp.max(jnp.where(m, h, -1e9), axis=1)
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
    u = encoder(chars_a, deterministic)
    if chars_b is not None:
      v = encoder(chars_b, deterministic)
      u = jnp.concatenate([u, v, jnp.abs(u - v), u * v], axis=-1)
    h = nn.Dropout(cfg.dropout)(u, deterministic=deterministic)
    h = jax.nn.relu(nn.Dense(cfg.task_dim, name="task_hidden")(h))
    h = nn.Dropout(cfg.dropout)(h, deterministic=deterministic)
    return {"logits": nn.Dense(cfg.num_labels, name="task_output")(h).astype(jnp.float32)}


class Bilm(NamedTuple):
  config: ElmoConfig
  params: Dict[str, Any]       # ElmoBiLM params (the softmax, if any, dropped)
  source: str


def load_bilm(path: str) -> Bilm:
  """A bilm-tf model directory (options.json and one .hdf5 weight file) or a plm_jax ELMo
  export (plm_config.json + params/)."""
  from plm_jax.convert import bilm_hdf5, export  # pylint: disable=import-outside-toplevel
  if os.path.isfile(os.path.join(path, "options.json")):
    weights = sorted(glob.glob(os.path.join(path, "*.hdf5")))
    if len(weights) != 1:
      raise ValueError(f"{path}: expected one .hdf5 weight file next to options.json, found "
                       f"{len(weights)}")
    cfg, params = bilm_hdf5.load_bilm(os.path.join(path, "options.json"), weights[0])
  elif os.path.isfile(os.path.join(path, "plm_config.json")):
    family, cfg, params = export.load_export(path)
    if family != "elmo":
      raise ValueError(f"{path}: a {family!r} export, not an ELMo biLM")
    params = jax.tree_util.tree_map(np.asarray, params)
    cfg = dataclasses.replace(cfg, filters=tuple(tuple(f) for f in cfg.filters))   # JSON lists
  else:
    raise ValueError(f"{path}: neither a bilm-tf model (options.json + .hdf5) nor a plm_jax "
                     "export (plm_config.json)")
  params = {k: v for k, v in params.items() if k != "softmax"}
  return Bilm(dataclasses.replace(cfg, vocab_size=0), params, path)


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
