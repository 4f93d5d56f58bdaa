"""ELMo (Peters et al., 2018): a character-aware bidirectional LSTM language model.

The network of bilm-tf (allenai/bilm-tf, the original code), whose released
weights load into it as they are (plm_jax.convert.bilm_hdf5):

  token encoder   char ids [B, T, C] (UTF-8 bytes, begin/end-of-word markers and
                  padding, +1 so that 0 marks a padding token: plm_jax.data.elmo_chars)
                  -> char embedding [.., C, D] -> for each filter (width w, n):
                  conv over the characters (VALID) + bias, max over positions,
                  activation -> concat [.., F] -> highway layers
                  (g = sigmoid(x Wc + bc); x = g * relu(x Wt + bt) + (1 - g) * x)
                  -> projection to P when F != P -> token embedding [B, T, P]
  biLM            a forward and a backward stack of LSTMs with projection and
                  clipping (plm_jax.layers.lstm); the backward stack reads each
                  row reversed within its length; with skip connections, layers
                  after the first add their input to their output
  softmax         shared by the two directions: logits = h W^T + b, W [V, P]

The ELMo layers of a token (`elmo_layers`): [token; token], then [forward_k;
backward_k] for each LSTM layer k, each [B, T, 2P]; `ScalarMix` combines them.

Contract:
  ElmoConfig               frozen sizes (bilm-tf's options.json, plm_jax.convert.bilm_hdf5)
  ElmoBiLM(config)         __call__(char_ids, state=None, deterministic=True, logits=False)
                           -> dict with token [B, T, P], forward / backward: tuples of
                           [B, T, P] per layer, mask [B, T], lengths [B], state (the
                           final (c, h) for `state=` of the next batch, per row),
                           and with logits=True: forward_logits / backward_logits [B, T, V]
                           (position t of the forward LM predicts token t + 1, of the
                           backward LM token t - 1)
  init_state(config, B)    zero LSTM state: (c [2, L, B, H], h [2, L, B, P])
  ScalarMix(num_layers)    __call__(layers [K, B, T, D], mask=None) -> [B, T, D]
"""
import dataclasses
from typing import Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from plm_jax.layers.lstm import LstmWithProjection

PAPER_FILTERS = ((1, 32), (2, 32), (3, 64), (4, 128), (5, 256), (6, 512), (7, 1024))


@dataclasses.dataclass(frozen=True)
class ElmoConfig:
  """Sizes of the biLM; the defaults are the paper's 2x4096_512_2048cnn_2xhighway model."""
  vocab_size: int = 0                 # softmax size; 0: no softmax (a features-only model)
  n_characters: int = 262             # char embedding rows: 261 bilm-tf ids + the padding row
  max_characters_per_token: int = 50
  char_embedding_dim: int = 16
  filters: Tuple[Tuple[int, int], ...] = PAPER_FILTERS   # (width, count)
  activation: str = "relu"            # char CNN: relu | tanh
  n_highway: int = 2
  lstm_dim: int = 4096                # cells per direction and layer
  projection_dim: int = 512           # LSTM output and token embedding size
  n_layers: int = 2
  cell_clip: float = 3.0              # 0: none
  proj_clip: float = 3.0              # 0: none
  use_skip_connections: bool = True   # residual around LSTM layers 2..n
  dropout: float = 0.1                # on LSTM inputs and the softmax input (training)

  @property
  def n_filters(self) -> int:
    return sum(n for _, n in self.filters)

  def check(self) -> None:
    if self.activation not in ("relu", "tanh"):
      raise ValueError(f"ElmoConfig.activation={self.activation!r}: choose relu or tanh")
    widest = max((w for w, _ in self.filters), default=0)
    if not self.filters or widest > self.max_characters_per_token:
      raise ValueError(f"ElmoConfig.filters={self.filters}: need at least one filter, none "
                       f"wider than max_characters_per_token={self.max_characters_per_token}")
    if self.projection_dim > self.lstm_dim:
      raise ValueError(f"ElmoConfig.projection_dim={self.projection_dim} > lstm_dim="
                       f"{self.lstm_dim}")
    if self.n_filters < self.projection_dim:
      raise ValueError(f"ElmoConfig.filters: {self.n_filters} filters in all, fewer than "
                       f"projection_dim={self.projection_dim} (bilm-tf only projects down)")


def reverse_padded(x: jax.Array, lengths: jax.Array) -> jax.Array:
  """Reverses each row's first lengths[b] steps along axis 1, leaving padding in place
  (tf.reverse_sequence). x [B, T, ...], lengths [B]."""
  t = jnp.arange(x.shape[1])[None, :]
  index = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)   # [B, T]
  index = index.reshape(index.shape + (1,) * (x.ndim - 2))
  return jnp.take_along_axis(x, index, axis=1)


class CharEncoder(nn.Module):
  """char ids [B, T, C] -> token embeddings [B, T, P] (bilm-tf's char CNN)."""
  config: ElmoConfig

  @nn.compact
  def __call__(self, char_ids: jax.Array) -> jax.Array:
    cfg = self.config
    b, t, c = char_ids.shape
    table = self.param("char_embed", _shifted(nn.initializers.uniform(2.0), 1.0),
                       (cfg.n_characters, cfg.char_embedding_dim))   # uniform(-1, 1)
    x = table[char_ids.reshape(b * t, c)]                             # [BT, C, D]
    act = jax.nn.relu if cfg.activation == "relu" else jnp.tanh
    pooled = []
    for k, (width, num) in enumerate(cfg.filters):
      if cfg.activation == "relu":      # bilm-tf: uniform(-0.05, 0.05) (Kim et al. 2015)
        init = _shifted(nn.initializers.uniform(0.1), 0.05)
      else:                             # tanh: normal with std sqrt(1 / (width D))
        init = nn.initializers.normal(float(np.sqrt(1.0 / (width * cfg.char_embedding_dim))))
      w = self.param(f"cnn_{k}_kernel", init, (width, cfg.char_embedding_dim, num))
      bias = self.param(f"cnn_{k}_bias", nn.initializers.zeros, (num,))
      conv = jax.lax.conv_general_dilated(x, w, (1,), "VALID",
                                          dimension_numbers=("NWC", "WIO", "NWC")) + bias
      pooled.append(act(jnp.max(conv, axis=1)))                      # [BT, num]
    h = jnp.concatenate(pooled, axis=-1)                              # [BT, F]
    f = cfg.n_filters
    for k in range(cfg.n_highway):
      normal = nn.initializers.normal(float(np.sqrt(1.0 / f)))
      wc = self.param(f"highway_{k}_carry_kernel", normal, (f, f))
      bc = self.param(f"highway_{k}_carry_bias", nn.initializers.constant(-2.0), (f,))
      wt = self.param(f"highway_{k}_transform_kernel", normal, (f, f))
      bt = self.param(f"highway_{k}_transform_bias", nn.initializers.zeros, (f,))
      gate = jax.nn.sigmoid(h @ wc + bc)
      h = gate * jax.nn.relu(h @ wt + bt) + (1.0 - gate) * h
    if f != cfg.projection_dim:
      wp = self.param("proj_kernel", nn.initializers.normal(float(np.sqrt(1.0 / f))),
                      (f, cfg.projection_dim))
      bp = self.param("proj_bias", nn.initializers.zeros, (cfg.projection_dim,))
      h = h @ wp + bp
    return h.reshape(b, t, cfg.projection_dim)


def _shifted(init, shift: float):
  """uniform(2 s) draws from [0, 2 s); shifted by -s it is uniform(-s, s) as bilm-tf's."""
  def fn(key, shape, dtype=jnp.float32):
    return init(key, shape, dtype) - shift
  return fn


def init_state(config: ElmoConfig, batch: int, dtype=jnp.float32) -> Tuple[jax.Array, jax.Array]:
  """Zero LSTM state for `ElmoBiLM(state=)`: (c [2, L, B, H], h [2, L, B, P]); index 0 of
  the first axis is the forward direction."""
  return (jnp.zeros((2, config.n_layers, batch, config.lstm_dim), dtype),
          jnp.zeros((2, config.n_layers, batch, config.projection_dim), dtype))


class ElmoBiLM(nn.Module):
  """The biLM: shared token encoder and softmax, two LSTM stacks (see the module doc)."""
  config: ElmoConfig

  @nn.compact
  def __call__(self, char_ids: jax.Array, state: Optional[Tuple[jax.Array, jax.Array]] = None,
               deterministic: bool = True, logits: bool = False) -> Dict[str, jax.Array]:
    cfg = self.config
    mask = jnp.any(char_ids > 0, axis=-1)                             # [B, T]
    lengths = jnp.sum(mask, axis=1).astype(jnp.int32)                 # [B]
    token = CharEncoder(cfg, name="char_encoder")(char_ids)           # [B, T, P]
    if state is None:
      state = init_state(cfg, char_ids.shape[0], token.dtype)
    outputs, final_c, final_h = {}, [], []
    for d, direction in enumerate(("forward", "backward")):
      x = token if d == 0 else reverse_padded(token, lengths)
      layers, cs, hs = [], [], []
      for k in range(cfg.n_layers):
        inp = nn.Dropout(cfg.dropout)(x, deterministic=deterministic)
        lstm = LstmWithProjection(cfg.lstm_dim, cfg.projection_dim, cfg.cell_clip,
                                  cfg.proj_clip, name=f"{direction}_{k}")
        out, (c, h) = lstm(inp, mask, (state[0][d, k], state[1][d, k]))
        if cfg.use_skip_connections and k > 0:
          out = out + x * mask[..., None]
        cs.append(c)
        hs.append(h)
        layers.append(out)
        x = out
      if d == 1:
        layers = [reverse_padded(y, lengths) for y in layers]
      outputs[direction] = tuple(layers)
      final_c.append(jnp.stack(cs))
      final_h.append(jnp.stack(hs))
    result = dict(token=token, mask=mask, lengths=lengths,
                  state=(jnp.stack(final_c), jnp.stack(final_h)), **outputs)
    if logits or (self.is_initializing() and cfg.vocab_size > 0):
      if cfg.vocab_size <= 0:
        raise ValueError("ElmoBiLM(logits=True): config.vocab_size is 0 (no softmax)")
      softmax = Softmax(cfg.vocab_size, name="softmax")
      for direction in ("forward", "backward"):
        top = nn.Dropout(cfg.dropout)(outputs[direction][-1], deterministic=deterministic)
        result[f"{direction}_logits"] = softmax(top)
    return result


class Softmax(nn.Module):
  """logits = h W^T + b with W [V, P] (bilm-tf's softmax/W, softmax/b)."""
  vocab_size: int

  @nn.compact
  def __call__(self, h: jax.Array) -> jax.Array:
    p = h.shape[-1]
    w = self.param("kernel", nn.initializers.normal(float(1.0 / np.sqrt(p))),
                   (self.vocab_size, p))
    b = self.param("bias", nn.initializers.zeros, (self.vocab_size,))
    return jnp.einsum("btp,vp->btv", h, w) + b


def elmo_layers(outputs: Dict[str, jax.Array]) -> jax.Array:
  """ElmoBiLM outputs -> the ELMo layers [L + 1, B, T, 2P]: [token; token], then
  [forward_k; backward_k] for each LSTM layer."""
  token = outputs["token"] * outputs["mask"][..., None]
  layers = [jnp.concatenate([token, token], axis=-1)]
  for f, b in zip(outputs["forward"], outputs["backward"]):
    layers.append(jnp.concatenate([f, b], axis=-1))
  return jnp.stack(layers)


class ScalarMix(nn.Module):
  """ELMo_task = gamma * sum_k s_k h_k with s = softmax(w) (Peters et al. 2018, eq. 1).

  Params `weights` [K] (zeros: equal weights at start) and `gamma` (1.0). With
  layer_norm, each layer is first normalised by the mean and variance of all its
  entries at real tokens (mask), as bilm-tf's weight_layers does (eps 1e-12).
  """
  num_layers: int
  layer_norm: bool = False

  @nn.compact
  def __call__(self, layers: jax.Array, mask: Optional[jax.Array] = None) -> jax.Array:
    if layers.shape[0] != self.num_layers:
      raise ValueError(f"ScalarMix: layers has {layers.shape[0]} layers, expected "
                       f"{self.num_layers}")
    w = self.param("weights", nn.initializers.zeros, (self.num_layers,))
    gamma = self.param("gamma", nn.initializers.ones, ())
    if self.layer_norm:
      m = (jnp.ones(layers.shape[1:3]) if mask is None else mask).astype(layers.dtype)
      m = m[None, ..., None]                                          # [1, B, T, 1]
      n = jnp.sum(m) * layers.shape[-1]
      mean = jnp.sum(layers * m, axis=(1, 2, 3), keepdims=True) / n
      var = jnp.sum(((layers - mean) * m) ** 2, axis=(1, 2, 3), keepdims=True) / n
      layers = (layers - mean) * jax.lax.rsqrt(var + 1e-12)
    s = jax.nn.softmax(w)
    return gamma * jnp.einsum("k,kbtd->btd", s, layers)
