"""Hugging Face T5ForConditionalGeneration <-> plm_jax T5 (v1.0 and v1.1 layouts).

The output layer: T5 v1.0 ties it to `shared.weight` and rescales the decoder
output by d_model**-0.5; v1.1 has its own `lm_head.weight` and no rescale.
transformers 5.x always ties T5's lm_head to `shared` in memory and keeps the
v1.0/v1.1 difference in `scale_decoder_outputs` (read from
`tie_word_embeddings` of older config.json files); it saves no lm_head.weight
for a tied model, and unties on load when the file holds a different one. So:
import reads scale_decoder_outputs (else tie_word_embeddings); an unscaled
checkpoint without lm_head.weight gets lm_head = shared; export writes both keys
and, for v1.1, lm_head.weight.
"""
from typing import Any, Dict, Mapping

import jax.numpy as jnp
import numpy as np

from plm_jax.convert import registry
from plm_jax.convert.table import (HEADS_IN_KERNEL, HEADS_OUT_KERNEL, IDENTITY, TRANSPOSE,
                                   Rule)
from plm_jax.models.t5 import FEED_FORWARD, T5Config, T5ForConditionalGeneration

_PROJ = (("q", "query", HEADS_IN_KERNEL), ("k", "key", HEADS_IN_KERNEL),
         ("v", "value", HEADS_IN_KERNEL), ("o", "out", HEADS_OUT_KERNEL))


def _attention_rules(hf_prefix: str, flax_prefix: str):
  return [Rule(f"{hf_prefix}.{hf}.weight", f"{flax_prefix}/{fl}/kernel", t)
          for hf, fl, t in _PROJ]


def _rules(tied: bool):
  rules = [
      Rule("shared.weight", "shared/embedding"),
      Rule("encoder.embed_tokens.weight", "shared/embedding", kind="tied"),
      Rule("decoder.embed_tokens.weight", "shared/embedding", kind="tied"),
      Rule("{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
           "{stack}/relative_attention_bias/embedding", IDENTITY),
      # HF builds (and some files hold) an unused bias table in the first cross-attention.
      Rule("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",
           kind="ignore"),
      Rule("{stack}.block.{layer}.layer.0.layer_norm.weight",
           "{stack}/layers_{layer}/attention_layer_norm/scale"),
      Rule("decoder.block.{layer}.layer.1.layer_norm.weight",
           "decoder/layers_{layer}/cross_attention_layer_norm/scale"),
      Rule("encoder.block.{layer}.layer.1.layer_norm.weight",
           "encoder/layers_{layer}/mlp_layer_norm/scale"),
      Rule("decoder.block.{layer}.layer.2.layer_norm.weight",
           "decoder/layers_{layer}/mlp_layer_norm/scale"),
      Rule("encoder.block.{layer}.layer.1.DenseReluDense.{proj}.weight",
           "encoder/layers_{layer}/mlp/{proj}/kernel", TRANSPOSE),
      Rule("decoder.block.{layer}.layer.2.DenseReluDense.{proj}.weight",
           "decoder/layers_{layer}/mlp/{proj}/kernel", TRANSPOSE),
      Rule("{stack}.final_layer_norm.weight", "{stack}/final_layer_norm/scale"),
  ]
  rules += _attention_rules("{stack}.block.{layer}.layer.0.SelfAttention",
                            "{stack}/layers_{layer}/attention")
  rules += _attention_rules("decoder.block.{layer}.layer.1.EncDecAttention",
                            "decoder/layers_{layer}/cross_attention")
  if tied:
    rules.append(Rule("lm_head.weight", "shared/embedding", kind="tied"))
  else:
    rules.append(Rule("lm_head.weight", "lm_head/kernel", TRANSPOSE))
  return rules


TIED_RULES = _rules(tied=True)
UNTIED_RULES = _rules(tied=False)


def config_from_hf(hf: Mapping[str, Any], source: str = "config.json") -> T5Config:
  proj = hf.get("feed_forward_proj", "relu")
  if proj not in FEED_FORWARD:
    raise ValueError(f"{source}: feed_forward_proj={proj!r} is not supported; "
                     f"choose one of {sorted(FEED_FORWARD)}")
  tied = hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True))
  num_layers = int(hf["num_layers"])
  dec = hf.get("num_decoder_layers")
  return T5Config(
      vocab_size=int(hf["vocab_size"]), hidden_size=int(hf["d_model"]), head_dim=int(hf["d_kv"]),
      intermediate_size=int(hf["d_ff"]), num_layers=num_layers,
      num_decoder_layers=num_layers if dec is None else int(dec), num_heads=int(hf["num_heads"]),
      relative_attention_num_buckets=int(hf.get("relative_attention_num_buckets", 32)),
      relative_attention_max_distance=int(hf.get("relative_attention_max_distance", 128)),
      dropout_rate=float(hf.get("dropout_rate", 0.1)),
      layer_norm_eps=float(hf.get("layer_norm_epsilon", 1e-6)), feed_forward_proj=proj,
      tie_word_embeddings=bool(tied),
      initializer_factor=float(hf.get("initializer_factor", 1.0)),
      pad_token_id=int(hf.get("pad_token_id", 0) or 0),
      eos_token_id=int(hf.get("eos_token_id", 1) or 1),
      decoder_start_token_id=int(hf.get("decoder_start_token_id", hf.get("pad_token_id", 0)) or 0))


def config_to_hf(cfg: T5Config, with_heads: bool = True) -> Dict[str, Any]:
  del with_heads
  return {
      "model_type": "t5", "architectures": ["T5ForConditionalGeneration"],
      "vocab_size": cfg.vocab_size, "d_model": cfg.hidden_size, "d_kv": cfg.head_dim,
      "d_ff": cfg.intermediate_size, "num_layers": cfg.num_layers,
      "num_decoder_layers": cfg.num_decoder_layers, "num_heads": cfg.num_heads,
      "relative_attention_num_buckets": cfg.relative_attention_num_buckets,
      "relative_attention_max_distance": cfg.relative_attention_max_distance,
      "dropout_rate": cfg.dropout_rate, "layer_norm_epsilon": cfg.layer_norm_eps,
      "feed_forward_proj": cfg.feed_forward_proj, "initializer_factor": cfg.initializer_factor,
      "tie_word_embeddings": cfg.tie_word_embeddings,
      "scale_decoder_outputs": cfg.tie_word_embeddings, "is_encoder_decoder": True,
      "pad_token_id": cfg.pad_token_id, "eos_token_id": cfg.eos_token_id,
      "decoder_start_token_id": cfg.decoder_start_token_id}


@registry.register
class T5Converter(registry.Converter):
  """T5: T5ForConditionalGeneration (the whole model; no separate heads)."""
  model_type = "t5"
  architecture_prefixes = ("T5",)
  config_class = T5Config
  base_model_class = T5ForConditionalGeneration
  rules = TIED_RULES

  def config_from_hf(self, hf_config, source="config.json"):
    return config_from_hf(hf_config, source)

  def config_to_hf(self, cfg, with_heads=True):
    return config_to_hf(cfg, with_heads)

  def rules_for(self, cfg):
    return TIED_RULES if cfg.tie_word_embeddings else UNTIED_RULES

  def rule_context(self, cfg):
    return {"num_heads": cfg.num_heads}

  def layer_stacks(self, cfg):
    return {"encoder": cfg.num_layers, "decoder": cfg.num_decoder_layers}

  def init_inputs(self, cfg):
    return {"input_ids": jnp.zeros((1, 2), jnp.int32),
            "decoder_input_ids": jnp.zeros((1, 2), jnp.int32)}

  def _canonical_names(self, tensors: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    out = super()._canonical_names(tensors)
    if "lm_head.weight" not in out and "shared.weight" in out:
      out["lm_head.weight"] = out["shared.weight"]   # saved tied (transformers 5.x)
    return out
