"""The layers beyond BERT: attention switches and masks, decode cache, norms, gated MLP,
pre/post-LN layer, the generic stack, and the fused_ops switch (tiny sizes)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plm_jax.layers import attention as attn_lib
from plm_jax.layers.attention import MultiHeadAttention
from plm_jax.layers.mlp import Mlp
from plm_jax.layers.norms import LayerNorm, RMSNorm
from plm_jax.layers.transformer import LayerStack, TransformerLayer
from plm_jax.models.bert import BertConfig, BertForPreTraining

KEY = jax.random.key(0)


def _normal(i, shape, scale=1.0):
  return jax.random.normal(jax.random.fold_in(KEY, i), shape) * scale


def _params(module, *args, **kw):
  return nn.unbox(module.init(KEY, *args, **kw))["params"]


def _np(tree):
  return jax.tree_util.tree_map(np.asarray, tree)


def _np_attention(p, xq, xkv, bias=None, scale=None):
  """numpy reference: the same param layout, optional biases, additive float bias."""
  proj = lambda x, n: np.einsum("ble,ehd->blhd", x, p[n]["kernel"]) + p[n].get("bias", 0.0)
  q, k, v = proj(xq, "query"), proj(xkv, "key"), proj(xkv, "value")
  scale = q.shape[-1] ** -0.5 if scale is None else scale
  logits = np.einsum("bqhd,bkhd->bhqk", q * scale, k) + (0.0 if bias is None else bias)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  out = np.einsum("bhqk,bkhd->bqhd", probs, v)
  return np.einsum("bqhd,hde->bqe", out, p["out"]["kernel"]) + p["out"].get("bias", 0.0)


@pytest.mark.parametrize("use_bias,scale", [(True, None), (False, 1.0)])
def test_cross_attention_bias_switch_and_scale_match_numpy(use_bias, scale):
  xq, xkv = _normal(1, (2, 3, 8)), _normal(2, (2, 5, 6))   # other length and width
  pad = attn_lib.padding_mask_bias(jnp.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]))
  mod = MultiHeadAttention(num_heads=2, initializer_range=0.3, use_bias=use_bias, scale=scale)
  p = _params(mod, xq, xkv, bias=pad)
  assert ("bias" in p["query"]) == use_bias and ("bias" in p["out"]) == use_bias
  assert p["key"]["kernel"].shape == (6, 2, 4) and p["out"]["kernel"].shape == (2, 4, 8)
  out = mod.apply({"params": p}, xq, xkv, bias=pad)
  assert out.shape == (2, 3, 8)
  ref = _np_attention(_np(p), np.asarray(xq), np.asarray(xkv), np.asarray(pad), scale)
  np.testing.assert_allclose(np.asarray(out), ref, atol=2e-5)
  if scale == 1.0:  # the scale is used: the default would give another result
    other = _np_attention(_np(p), np.asarray(xq), np.asarray(xkv), np.asarray(pad), None)
    assert not np.allclose(ref, other, atol=1e-3)


def test_causal_attention_ignores_later_tokens():
  x = _normal(3, (2, 6, 8))
  mod = MultiHeadAttention(num_heads=2, causal=True, initializer_range=0.3)
  p = _params(mod, x)
  out = np.asarray(mod.apply({"params": p}, x))
  t = 2
  out2 = np.asarray(mod.apply({"params": p}, x.at[:, t + 1:].set(50.0)))
  np.testing.assert_allclose(out2[:, :t + 1], out[:, :t + 1], atol=1e-5)
  assert not np.allclose(out2[:, t + 1:], out[:, t + 1:], atol=1e-3)
  # The same as an explicit causal bias on a non-causal module.
  plain = MultiHeadAttention(num_heads=2, initializer_range=0.3)
  np.testing.assert_allclose(
      np.asarray(plain.apply({"params": p}, x, bias=attn_lib.causal_mask_bias(6))), out, atol=1e-6)


def test_segment_mask_makes_packed_sequences_independent():
  x = _normal(4, (1, 7, 8))
  segments = jnp.array([[1, 1, 1, 2, 2, 2, 2]])
  mod = MultiHeadAttention(num_heads=2, initializer_range=0.3)
  p = {"params": _params(mod, x)}
  packed = mod.apply(p, x, bias=attn_lib.segment_mask_bias(segments))
  for part in (slice(0, 3), slice(3, 7)):
    np.testing.assert_allclose(np.asarray(packed[:, part]), np.asarray(mod.apply(p, x[:, part])),
                               atol=1e-5)
  assert attn_lib.combine_biases(None, None) is None
  both = attn_lib.combine_biases(attn_lib.causal_mask_bias(7), attn_lib.segment_mask_bias(segments))
  assert both.shape == (1, 1, 7, 7)
  assert float(both[0, 0, 4, 2]) < -1e8 and float(both[0, 0, 4, 3]) == 0


def test_norm_formulas():
  x = _normal(5, (2, 3, 8), 3.0) + 1.0
  rms = RMSNorm(1e-6)
  p = _params(rms, x)
  assert sorted(p) == ["scale"]
  p = {"scale": jnp.linspace(0.5, 2.0, 8)}
  xn = np.asarray(x)
  ref = xn / np.sqrt((xn ** 2).mean(-1, keepdims=True) + 1e-6) * np.asarray(p["scale"])
  out = rms.apply({"params": p}, x.astype(jnp.bfloat16))
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(rms.apply({"params": p}, x)), ref, rtol=1e-5)
  ln = LayerNorm(1e-6, use_bias=False)
  assert sorted(_params(ln, x)) == ["scale"]
  ref_ln = (xn - xn.mean(-1, keepdims=True)) / np.sqrt(xn.var(-1, keepdims=True) + 1e-6)
  np.testing.assert_allclose(np.asarray(ln.apply({"params": {"scale": jnp.ones(8)}}, x)),
                             ref_ln, atol=1e-5)


def test_gated_mlp_formula_without_bias():
  x = _normal(6, (2, 3, 4))
  mlp = Mlp(intermediate_size=6, hidden_act="gelu_tanh", initializer_range=0.5, use_bias=False,
            gated=True)
  p = _params(mlp, x)
  assert sorted(p) == ["wi_0", "wi_1", "wo"] and all(sorted(v) == ["kernel"] for v in p.values())
  k = lambda n: p[n]["kernel"]
  ref = (jax.nn.gelu(x @ k("wi_0"), approximate=True) * (x @ k("wi_1"))) @ k("wo")
  np.testing.assert_allclose(np.asarray(mlp.apply({"params": p}, x)), np.asarray(ref), atol=1e-5)


def _np_ln(x, p, eps):
  y = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
  return y * p["scale"] + p.get("bias", 0.0)


def _np_rms(x, p, eps):
  return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * p["scale"]


@pytest.mark.parametrize("position,norm_type", [("post", "layernorm"), ("pre", "rmsnorm")])
def test_pre_and_post_norm_layer_match_reference(position, norm_type):
  kw = dict(num_heads=2, intermediate_size=12, hidden_act="relu", norm_position=position,
            norm_type=norm_type, norm_eps=1e-6, initializer_range=0.3,
            use_bias=norm_type == "layernorm")
  layer = TransformerLayer(**kw)
  x = _normal(7, (2, 4, 8))
  p = _params(layer, x)
  out, aux = layer.apply({"params": p}, x)
  assert aux is None
  q = _np(p)
  norm = (lambda h, n: _np_ln(h, q[n], 1e-6)) if norm_type == "layernorm" else (
      lambda h, n: _np_rms(h, q[n], 1e-6))
  mha = lambda h: _np_attention(q["attention"], h, h)
  mlp = lambda h: (np.maximum(h @ q["mlp"]["wi"]["kernel"] + q["mlp"]["wi"].get("bias", 0.0), 0)
                   @ q["mlp"]["wo"]["kernel"] + q["mlp"]["wo"].get("bias", 0.0))
  h = np.asarray(x)
  for name, f in (("attention", mha), ("mlp", mlp)):
    n = f"{name}_layer_norm"
    h = norm(h + f(h), n) if position == "post" else h + f(norm(h, n))
  np.testing.assert_allclose(np.asarray(out), h, atol=2e-5)


DECODER = dict(num_heads=2, intermediate_size=12, norm_position="pre", norm_type="rmsnorm",
               norm_eps=1e-6, causal=True, cross_attention=True, use_bias=False,
               attention_scale=1.0, mlp_gated=True, hidden_act="gelu_tanh", initializer_range=0.3)


def _decoder_inputs():
  x, enc = _normal(8, (2, 5, 8)), _normal(9, (2, 3, 6))
  cross = attn_lib.padding_mask_bias(jnp.array([[1, 1, 1], [1, 1, 0]]))
  return x, enc, cross


def test_stack_scan_matches_unrolled_with_encoder_outputs():
  x, enc, cross = _decoder_inputs()
  unrolled = LayerStack(TransformerLayer, DECODER, num_layers=2)
  p = _params(unrolled, x, encoder_outputs=enc, cross_bias=cross)
  assert sorted(p) == ["layers_0", "layers_1"]
  assert sorted(p["layers_0"]) == ["attention", "attention_layer_norm", "cross_attention",
                                   "cross_attention_layer_norm", "mlp", "mlp_layer_norm"]
  scanned = LayerStack(TransformerLayer, DECODER, num_layers=2, scan_layers=True,
                       remat_policy="full")
  stacked = {"layers": jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]),
                                              p["layers_0"], p["layers_1"])}
  want = unrolled.apply({"params": p}, x, encoder_outputs=enc, cross_bias=cross)
  got = scanned.apply({"params": stacked}, x, None, enc, cross)  # positional extras too
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)
  # The encoder outputs are used (and the masked encoder position is not).
  moved = unrolled.apply({"params": p}, x, encoder_outputs=enc.at[1, 2].set(9.0), cross_bias=cross)
  np.testing.assert_allclose(np.asarray(moved), np.asarray(want), atol=1e-6)
  assert not np.allclose(np.asarray(unrolled.apply({"params": p}, x, encoder_outputs=enc * 2,
                                                   cross_bias=cross)), np.asarray(want), atol=1e-3)


@pytest.mark.parametrize("scan", [False, True])
def test_decode_cache_step_by_step_equals_full_causal_pass(scan):
  x, enc, cross = _decoder_inputs()
  stack = LayerStack(TransformerLayer, DECODER, num_layers=2, scan_layers=scan)
  variables = stack.init(KEY, x, encoder_outputs=enc, cross_bias=cross, decode=True)
  params, cache = variables["params"], variables["cache"]
  full = stack.apply({"params": params}, x, encoder_outputs=enc, cross_bias=cross)

  @jax.jit
  def step(cache, x_t):  # one compile for every step
    y, mutated = stack.apply({"params": params, "cache": cache}, x_t, encoder_outputs=enc,
                             cross_bias=cross, decode=True, mutable=["cache"])
    return y, mutated["cache"]

  steps = []
  for t in range(x.shape[1]):
    y, cache = step(cache, x[:, t:t + 1])
    steps.append(y)
  np.testing.assert_allclose(np.asarray(jnp.concatenate(steps, 1)), np.asarray(full), atol=2e-5)
  index = [v for k, v in jax.tree_util.tree_flatten_with_path(cache)[0]
           if "cache_index" in jax.tree_util.keystr(k)]
  assert index and all(np.all(np.asarray(i) == x.shape[1]) for i in index)


def test_fused_ops_on_and_off_same_bert_outputs_and_gradients():
  # One layer, no dropout (the hashed dropout is the same either way): a short compile.
  cfg = BertConfig(vocab_size=41, hidden_size=12, num_layers=1, num_heads=3, intermediate_size=20,
                   max_position_embeddings=16, initializer_range=0.2, hidden_dropout_rate=0.0,
                   attention_dropout_rate=0.0)
  ids = jnp.asarray(np.random.RandomState(0).randint(1, 41, size=(2, 7)))
  mask = jnp.array([[1] * 7, [1] * 4 + [0] * 3])
  pos = jnp.array([[1, 2], [0, 3]])
  params = _params(BertForPreTraining(cfg), ids, mask)

  def loss_and_grad(fused_ops):
    model = BertForPreTraining(cfg.replace(fused_ops=fused_ops))

    def loss(p):
      o = model.apply({"params": p}, ids, mask, masked_lm_positions=pos)
      return jnp.sum(jnp.sin(o["prediction_logits"])) + jnp.sum(o["seq_relationship_logits"] ** 2)
    return jax.jit(jax.value_and_grad(loss))(params)

  (l_on, g_on), (l_off, g_off) = loss_and_grad(True), loss_and_grad(False)
  np.testing.assert_allclose(float(l_on), float(l_off), rtol=1e-5)
  flat_on = jax.tree_util.tree_flatten_with_path(g_on)[0]
  for (path, a), b in zip(flat_on, jax.tree_util.tree_leaves(g_off)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5,
                               err_msg=jax.tree_util.keystr(path))
  assert float(jnp.max(jnp.abs(g_on["bert"]["encoder"]["layers_0"]["mlp"]["wi"]["kernel"]))) > 0
