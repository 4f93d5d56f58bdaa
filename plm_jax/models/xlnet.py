"""XLNet (Yang et al. 2019): a Transformer-XL backbone with two-stream attention.

  * relative positional encodings: sinusoids of the distance query - key (positions
    klen .. -qlen+1, clamped at clamp_len > 0), projected by each layer's `r` and scored
    with the query plus the r_r bias; content scores use the r_w bias (Dai et al. 2019);
  * relative segment encodings: whether query and key lie in the same segment picks
    one of two learned vectors (seg_embed), scored with the query plus the r_s bias;
    memory positions count as segment 0;
  * segment recurrence: each layer's input over the previous segment (its first
    reuse_len positions, the last mem_len of them) is kept as memory, without gradient;
    every position may attend to all of the memory;
  * two-stream attention: the content stream h sees the keys perm_mask allows plus
    itself; the query stream g (mask_emb at every predicted position, target_mapping
    [B, P, L]) sees the keys perm_mask allows, never its own content. Both streams share
    every parameter of a layer. The LM head (word embedding, tied, + bias) reads g.

Inputs are batch-first as Hugging Face's XLNetModel takes them (its internals are
time-first; the arithmetic is the same):
  perm_mask [B, L, L]: 1 where query i may NOT attend to key j (float or bool);
  target_mapping [B, P, L]: one-hot rows naming the P predicted positions;
  attention_mask [B, L]: 1 keep, 0 padding (keys only) -- or input_mask = 1 - it;
  mems [layers, B, M, H]: the previous segment's memory (None: no memory).
Output: {last_hidden_state [B, P or L, H] (g if target_mapping else h),
content_state [B, L, H], new_mems [layers, B, M', H]} and logits for XLNetLMHeadModel.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from plm_jax.layers import checks, common
from plm_jax.layers.mlp import dense
from plm_jax.layers.norms import LayerNorm
from plm_jax.models.config_base import ModelConfig

NEG_INF = 1e30   # the released code's and Hugging Face's masking constant


@dataclasses.dataclass(frozen=True)
class XLNetConfig(ModelConfig):
  """XLNet-Large by default (24 layers, 1024 wide, 16 heads of 64, 4096 inner)."""
  vocab_size: int = 32000
  hidden_size: int = 1024           # d_model
  num_layers: int = 24
  num_heads: int = 16
  head_dim: int = 64                # d_head
  intermediate_size: int = 4096     # d_inner
  hidden_act: str = "gelu"          # ff_activation
  layer_norm_eps: float = 1e-12
  dropout_rate: float = 0.1         # every dropout (embeddings, attention, residual)
  initializer_range: float = 0.02
  attn_type: str = "bi"             # bi: bidirectional; uni: causal (Transformer-XL)
  bi_data: bool = False             # second half of the batch reads positions reversed
  clamp_len: int = -1               # > 0: relative distances clamped to +-clamp_len
  same_length: bool = False         # uni only: every query sees the same number of keys
  mem_len: int = 0                  # memory kept per layer (0: all of it)
  reuse_len: int = 0                # positions of a segment kept as memory (0: all)
  dtype: str = "float32"
  fused_ops: bool = True
  check_inputs: bool = False

  def __post_init__(self):
    if self.attn_type not in ("bi", "uni"):
      raise ValueError(f"config.model.attn_type={self.attn_type!r}: choose 'bi' or 'uni'")


def positional_encoding(qlen: int, klen: int, d_model: int, clamp_len: int, attn_type: str,
                        bi_data: bool, batch: int) -> jax.Array:
  """Sinusoids of positions klen, klen-1, ..., end ([B or 1, R, H] float32, R = klen - end).

  end = -qlen (bi) or -1 (uni). bi_data: the first half of the batch forward, the
  second half reversed (positions negated)."""
  inv_freq = 1.0 / (10000 ** (jnp.arange(0, d_model, 2.0, dtype=jnp.float32) / d_model))
  end = -qlen if attn_type == "bi" else -1
  fwd = jnp.arange(klen, end, -1.0, dtype=jnp.float32)

  def emb(pos):
    if clamp_len > 0:
      pos = jnp.clip(pos, -clamp_len, clamp_len)
    x = pos[:, None] * inv_freq[None]                                 # [R, H/2]
    return jnp.concatenate([jnp.sin(x), jnp.cos(x)], axis=-1)        # [R, H]
  if not bi_data:
    return emb(fwd)[None]
  if batch % 2:
    raise ValueError(f"bi_data needs an even batch size, got {batch}")
  half = batch // 2
  return jnp.concatenate([jnp.broadcast_to(emb(fwd)[None], (half,) + emb(fwd).shape),
                          jnp.broadcast_to(emb(-fwd)[None], (half,) + emb(fwd).shape)], 0)


def rel_shift(x: jax.Array, klen: int) -> jax.Array:
  """[B, N, I, R] scores against positions klen .. -R+klen+1 -> [B, N, I, klen], where
  entry (i, j) is the score against distance mlen + i - j (Transformer-XL's shift)."""
  b, n, i, r = x.shape
  x = x.reshape(b, n, r, i)[:, :, 1:, :].reshape(b, n, i, r - 1)
  return x[..., :klen]


class RelativeAttention(nn.Module):
  """One layer's two-stream relative attention (q, k, v, o, r [H, N, D]; r_w, r_r, r_s
  biases [N, D]; seg_embed [2, N, D]; layer_norm)."""
  config: XLNetConfig

  def setup(self):
    cfg = self.config
    init = common.partitioned(common.kernel_init(cfg.initializer_range), ("embed", "heads", "kv"))
    shape = (cfg.hidden_size, cfg.num_heads, cfg.head_dim)
    for name in ("q", "k", "v", "o", "r"):
      setattr(self, name, self.param(name, init, shape, jnp.float32))
    binit = common.partitioned(common.kernel_init(cfg.initializer_range), ("heads", "kv"))
    for name in ("r_w_bias", "r_r_bias", "r_s_bias"):
      setattr(self, name, self.param(name, binit, shape[1:], jnp.float32))
    self.seg_embed = self.param(
        "seg_embed", common.partitioned(common.kernel_init(cfg.initializer_range),
                                        (None, "heads", "kv")), (2,) + shape[1:], jnp.float32)
    self.layer_norm = LayerNorm(cfg.layer_norm_eps, fused_ops=cfg.fused_ops)
    self.dropout = common.Dropout(cfg.dropout_rate)

  def core(self, q, k, v, kr, seg_diff, mask, deterministic):
    """q [B, I, N, D], k / v [B, J, N, D], kr [B|1, R, N, D], seg_diff [B, I, J] bool or
    None, mask [B, I, J] (1: hidden) or None -> [B, I, N, D]."""
    dt = q.dtype
    ac = jnp.einsum("bind,bjnd->bnij", q + self.r_w_bias.astype(dt), k)
    if kr.shape[0] == 1:    # one encoding for every row (bi_data off)
      bd = jnp.einsum("bind,rnd->bnir", q + self.r_r_bias.astype(dt), kr[0])
    else:
      bd = jnp.einsum("bind,brnd->bnir", q + self.r_r_bias.astype(dt), kr)
    score = ac.astype(jnp.float32) + rel_shift(bd, k.shape[1]).astype(jnp.float32)
    if seg_diff is not None:
      ef = jnp.einsum("bind,snd->bnis", q + self.r_s_bias.astype(dt), self.seg_embed.astype(dt))
      ef = ef.astype(jnp.float32)
      score = score + jnp.where(seg_diff[:, None], ef[..., 1:], ef[..., :1])
    score = score * (1.0 / self.config.head_dim ** 0.5)
    if mask is not None:
      score = score - NEG_INF * mask[:, None].astype(jnp.float32)
    prob = jax.nn.softmax(score, axis=-1)                               # [B, N, I, J]
    prob = self.dropout(prob, deterministic=deterministic).astype(dt)
    return jnp.einsum("bnij,bjnd->bind", prob, v)

  def post(self, residual, vec, deterministic):
    out = jnp.einsum("bind,hnd->bih", vec, self.o.astype(vec.dtype))
    out = self.dropout(out, deterministic=deterministic).astype(jnp.float32)
    return self.layer_norm(out + residual)

  def __call__(self, h, g, mask_h, mask_g, pos_emb, seg_diff, mem, target_mapping,
               deterministic: bool):
    dt = common.get_dtype(self.config.dtype)
    cat = h if mem is None else jnp.concatenate([mem, h], axis=1)      # [B, J, H]
    cat = cat.astype(dt)
    k = jnp.einsum("bjh,hnd->bjnd", cat, self.k.astype(dt))
    v = jnp.einsum("bjh,hnd->bjnd", cat, self.v.astype(dt))
    kr = jnp.einsum("brh,hnd->brnd", pos_emb.astype(dt), self.r.astype(dt))
    q_h = jnp.einsum("bih,hnd->bind", h.astype(dt), self.q.astype(dt))
    out_h = self.post(h, self.core(q_h, k, v, kr, seg_diff, mask_h, deterministic),
                      deterministic)
    if g is None:
      return out_h, None
    q_g = jnp.einsum("bph,hnd->bpnd", g.astype(dt), self.q.astype(dt))
    if target_mapping is not None:   # to the positions predicted, and back
      tm = target_mapping.astype(dt)
      q_g = jnp.einsum("bpnd,bpl->blnd", q_g, tm)
      vec = self.core(q_g, k, v, kr, seg_diff, mask_g, deterministic)
      vec = jnp.einsum("blnd,bpl->bpnd", vec, tm)
    else:
      vec = self.core(q_g, k, v, kr, seg_diff, mask_g, deterministic)
    return out_h, self.post(g, vec, deterministic)


class FeedForward(nn.Module):
  """layer_1 [H, inner] -> activation -> layer_2 [inner, H], residual, layer_norm."""
  config: XLNetConfig

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    cfg = self.config
    dt = common.get_dtype(cfg.dtype)
    drop = common.Dropout(cfg.dropout_rate)
    y = dense(cfg.intermediate_size, ("embed", "mlp"), cfg.initializer_range, dt, "layer_1",
              fused_ops=cfg.fused_ops)(x.astype(dt))
    y = drop(common.activation(cfg.hidden_act, cfg.fused_ops)(y), deterministic=deterministic)
    y = dense(cfg.hidden_size, ("mlp", "embed"), cfg.initializer_range, dt, "layer_2",
              fused_ops=cfg.fused_ops)(y)
    y = drop(y, deterministic=deterministic).astype(jnp.float32)
    return LayerNorm(cfg.layer_norm_eps, fused_ops=cfg.fused_ops, name="layer_norm")(y + x)


class XLNetLayer(nn.Module):
  config: XLNetConfig

  @nn.compact
  def __call__(self, h, g, mask_h, mask_g, pos_emb, seg_diff, mem, target_mapping,
               deterministic: bool = True):
    h, g = RelativeAttention(self.config, name="rel_attn")(
        h, g, mask_h, mask_g, pos_emb, seg_diff, mem, target_mapping, deterministic)
    ff = FeedForward(self.config, name="ff")
    return ff(h, deterministic), None if g is None else ff(g, deterministic)


def attention_masks(batch: int, qlen: int, mlen: int, cfg: XLNetConfig,
                    input_mask: Optional[jax.Array], perm_mask: Optional[jax.Array]):
  """(mask_h, mask_g), each [B, qlen, mlen + qlen] float32 (1: hidden) or None.

  mask_g: padding keys (input_mask), perm_mask, and the causal mask (uni); the memory
  is never hidden. mask_h: the same, but every position sees its own content."""
  klen = mlen + qlen
  mask = None
  if cfg.attn_type == "uni":
    i = jnp.arange(qlen)[:, None]
    j = jnp.arange(klen)[None]
    causal = j > mlen + i
    if cfg.same_length:
      causal = causal | (j < i)
    mask = jnp.broadcast_to(causal.astype(jnp.float32)[None], (batch, qlen, klen))
  data = None
  if input_mask is not None:
    data = jnp.broadcast_to(input_mask.astype(jnp.float32)[:, None, :], (batch, qlen, qlen))
  if perm_mask is not None:
    data = perm_mask.astype(jnp.float32) + (0.0 if data is None else data)
  if data is not None:
    data = jnp.pad(data, ((0, 0), (0, 0), (mlen, 0)))
    mask = data if mask is None else mask + data
  if mask is None:
    return None, None
  mask_g = (mask > 0).astype(jnp.float32)
  eye = jnp.pad(jnp.eye(qlen, dtype=jnp.float32), ((0, 0), (mlen, 0)))
  mask_h = ((mask_g - eye[None]) > 0).astype(jnp.float32)
  return mask_h, mask_g


class XLNetModel(nn.Module):
  """word_embedding, mask_emb [1, 1, H], layer_{i} (rel_attn, ff); see the module doc."""
  config: XLNetConfig

  def setup(self):
    cfg = self.config
    self.word_embedding = self.param(
        "word_embedding", common.partitioned(common.kernel_init(cfg.initializer_range),
                                             ("vocab", "embed")),
        (cfg.vocab_size, cfg.hidden_size), jnp.float32)
    self.mask_emb = self.param(
        "mask_emb", common.partitioned(common.kernel_init(cfg.initializer_range),
                                       (None, None, "embed")), (1, 1, cfg.hidden_size),
        jnp.float32)
    self.layers = [XLNetLayer(cfg, name=f"layer_{i}") for i in range(cfg.num_layers)]
    self.dropout = common.Dropout(cfg.dropout_rate)

  def __call__(self, input_ids: jax.Array, token_type_ids: Optional[jax.Array] = None,
               attention_mask: Optional[jax.Array] = None,
               perm_mask: Optional[jax.Array] = None,
               target_mapping: Optional[jax.Array] = None,
               mems: Optional[jax.Array] = None, input_mask: Optional[jax.Array] = None,
               deterministic: bool = True) -> Dict[str, jax.Array]:
    cfg = self.config
    if attention_mask is not None and input_mask is not None:
      raise ValueError("give attention_mask (1 keep) or input_mask (1 padding), not both")
    if cfg.check_inputs:
      checks.check_ids("input_ids", input_ids, cfg.vocab_size, "vocab_size")
    batch, qlen = input_ids.shape
    if mems is not None and mems.shape[0] != cfg.num_layers:
      raise ValueError(f"mems: {mems.shape[0]} layers, the model has {cfg.num_layers}")
    mlen = 0 if mems is None else mems.shape[2]
    if input_mask is None and attention_mask is not None:
      input_mask = 1.0 - attention_mask.astype(jnp.float32)
    mask_h, mask_g = attention_masks(batch, qlen, mlen, cfg, input_mask, perm_mask)
    h = jnp.take(self.word_embedding, input_ids, axis=0)               # [B, L, H]
    h = self.dropout(h, deterministic=deterministic)
    g = None
    if target_mapping is not None:
      g = jnp.broadcast_to(self.mask_emb, (batch, target_mapping.shape[1], cfg.hidden_size))
      g = self.dropout(g, deterministic=deterministic)                   # [B, P, H]
    seg_diff = None
    if token_type_ids is not None:
      cat_ids = jnp.pad(token_type_ids, ((0, 0), (mlen, 0)))
      seg_diff = token_type_ids[:, :, None] != cat_ids[:, None, :]      # [B, L, M + L]
    pos_emb = positional_encoding(qlen, mlen + qlen, cfg.hidden_size, cfg.clamp_len,
                                  cfg.attn_type, cfg.bi_data, batch)
    pos_emb = self.dropout(pos_emb, deterministic=deterministic)
    new_mems = []
    for i, layer in enumerate(self.layers):
      mem = None if mems is None else mems[i]
      new_mems.append(self.cache_mem(h, mem))
      h, g = layer(h, g, mask_h, mask_g, pos_emb, seg_diff, mem, target_mapping, deterministic)
    out = self.dropout(g if g is not None else h, deterministic=deterministic)
    return {"last_hidden_state": out, "content_state": h, "new_mems": jnp.stack(new_mems)}

  def cache_mem(self, h: jax.Array, mem: Optional[jax.Array]) -> jax.Array:
    """This layer's next memory: [mem; h[:, :reuse_len]], its last mem_len, no gradient."""
    cfg = self.config
    if cfg.reuse_len > 0:
      h = h[:, :cfg.reuse_len]
    if mem is not None:
      h = jnp.concatenate([mem.astype(h.dtype), h], axis=1)
    if cfg.mem_len > 0:
      h = h[:, -cfg.mem_len:]
    return jax.lax.stop_gradient(h)

  def attend(self, hidden: jax.Array) -> jax.Array:
    """[..., H] -> [..., vocab] scores against the word embedding (tied head, no bias)."""
    dt = common.get_dtype(self.config.dtype)
    return jnp.einsum("...h,vh->...v", hidden.astype(dt),
                      self.word_embedding.astype(dt)).astype(jnp.float32)


class XLNetLMHeadModel(nn.Module):
  """XLNetModel ('transformer') + lm_loss: the tied word embedding plus a bias [vocab]."""
  config: XLNetConfig

  @nn.compact
  def __call__(self, input_ids: jax.Array, token_type_ids: Optional[jax.Array] = None,
               attention_mask: Optional[jax.Array] = None,
               perm_mask: Optional[jax.Array] = None,
               target_mapping: Optional[jax.Array] = None,
               mems: Optional[jax.Array] = None, input_mask: Optional[jax.Array] = None,
               deterministic: bool = True) -> Dict[str, jax.Array]:
    transformer = XLNetModel(self.config, name="transformer")
    out = transformer(input_ids, token_type_ids, attention_mask, perm_mask,
                           target_mapping, mems, input_mask, deterministic)
    bias = self.param("lm_loss_bias", common.partitioned(nn.initializers.zeros, ("vocab",)),
                      (self.config.vocab_size,), jnp.float32)
    return dict(out, logits=transformer.attend(out["last_hidden_state"]) + bias)


def init_params(model: nn.Module, rng: jax.Array, length: int = 4) -> Any:
  """Fresh (boxed) params of an XLNetModel / XLNetLMHeadModel, all of them (query stream
  included: a one-position target_mapping). Two rows: bi_data splits the batch in halves."""
  ids = jnp.zeros((2, length), jnp.int32)
  tm = jnp.zeros((2, 1, length), jnp.float32).at[:, 0, 0].set(1.0)
  return model.init(rng, ids, token_type_ids=ids, target_mapping=tm)["params"]
