"""BertModel / BertForPreTraining on tiny configs: shapes, counts, axes, dtypes, masking."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plm_jax.models.bert import BertConfig, BertForPreTraining, BertModel

KEY = jax.random.key(0)
LOGICAL_NAMES = {"vocab", "embed", "heads", "kv", "mlp", "position", "type_vocab", "layers", None}
TINY = BertConfig(vocab_size=41, hidden_size=12, num_layers=2, num_heads=3, intermediate_size=20,
                  max_position_embeddings=16, type_vocab_size=3, initializer_range=0.2)


def _batch(cfg, batch=3, length=10, seed=0):
  rng = np.random.RandomState(seed)
  ids = rng.randint(1, cfg.vocab_size, size=(batch, length))
  types = (np.arange(length)[None, :] >= length // 2).astype(np.int32).repeat(batch, 0)
  mask = np.ones((batch, length), np.int32)
  mask[1, 7:] = 0
  mask[2, 4:] = 0
  ids = np.where(mask > 0, ids, 0)
  return jnp.asarray(ids), jnp.asarray(types), jnp.asarray(mask)


def _init(cfg, model_cls=BertForPreTraining):
  ids, types, mask = _batch(cfg)
  return model_cls(cfg).init(KEY, input_ids=ids, token_type_ids=types, attention_mask=mask)["params"]


def closed_form_param_count(c):
  h, i, v = c.hidden_size, c.intermediate_size, c.vocab_size
  embeddings = (v + c.max_position_embeddings + c.type_vocab_size) * h + 2 * h
  layer = 4 * (h * h + h) + 2 * h + (h * i + i) + (i * h + h) + 2 * h
  pooler = h * h + h
  backbone = embeddings + c.num_layers * layer + pooler
  heads = (h * h + h) + 2 * h + v + (2 * h + 2)
  return backbone, backbone + heads


def _count(params):
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(nn.unbox(params)))


@pytest.mark.parametrize("scan", [False, True])
def test_parameter_count_matches_closed_form(scan):
  cfg = TINY.replace(scan_layers=scan)
  backbone, full = closed_form_param_count(cfg)
  assert _count(_init(cfg, BertModel)) == backbone
  assert _count(_init(cfg)) == full


def test_param_tree_layout_and_dtypes():
  params = nn.unbox(_init(TINY))
  assert sorted(params) == ["bert", "mlm_head", "nsp_head"]
  assert sorted(params["bert"]) == ["embeddings", "encoder", "pooler"]
  assert sorted(params["bert"]["encoder"]) == ["layers_0", "layers_1"]
  assert sorted(params["bert"]["encoder"]["layers_0"]) == [
      "attention", "attention_layer_norm", "mlp", "mlp_layer_norm"]
  assert sorted(params["mlm_head"]) == ["bias", "layer_norm", "transform"]
  assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(params))
  # Initializers: LN scale ones, biases zeros, kernels ~ N(0, initializer_range) truncated at 2 std.
  ln = params["bert"]["embeddings"]["layer_norm"]
  np.testing.assert_array_equal(ln["scale"], 1.0)
  np.testing.assert_array_equal(ln["bias"], 0.0)
  np.testing.assert_array_equal(params["mlm_head"]["bias"], 0.0)
  word = np.asarray(params["bert"]["embeddings"]["word_embeddings"]["embedding"])
  assert np.abs(word).max() <= 2 * TINY.initializer_range + 1e-6
  assert 0.5 * TINY.initializer_range < word.std() < 1.1 * TINY.initializer_range


@pytest.mark.parametrize("scan", [False, True])
def test_every_param_has_logical_axes(scan):
  params = _init(TINY.replace(scan_layers=scan))
  leaves = jax.tree_util.tree_leaves(params, is_leaf=lambda x: isinstance(x, nn.Partitioned))
  assert leaves and all(isinstance(x, nn.Partitioned) for x in leaves)
  for x in leaves:
    assert len(x.names) == x.value.ndim
    assert set(x.names) <= LOGICAL_NAMES
    assert ("layers" in x.names) == (scan and x.value.ndim > 1 and x.names[0] == "layers")
  specs = nn.get_partition_spec(params)
  word = specs["bert"]["embeddings"]["word_embeddings"]["embedding"]
  assert tuple(word) == ("vocab", "embed")
  # The trainer's rules map every name to a mesh axis (or None) without clashes.
  rules = [("embed", "fsdp"), ("vocab", "tensor"), ("heads", "tensor"), ("mlp", "tensor")]
  mesh_specs = nn.logical_to_mesh(specs, rules)
  for spec in jax.tree_util.tree_leaves(mesh_specs, is_leaf=lambda s: isinstance(s, jax.sharding.PartitionSpec)):
    used = [a for a in spec if a is not None]
    assert len(used) == len(set(used)), spec


def test_output_shapes_and_masked_positions_gather():
  cfg = TINY
  ids, types, mask = _batch(cfg)
  model = BertForPreTraining(cfg)
  params = _init(cfg)
  full = model.apply({"params": params}, input_ids=ids, token_type_ids=types, attention_mask=mask)
  assert full["last_hidden_state"].shape == (3, 10, 12)
  assert full["pooler_output"].shape == (3, 12)
  assert full["prediction_logits"].shape == (3, 10, 41)
  assert full["seq_relationship_logits"].shape == (3, 2)
  positions = jnp.array([[0, 3, 9, 1], [2, 2, 5, 0], [1, 0, 0, 0]])
  sub = model.apply({"params": params}, input_ids=ids, token_type_ids=types, attention_mask=mask, masked_lm_positions=positions)
  assert sub["prediction_logits"].shape == (3, 4, 41)
  expected = np.take_along_axis(np.asarray(full["prediction_logits"]), np.asarray(positions)[..., None], 1)
  np.testing.assert_allclose(np.asarray(sub["prediction_logits"]), expected, atol=1e-5)
  backbone = BertModel(cfg).apply({"params": params["bert"]}, input_ids=ids, token_type_ids=types, attention_mask=mask)
  np.testing.assert_allclose(np.asarray(backbone["last_hidden_state"]), np.asarray(full["last_hidden_state"]), atol=1e-6)
  np.testing.assert_allclose(np.asarray(backbone["pooler_output"]), np.asarray(full["pooler_output"]), atol=1e-6)


def test_mlm_positions_are_projected_only_there():
  """The vocab projection of the jitted graph is [B, P, V], never [B, L, V]."""
  cfg = TINY
  ids, types, mask = _batch(cfg)
  params = _init(cfg)
  positions = jnp.zeros((3, 2), jnp.int32)
  fn = lambda p: BertForPreTraining(cfg).apply({"params": p}, input_ids=ids, token_type_ids=types, attention_mask=mask,
                                                    masked_lm_positions=positions)
  text = jax.jit(fn).lower(params).as_text()
  assert "3x2x41" in text
  assert "3x10x41" not in text


def test_scan_layers_same_outputs_after_restacking():
  cfg = TINY.replace(num_layers=3)
  ids, types, mask = _batch(cfg)
  params = nn.unbox(_init(cfg))
  trees = [params["bert"]["encoder"].pop(f"layers_{i}") for i in range(3)]
  out = BertForPreTraining(cfg).apply({"params": nn.unbox(_init(cfg))}, input_ids=ids, token_type_ids=types, attention_mask=mask)
  params["bert"]["encoder"]["layers"] = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *trees)
  out_scan = BertForPreTraining(cfg.replace(scan_layers=True)).apply(
      {"params": params}, input_ids=ids, token_type_ids=types, attention_mask=mask)
  for k in out:
    np.testing.assert_allclose(np.asarray(out[k]), np.asarray(out_scan[k]), atol=1e-5, err_msg=k)


def test_bfloat16_compute_float32_params_and_outputs():
  cfg = TINY.replace(dtype="bfloat16")
  ids, types, mask = _batch(cfg)
  params = _init(cfg)
  assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(nn.unbox(params)))
  out16 = BertForPreTraining(cfg).apply({"params": params}, input_ids=ids, token_type_ids=types, attention_mask=mask)
  out32 = BertForPreTraining(TINY).apply({"params": params}, input_ids=ids, token_type_ids=types, attention_mask=mask)
  for k in out16:
    assert out16[k].dtype == jnp.float32, k
    assert np.all(np.isfinite(np.asarray(out16[k])))
  seq16, seq32 = np.asarray(out16["last_hidden_state"]), np.asarray(out32["last_hidden_state"])
  assert 0 < np.abs(seq16 - seq32).max() < 0.25  # really bf16, yet close
  # The LayerNorm output is normalised in float32.
  np.testing.assert_allclose(seq16.mean(-1), np.asarray(
      nn.unbox(params)["bert"]["encoder"]["layers_1"]["mlp_layer_norm"]["bias"]).mean(), atol=1e-4)


def test_dropout_only_when_not_deterministic():
  cfg = TINY.replace(hidden_dropout_rate=0.3, attention_dropout_rate=0.3)
  ids, types, mask = _batch(cfg)
  model, params = BertForPreTraining(cfg), _init(cfg)
  run = lambda det, seed: model.apply({"params": params}, input_ids=ids, token_type_ids=types, attention_mask=mask, deterministic=det,
                                      rngs={"dropout": jax.random.key(seed)})["last_hidden_state"]
  np.testing.assert_array_equal(np.asarray(run(True, 1)), np.asarray(run(True, 2)))
  np.testing.assert_array_equal(np.asarray(run(True, 1)),
                                np.asarray(model.apply({"params": params}, input_ids=ids, token_type_ids=types, attention_mask=mask)["last_hidden_state"]))
  a, b = np.asarray(run(False, 1)), np.asarray(run(False, 2))
  assert not np.allclose(a, b)
  assert not np.allclose(a, np.asarray(run(True, 1)))
  np.testing.assert_array_equal(a, np.asarray(run(False, 1)))


def test_padding_does_not_change_non_pad_positions():
  cfg = TINY
  ids, types, mask = _batch(cfg)
  model, params = BertForPreTraining(cfg), _init(cfg)
  out = model.apply({"params": params}, input_ids=ids, token_type_ids=types, attention_mask=mask)
  # Different tokens/segments at the pad positions: nothing else changes.
  ids2 = jnp.where(mask > 0, ids, 7)
  types2 = jnp.where(mask > 0, types, 2)
  out2 = model.apply({"params": params}, input_ids=ids2, token_type_ids=types2, attention_mask=mask)
  keep = np.asarray(mask) > 0
  for k in ("last_hidden_state", "prediction_logits"):
    np.testing.assert_allclose(np.asarray(out2[k])[keep], np.asarray(out[k])[keep], atol=1e-5, err_msg=k)
  np.testing.assert_allclose(np.asarray(out2["pooler_output"]), np.asarray(out["pooler_output"]), atol=1e-5)
  # Row 2 has 4 real tokens: the same as running those 4 tokens unpadded.
  short = model.apply({"params": params}, input_ids=ids[2:, :4], token_type_ids=types[2:, :4],
                      attention_mask=mask[2:, :4])
  np.testing.assert_allclose(np.asarray(short["last_hidden_state"][0]),
                             np.asarray(out["last_hidden_state"][2, :4]), atol=1e-5)
  np.testing.assert_allclose(np.asarray(short["seq_relationship_logits"][0]), np.asarray(out["seq_relationship_logits"][2]), atol=1e-5)
  # Without the mask, pad tokens would matter (the test can see a difference).
  nomask = model.apply({"params": params}, input_ids=ids2, token_type_ids=types2)["last_hidden_state"]
  assert not np.allclose(np.asarray(nomask)[keep], np.asarray(out["last_hidden_state"])[keep], atol=1e-3)


def test_config_from_dict():
  assert BertConfig.from_dict({"hidden_size": 8}).hidden_size == 8
  with pytest.raises(ValueError, match="bogus"):
    BertConfig.from_dict({"bogus": 1})
