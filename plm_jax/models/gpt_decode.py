"""One GPT / GPT-2 decoding step (one token per row) with weights laid out for it.

  weights = step_weights(config, params)            # once per generate call
  cache = cache_from_flax(config, flax_cache)        # after the prefill through the model
  logits, cache = step(config, weights, cache, token [B], position)

The same function as GPTLMHeadModel(decode=True) on a single token (the module
docstring of plm_jax/models/gpt.py: embeddings, pre-LN or post-LN layers with
causal self-attention over the cache, final LayerNorm, tied head), written
for the shape of a decoding step: [batch, embed] activations against whole
weight matrices. That product is memory-bound (every weight read once per
token) and XLA CPU runs it several times faster as W [out, in] . x [batch, in]
(contracting both operands' minor axis, the weight as the left operand) than
as x . W [in, out], the model's training layout; the tied head [vocab, embed]
already has the fast layout. So step_weights stores every kernel once as
[out, in] in the compute dtype (query/key/value fused into one [3 * embed,
embed]), and each product here is `matvec`. bench/bench_gpt_generate.py
prints the time of these products alone (the step's floor).

The cache is a tuple over layers of (key, value) [batch, heads, max_len, head_dim],
the model's own cache arrays; a step writes slot `position` and attends to
slots 0 .. position (later slots are masked, as in the model).
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from plm_jax.layers import common, fused
from plm_jax.layers.attention import MASK_VALUE

Cache = Tuple[Tuple[jax.Array, jax.Array], ...]


def matvec(weight: jax.Array, x: jax.Array) -> jax.Array:
  """weight [out, in], x [batch, in] -> [batch, out] (float32 accumulation)."""
  y = jax.lax.dot_general(weight, x.astype(weight.dtype), (((1,), (1,)), ((), ())),
                          preferred_element_type=jnp.float32)          # [out, batch]
  return y.T


def _layers(cfg, params) -> List[Dict[str, Any]]:
  """The per-layer param trees, unrolled ('layers_{i}') or split from the scanned 'layers'."""
  h = params["transformer"]["h"]
  if "layers" in h:
    return [jax.tree_util.tree_map(lambda x, i=i: x[i], h["layers"])
            for i in range(cfg.num_layers)]
  return [h[f"layers_{i}"] for i in range(cfg.num_layers)]


def step_weights(cfg, params: Any) -> Dict[str, Any]:
  """GPTLMHeadModel params (boxed or not) -> the step's weights: kernels [out, in] in the
  compute dtype, biases and norms float32, the embedding tables as they are."""
  params = nn.meta.unbox(params)
  dtype = common.get_dtype(cfg.dtype)
  layers = []
  for p in _layers(cfg, params):
    att, mlp = p["attention"], p["mlp"]
    embed = att["query"]["kernel"].shape[0]
    qkv = jnp.concatenate([att[n]["kernel"].reshape(embed, -1) for n in ("query", "key", "value")],
                          axis=1)                                      # [embed, 3 * heads * kv]
    layers.append({
        "qkv": qkv.T.astype(dtype),
        "qkv_bias": jnp.concatenate([att[n]["bias"].reshape(-1)
                                     for n in ("query", "key", "value")]),
        "out": att["out"]["kernel"].reshape(-1, embed).T.astype(dtype),   # [embed, heads * kv]
        "out_bias": att["out"]["bias"],
        "wi": mlp["wi"]["kernel"].T.astype(dtype), "wi_bias": mlp["wi"]["bias"],
        "wo": mlp["wo"]["kernel"].T.astype(dtype), "wo_bias": mlp["wo"]["bias"],
        "attention_norm": p["attention_layer_norm"], "mlp_norm": p["mlp_layer_norm"]})
  tr = params["transformer"]
  return {"layers": layers, "wte": tr["wte"]["embedding"], "wpe": tr["wpe"]["embedding"],
          "ln_f": tr.get("ln_f")}


def cache_from_flax(cfg, cache: Any) -> Cache:
  """The model's 'cache' collection -> ((key, value) [batch, heads, max_len, kv] per layer)."""
  h = cache["transformer"]["h"]
  if "layers" in h:
    att = h["layers"]["attention"]
    return tuple((att["cached_key"][i], att["cached_value"][i]) for i in range(cfg.num_layers))
  return tuple((h[f"layers_{i}"]["attention"]["cached_key"],
                h[f"layers_{i}"]["attention"]["cached_value"]) for i in range(cfg.num_layers))


def _norm(cfg, p, x):
  return fused.ops(False).layer_norm(x, p["scale"], p["bias"], cfg.layer_norm_eps)


def _attention(cfg, w, cache_kv, x, position):
  """x [B, embed] float32 -> (attention output [B, embed] float32, updated (key, value))."""
  dtype = common.get_dtype(cfg.dtype)
  batch, embed = x.shape
  heads = cfg.num_heads
  head_dim = embed // heads
  qkv = matvec(w["qkv"], x) + w["qkv_bias"]                          # [B, 3 * embed] float32
  q, k, v = (qkv[:, i * embed:(i + 1) * embed].reshape(batch, heads, head_dim).astype(dtype)
             for i in range(3))                                       # [B, heads, kv]
  q = q * jnp.asarray(head_dim ** -0.5, dtype)
  keys, values = cache_kv
  keys = jax.lax.dynamic_update_slice(keys, k[:, :, None].astype(keys.dtype), (0, 0, position, 0))
  values = jax.lax.dynamic_update_slice(values, v[:, :, None].astype(values.dtype),
                                        (0, 0, position, 0))
  scores = jnp.einsum("bhd,bhtd->bht", q, keys.astype(dtype),
                      preferred_element_type=jnp.float32)             # [B, heads, max_len]
  visible = jnp.arange(keys.shape[2]) <= position
  scores = scores + jnp.where(visible, 0.0, MASK_VALUE).astype(jnp.float32)
  probs = jax.nn.softmax(scores, axis=-1)
  ctx = jnp.einsum("bht,bhtd->bhd", probs.astype(dtype), values.astype(dtype))
  out = matvec(w["out"], ctx.reshape(batch, embed)) + w["out_bias"]  # [B, embed]
  return out, (keys, values)


def _mlp(cfg, w, x):
  act = common.activation(cfg.hidden_act, fused_ops=False)
  h = act(matvec(w["wi"], x) + w["wi_bias"])                         # [B, mlp] float32
  return matvec(w["wo"], h) + w["wo_bias"]                           # [B, embed]


def step(cfg, weights: Dict[str, Any], cache: Cache, token: jax.Array,
         position: jax.Array) -> Tuple[jax.Array, Cache]:
  """token [B] int32 at position (int32 scalar, the same for every row) -> (logits [B, vocab]
  float32, the cache with slot `position` written)."""
  dtype = common.get_dtype(cfg.dtype)
  x = (jnp.take(weights["wte"], token, axis=0).astype(dtype).astype(jnp.float32)
       + jax.lax.dynamic_index_in_dim(weights["wpe"], position, keepdims=False)
       .astype(dtype).astype(jnp.float32))                             # [B, embed]
  new_cache = []
  for w, kv in zip(weights["layers"], cache):
    if cfg.norm_position == "pre":
      a, kv = _attention(cfg, w, kv, _norm(cfg, w["attention_norm"], x), position)
      x = x + a
      x = x + _mlp(cfg, w, _norm(cfg, w["mlp_norm"], x))
    else:
      a, kv = _attention(cfg, w, kv, x, position)
      x = _norm(cfg, w["attention_norm"], x + a)
      x = _norm(cfg, w["mlp_norm"], x + _mlp(cfg, w, x))
    new_cache.append(kv)
  if cfg.norm_position == "pre":
    x = _norm(cfg, weights["ln_f"], x)
  wte = weights["wte"].astype(dtype)
  return matvec(wte, x), tuple(new_cache)                             # [B, vocab]
