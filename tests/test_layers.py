"""Unit tests of plm_jax.layers on tiny sizes."""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plm_jax.layers import common, fused
from plm_jax.layers.attention import MultiHeadAttention, padding_mask_bias
from plm_jax.layers.embeddings import Embed, TextEmbeddings
from plm_jax.layers.mlp import Mlp
from plm_jax.layers.norms import LayerNorm
from plm_jax.layers.transformer import Encoder
from plm_jax.models.bert import BertConfig

KEY = jax.random.key(0)


def _names(tree):
  """Logical names of every boxed param, as a flat {path: names} dict."""
  leaves = jax.tree_util.tree_flatten_with_path(
      tree, is_leaf=lambda x: isinstance(x, nn.Partitioned))[0]
  return {jax.tree_util.keystr(p): getattr(v, "names", None) for p, v in leaves}


def test_layer_norm_float32_from_bf16_and_matches_formula():
  x = jax.random.normal(KEY, (2, 3, 8)) * 3 + 1
  ln = LayerNorm(1e-6)
  params = ln.init(KEY, x)
  out = ln.apply(params, x.astype(jnp.bfloat16))
  assert out.dtype == jnp.float32
  xb = np.asarray(x.astype(jnp.bfloat16).astype(jnp.float32))
  ref = (xb - xb.mean(-1, keepdims=True)) / np.sqrt(xb.var(-1, keepdims=True) + 1e-6)
  np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5)
  assert set(_names(params["params"]).values()) == {("embed",)}


def test_embed_lookup_and_attend():
  emb = Embed(11, 6, ("vocab", "embed"), stddev=0.5)
  ids = jnp.array([[1, 2, 10]])
  params = emb.init(KEY, ids)
  table = np.asarray(nn.unbox(params)["params"]["embedding"])
  assert table.shape == (11, 6)
  np.testing.assert_array_equal(np.asarray(emb.apply(params, ids)), table[[[1, 2, 10]]])
  q = np.asarray(jax.random.normal(KEY, (2, 3, 6)))
  scores = emb.apply(params, jnp.asarray(q), method=Embed.attend)
  np.testing.assert_allclose(np.asarray(scores), q @ table.T, rtol=1e-5, atol=1e-5)
  assert _names(params["params"]) == {"['embedding']": ("vocab", "embed")}


def test_text_embeddings_rejects_too_long():
  mod = TextEmbeddings(vocab_size=10, hidden_size=4, max_position_embeddings=5, type_vocab_size=2)
  with pytest.raises(ValueError, match="max_position_embeddings"):
    mod.init(KEY, jnp.zeros((1, 6), jnp.int32))


def _reference_attention(p, x, mask, heads):
  """Plain numpy multi-head attention with the same parameter layout."""
  q = np.einsum("ble,ehd->blhd", x, p["query"]["kernel"]) + p["query"]["bias"]
  k = np.einsum("ble,ehd->blhd", x, p["key"]["kernel"]) + p["key"]["bias"]
  v = np.einsum("ble,ehd->blhd", x, p["value"]["kernel"]) + p["value"]["bias"]
  logits = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
  logits = np.where(mask[:, None, None, :] > 0, logits, -np.inf)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  out = np.einsum("bhqk,bkhd->bqhd", probs, v)
  return np.einsum("bqhd,hde->bqe", out, p["out"]["kernel"]) + p["out"]["bias"]


def test_attention_layout_and_matches_reference():
  heads, embed = 3, 12
  x = jax.random.normal(KEY, (2, 5, embed))
  mask = jnp.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
  attn = MultiHeadAttention(num_heads=heads, initializer_range=0.3)
  params = attn.init(KEY, x, bias=padding_mask_bias(mask))
  names = _names(params["params"])
  assert names["['query']['kernel']"] == ("embed", "heads", "kv")
  assert names["['query']['bias']"] == ("heads", "kv")
  assert names["['out']['kernel']"] == ("heads", "kv", "embed")
  assert names["['out']['bias']"] == ("embed",)
  p = jax.tree_util.tree_map(np.asarray, nn.unbox(params)["params"])
  assert p["key"]["kernel"].shape == (embed, heads, embed // heads)
  assert p["out"]["kernel"].shape == (heads, embed // heads, embed)
  out = attn.apply(params, x, bias=padding_mask_bias(mask))
  ref = _reference_attention(p, np.asarray(x), np.asarray(mask), heads)
  np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5)
  # Masked keys do not influence anything: perturb them.
  x2 = x.at[1, 3:].set(100.0)
  out2 = attn.apply(params, x2, bias=padding_mask_bias(mask))
  np.testing.assert_allclose(np.asarray(out2[1, :3]), np.asarray(out[1, :3]), atol=1e-5)


def test_attention_dropout_only_when_not_deterministic():
  x = jax.random.normal(KEY, (2, 4, 8))
  attn = MultiHeadAttention(num_heads=2, dropout_rate=0.5)
  params = attn.init(KEY, x)
  det = attn.apply(params, x, deterministic=True)
  det2 = attn.apply(params, x, deterministic=True, rngs={"dropout": jax.random.key(5)})
  np.testing.assert_array_equal(np.asarray(det), np.asarray(det2))
  drop_a = attn.apply(params, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
  drop_b = attn.apply(params, x, deterministic=False, rngs={"dropout": jax.random.key(2)})
  assert not np.allclose(np.asarray(drop_a), np.asarray(det))
  assert not np.allclose(np.asarray(drop_a), np.asarray(drop_b))


def test_attention_traces_under_a_mesh_with_logical_rules():
  """Kernels are created at their 3-D logical shape, so an active mesh + rules work
  (nn.DenseGeneral's flattened 2-D init kernel failed here)."""
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:4]).reshape(2, 2), ("data", "tensor"))
  rules = (("activation_batch", "data"), ("activation_heads", "tensor"), ("heads", "tensor"),
           ("embed", None), ("kv", None), ("activation_length", None),
           ("activation_embed", None), ("activation_kv", None))
  x = jax.random.normal(KEY, (4, 5, 8))
  attn = MultiHeadAttention(num_heads=2)
  ref_params = attn.init(KEY, x)
  ref = attn.apply(ref_params, x)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    params = jax.jit(attn.init)(KEY, x)
    out = jax.jit(attn.apply)(params, x)
  assert _names(params["params"])["['query']['kernel']"] == ("embed", "heads", "kv")
  for a, b in zip(jax.tree_util.tree_leaves(nn.unbox(params)),
                  jax.tree_util.tree_leaves(nn.unbox(ref_params))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-6)


def test_attention_rejects_indivisible_heads():
  with pytest.raises(ValueError, match="divisible"):
    MultiHeadAttention(num_heads=5).init(KEY, jnp.zeros((1, 2, 8)))


@pytest.mark.parametrize("act,fn", [
    ("gelu", lambda h: jax.nn.gelu(h, approximate=False)),
    ("gelu_tanh", lambda h: jax.nn.gelu(h, approximate=True)),
    ("relu", jax.nn.relu)])
def test_mlp_activations(act, fn):
  x = jax.random.normal(KEY, (2, 3, 4)) * 2
  mlp = Mlp(intermediate_size=7, hidden_act=act, initializer_range=0.5)
  params = mlp.init(KEY, x)
  p = nn.unbox(params)["params"]
  assert p["wi"]["kernel"].shape == (4, 7) and p["wo"]["kernel"].shape == (7, 4)
  ref = fn(x @ p["wi"]["kernel"] + p["wi"]["bias"]) @ p["wo"]["kernel"] + p["wo"]["bias"]
  np.testing.assert_allclose(np.asarray(mlp.apply(params, x)), np.asarray(ref), atol=1e-5)
  assert _names(params["params"])["['wi']['kernel']"] == ("embed", "mlp")
  assert _names(params["params"])["['wi']['bias']"] == ("mlp",)


def test_gelu_exact_differs_from_tanh_and_unknown_raises():
  x = jnp.linspace(-3, 3, 7)
  assert not np.allclose(common.activation("gelu")(x), common.activation("gelu_tanh")(x), atol=1e-6)
  with pytest.raises(ValueError, match="hidden_act"):
    common.activation("swishy")


def _cfg(**kw):
  base = dict(vocab_size=30, hidden_size=8, num_layers=3, num_heads=2, intermediate_size=16,
              max_position_embeddings=16, hidden_dropout_rate=0.0, attention_dropout_rate=0.0,
              initializer_range=0.2)
  base.update(kw)
  return BertConfig(**base)


def stack_layers(encoder_params, num_layers):
  """{'layers_i': tree} -> {'layers': tree with a leading [num_layers] axis}."""
  trees = [encoder_params[f"layers_{i}"] for i in range(num_layers)]
  return {"layers": jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)}


def test_encoder_scan_matches_unrolled():
  cfg = _cfg()
  x = jax.random.normal(KEY, (2, 6, 8))
  bias = padding_mask_bias(jnp.array([[1] * 6, [1] * 4 + [0] * 2]))
  unrolled = Encoder(cfg)
  params = nn.unbox(unrolled.init(KEY, x, bias))["params"]
  assert sorted(params) == ["layers_0", "layers_1", "layers_2"]
  scanned = Encoder(cfg.replace(scan_layers=True))
  sparams = nn.unbox(scanned.init(KEY, x, bias))["params"]
  stacked = stack_layers(params, 3)
  assert jax.tree_util.tree_structure(stacked) == jax.tree_util.tree_structure(sparams)
  assert jax.tree_util.tree_map(jnp.shape, stacked) == jax.tree_util.tree_map(jnp.shape, sparams)
  out = unrolled.apply({"params": params}, x, bias)
  out_scan = scanned.apply({"params": stacked}, x, bias)
  np.testing.assert_allclose(np.asarray(out), np.asarray(out_scan), atol=1e-5)
  # Scanned layers get a leading 'layers' logical axis.
  names = _names(scanned.init(KEY, x, bias)["params"])
  assert names["['layers']['attention']['query']['kernel']"] == ("layers", "embed", "heads", "kv")


@pytest.mark.parametrize("scan,policy,drop", [
    # (the unrolled full-remat + dropout case compiles for ~55 s on 2 cores: slow tier; the
    # scanned one replays the same masks through the same remat and stays in the fast tier)
    pytest.param(False, "full", 0.1, marks=pytest.mark.slow), (True, "full", 0.1),
    (False, "dots_saveable", 0.0),
    (True, "dots_with_no_batch_dims_saveable", 0.0)])
def test_remat_policies_same_values_and_grads(scan, policy, drop):
  # Dropout (the recomputed pass must replay the same masks) with full remat, unrolled
  # and scanned; the policies that keep some dots without it (a dropout site adds
  # about 6 s of CPU compile per layer: the mask hash is fused into each consumer).
  cfg = _cfg(num_layers=2, scan_layers=scan, hidden_dropout_rate=drop)
  x = jax.random.normal(KEY, (2, 5, 8))
  base, remat = Encoder(cfg), Encoder(cfg.replace(remat_policy=policy))
  params = nn.unbox(base.init(KEY, x))["params"]

  def loss(model, p):
    y = model.apply({"params": p}, x, deterministic=False, rngs={"dropout": jax.random.key(3)})
    return jnp.sum(y ** 2)

  l0, g0 = jax.jit(jax.value_and_grad(lambda p: loss(base, p)))(params)
  l1, g1 = jax.jit(jax.value_and_grad(lambda p: loss(remat, p)))(params)
  np.testing.assert_allclose(float(l0), float(l1), rtol=1e-6)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), g0, g1)


def test_unknown_remat_policy_raises():
  with pytest.raises(ValueError, match="remat_policy"):
    Encoder(_cfg(remat_policy="some")).init(KEY, jnp.zeros((1, 2, 8)))


def test_dropout_drops_at_the_rate_and_keeps_the_expectation():
  x = jnp.ones((1000, 1000), jnp.float32)
  y = common.dropout(jax.random.PRNGKey(0), x, 0.1)
  dropped = float(jnp.mean(y == 0))
  assert abs(dropped - 0.1) < 0.002, dropped                       # 1e6 draws: sd ~3e-4
  assert abs(float(jnp.mean(y)) - 1.0) < 0.005                     # inverted scaling
  kept = y[y != 0]
  np.testing.assert_allclose(np.asarray(kept), 2.0 ** 32 / (2 ** 32 - round(0.1 * 2 ** 32)), rtol=1e-6)
  # Different keys give different masks; the same key the same mask.
  y2 = common.dropout(jax.random.PRNGKey(1), x, 0.1)
  assert not bool(jnp.all(y == y2))
  assert bool(jnp.all(y == common.dropout(jax.random.PRNGKey(0), x, 0.1)))
  assert common.dropout(jax.random.PRNGKey(0), x, 0.0) is x


def test_threefry2x32_matches_jax():
  """The unrolled hash behind dropout is jax's Threefry-2x32, word for word."""
  import jax.extend.random as jex_random  # pylint: disable=import-outside-toplevel
  key = jax.random.key_data(jax.random.PRNGKey(42))
  counts = jnp.arange(20, dtype=jnp.uint32) * jnp.uint32(2654435761)
  expected = jex_random.threefry_2x32(key, counts)
  x0, x1 = common.threefry2x32(key[0], key[1], counts[:10], counts[10:])
  np.testing.assert_array_equal(np.concatenate([x0, x1]), np.asarray(expected))


def test_element_counters_number_every_element_once():
  for shape, limit in [((4, 5, 6), 2 ** 32), ((4, 5, 6), 64), ((4, 5, 6), 21), ((6, 3), 7)]:
    low, high = common._element_counters(shape, limit=limit)  # pylint: disable=protected-access
    low, high = np.broadcast_to(low, shape), np.broadcast_to(high, shape)
    pairs = set(zip(low.ravel().tolist(), high.ravel().tolist()))
    assert len(pairs) == math.prod(shape), (shape, limit)
  with pytest.raises(ValueError, match="cannot number"):
    common._element_counters((5, 5), limit=4)  # pylint: disable=protected-access


def test_dropout_gradient_is_the_same_mask_and_scale():
  x = jax.random.normal(jax.random.PRNGKey(3), (16, 33))
  key = jax.random.PRNGKey(4)
  y, vjp = jax.vjp(lambda v: common.dropout(key, v, 0.25), x)
  (g,) = vjp(jnp.ones_like(x))
  scale = 2.0 ** 32 / (2 ** 32 - round(0.25 * 2 ** 32))
  np.testing.assert_allclose(np.asarray(g), np.where(np.asarray(y) != 0, scale, 0.0), rtol=1e-6)
  assert 0 < int(jnp.sum(y == 0)) < x.size


def test_layer_norm_value_and_gradients_match_autodiff_of_the_formula():
  key = jax.random.PRNGKey(7)
  x = jax.random.normal(key, (3, 5, 16)) * 2.0 + 1.0
  scale = jax.random.normal(jax.random.fold_in(key, 1), (16,))
  bias = jax.random.normal(jax.random.fold_in(key, 2), (16,))
  weights = jax.random.normal(jax.random.fold_in(key, 3), x.shape)

  def reference(x, scale, bias):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + 1e-6) * scale + bias

  np.testing.assert_allclose(fused.layer_norm(x, scale, bias, 1e-6), reference(x, scale, bias),
                             atol=2e-6)
  ours = jax.grad(lambda *a: jnp.sum(fused.layer_norm(*a, 1e-6) * weights), (0, 1, 2))(x, scale, bias)
  want = jax.grad(lambda *a: jnp.sum(reference(*a) * weights), (0, 1, 2))(x, scale, bias)
  for name, a, b in zip(("x", "scale", "bias"), ours, want):
    np.testing.assert_allclose(a, b, atol=2e-5, err_msg=name)


def test_gelu_exact_matches_jax_gelu_and_its_gradient():
  x = jnp.linspace(-9.0, 9.0, 2001)
  np.testing.assert_allclose(fused.gelu_exact(x), jax.nn.gelu(x, approximate=False), atol=2e-6)
  ours = jax.vmap(jax.grad(fused.gelu_exact))(x)
  want = jax.vmap(jax.grad(lambda v: jax.nn.gelu(v, approximate=False)))(x)
  np.testing.assert_allclose(ours, want, atol=2e-6)


def test_matmul_transposed_input_grad_matches_plain_matmul_gradients():
  key = jax.random.PRNGKey(11)
  x = jax.random.normal(key, (2, 5, 6))
  kernel = jax.random.normal(jax.random.fold_in(key, 1), (6, 9))
  weights = jax.random.normal(jax.random.fold_in(key, 2), (2, 5, 9))
  np.testing.assert_allclose(fused.matmul_transposed_input_grad(x, kernel), x @ kernel, rtol=1e-6)
  ours = jax.grad(lambda a, b: jnp.sum(fused.matmul_transposed_input_grad(a, b) * weights),
                  (0, 1))(x, kernel)
  want = jax.grad(lambda a, b: jnp.sum((a @ b) * weights), (0, 1))(x, kernel)
  for a, b in zip(ours, want):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  # As nn.Dense's dot_general, the widening MLP layer gives the same output.
  dense = nn.Dense(9, dot_general=fused.dense_dot_general)
  params = dense.init(key, x)
  np.testing.assert_allclose(dense.apply(params, x), nn.Dense(9).apply(params, x), rtol=1e-6)
