"""The rule table engine: named placeholders in both directions, loud failures, multi-stack restacking."""
import numpy as np
import pytest

from plm_jax.convert.table import (TRANSPOSE, ConversionError, Rule, find_rule, flax_to_hf,
                                   hf_to_flax, placeholders, stack_layers, unstack_layers)

# A T5-like table: two stacks, a projection placeholder, a shared (tied) embedding.
RULES = [
    Rule("shared.weight", "token_embedder/embedding"),
    Rule("{stack}.block.{layer}.layer.0.SelfAttention.{proj}.weight",
         "{stack}/layers_{layer}/attention/{proj}/kernel", TRANSPOSE),
    Rule("{stack}.final_layer_norm.weight", "{stack}/final_norm/scale"),
    Rule("{stack}.embed_tokens.weight", "token_embedder/embedding", kind="tied"),
    Rule("{stack}.block.{layer}.layer.0.SelfAttention.relative_attention_bias.position_ids",
         kind="ignore"),
]


def _tensors(rng):
  tensors = {"shared.weight": rng.randn(11, 4).astype(np.float32)}
  for stack in ("encoder", "decoder"):
    tensors[f"{stack}.final_layer_norm.weight"] = rng.randn(4).astype(np.float32)
    tensors[f"{stack}.embed_tokens.weight"] = tensors["shared.weight"]
    for layer in range(2):
      for proj in ("q", "k", "v", "o"):
        name = f"{stack}.block.{layer}.layer.0.SelfAttention.{proj}.weight"
        tensors[name] = rng.randn(6, 4).astype(np.float32)
  return tensors


def _expected(tensors):
  out = {"token_embedder/embedding": (11, 4)}
  for name, v in tensors.items():
    parts = name.split(".")
    if "SelfAttention" in parts:
      out[f"{parts[0]}/layers_{parts[2]}/attention/{parts[6]}/kernel"] = v.shape[::-1]
    elif "final_layer_norm" in parts:
      out[f"{parts[0]}/final_norm/scale"] = v.shape
  return out


def test_placeholders_fill_both_directions_exactly():
  tensors = _tensors(np.random.RandomState(0))
  flat = hf_to_flax(tensors, RULES, _expected(tensors), {})
  assert np.array_equal(flat["decoder/layers_1/attention/k/kernel"],
                        tensors["decoder.block.1.layer.0.SelfAttention.k.weight"].T)
  assert np.array_equal(flat["encoder/final_norm/scale"], tensors["encoder.final_layer_norm.weight"])
  back = flax_to_hf(flat, RULES, {})
  tied = {n for n in tensors if n.endswith("embed_tokens.weight")}
  assert sorted(back) == sorted(set(tensors) - tied)  # tied copies are not written
  assert all(np.array_equal(back[n], tensors[n]) for n in back)


def test_placeholder_matches_one_component_and_layer_only_digits():
  rule = RULES[1]
  found = find_rule([rule], "decoder.block.12.layer.0.SelfAttention.q.weight", "hf")
  assert found == (rule, {"stack": "decoder", "layer": "12", "proj": "q"})
  for name in ("encoder.block.x.layer.0.SelfAttention.q.weight",       # layer not digits
               "encoder.sub.block.0.layer.0.SelfAttention.q.weight",   # stack spans a '.'
               "encoder.block.0.layer.0.SelfAttention.q.x.weight"):    # proj spans a '.'
    assert find_rule([rule], name, "hf") is None, name
  assert find_rule([rule], "encoder/layers_3/attention/q/x/kernel", "flax") is None
  assert placeholders(rule.flax) == {"stack", "layer", "proj"}


def test_repeated_placeholder_must_agree():
  rule = Rule("{stack}.{stack}_norm.weight", "{stack}/norm/scale")
  assert find_rule([rule], "encoder.encoder_norm.weight", "hf")[1] == {"stack": "encoder"}
  assert find_rule([rule], "encoder.decoder_norm.weight", "hf") is None


def test_rule_placeholders_must_match_across_sides():
  with pytest.raises(ValueError, match="placeholders differ"):
    Rule("{stack}.block.{layer}.w", "layers_{layer}/w")       # {stack} would be lost on import
  with pytest.raises(ValueError, match="placeholders differ"):
    Rule("block.{layer}.w", "{stack}/layers_{layer}/w")       # {stack} cannot be filled
  Rule("{stack}.embed.weight", "embedding", kind="tied")      # tied: flax side may drop some


def test_loud_failures_name_the_tensors():
  tensors = _tensors(np.random.RandomState(1))
  expected = _expected(tensors)
  bad = dict(tensors, **{"decoder.block.0.layer.1.EncDecAttention.q.weight": np.zeros((6, 4))})
  with pytest.raises(ConversionError, match=r"not mapped.*EncDecAttention\.q\.weight"):
    hf_to_flax(bad, RULES, expected, {})
  bad = {k: v for k, v in tensors.items() if k != "encoder.block.1.layer.0.SelfAttention.o.weight"}
  with pytest.raises(ConversionError, match=r"not filled.*encoder/layers_1/attention/o/kernel"):
    hf_to_flax(bad, RULES, expected, {})
  bad = dict(tensors, **{"decoder.embed_tokens.weight": tensors["shared.weight"] + 1})
  with pytest.raises(ConversionError, match="tied"):
    hf_to_flax(bad, RULES, expected, {})
  with pytest.raises(ConversionError, match="shape mismatches"):
    hf_to_flax(tensors, RULES, dict(expected, **{"encoder/final_norm/scale": (5,)}), {})
  flat = hf_to_flax(tensors, RULES, expected, {})
  with pytest.raises(ConversionError, match=r"no export rule.*encoder/extra"):
    flax_to_hf(dict(flat, **{"encoder/extra": np.zeros(2)}), RULES, {})


def test_stack_and_unstack_several_stacks():
  rng = np.random.RandomState(2)
  flat = {f"encoder/layers_{i}/w": rng.randn(2, 3) for i in range(3)}
  flat.update({f"decoder/layers_{i}/w": rng.randn(2, 3) for i in range(2)})
  flat["embed"] = rng.randn(4)
  stacks = {"encoder": 3, "decoder": 2}
  stacked = stack_layers(flat, stacks)
  assert sorted(stacked) == ["decoder/layers/w", "embed", "encoder/layers/w"]
  assert stacked["encoder/layers/w"].shape == (3, 2, 3) and stacked["decoder/layers/w"].shape == (2, 2, 3)
  back = unstack_layers(stacked, stacks)
  assert sorted(back) == sorted(flat) and all(np.array_equal(back[k], flat[k]) for k in flat)
  with pytest.raises(ConversionError, match="missing"):
    stack_layers({k: v for k, v in flat.items() if k != "decoder/layers_1/w"}, stacks)
  with pytest.raises(ConversionError, match="num_layers"):
    unstack_layers(stacked, {"encoder": 4, "decoder": 2})
