"""Hugging Face ALBERT <-> plm_jax ALBERT: the name table, the config mapping, the registry entry.

HF ALBERT shares whole layers only (num_hidden_groups groups of inner_group_num
layers): share_mode 'all' and 'none' (one group per layer) convert; 'attention'
and 'ffn' have no HF counterpart and exporting them is a one-line error.
"""
from typing import Any, Dict, Mapping

from plm_jax.convert import registry
from plm_jax.convert.table import (HEADS_BIAS, HEADS_IN_KERNEL, HEADS_OUT_KERNEL, TRANSPOSE, Rule,
                                   mlm_head_rules)
from plm_jax.models.albert import AlbertConfig, AlbertForPreTraining, AlbertModel

_ACT_FROM_HF = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu",
                "relu": "relu"}
_ACT_TO_HF = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}


def _rules():
  hl = "albert.encoder.albert_layer_groups.{layer}.albert_layers.{inner}."
  fl = "albert/encoder/groups_{layer}_layers_{inner}/"
  rules = [Rule(f"albert.embeddings.{n}_embeddings.weight", f"albert/embeddings/{n}_embeddings/embedding")
           for n in ("word", "position", "token_type")]
  rules += [
      Rule("albert.embeddings.LayerNorm.weight", "albert/embeddings/layer_norm/scale"),
      Rule("albert.embeddings.LayerNorm.bias", "albert/embeddings/layer_norm/bias"),
      Rule("albert.embeddings.position_ids", kind="ignore"),
      Rule("albert.embeddings.token_type_ids", kind="ignore"),
      Rule("albert.encoder.embedding_hidden_mapping_in.weight",
           "albert/encoder/embedding_hidden_mapping_in/kernel", TRANSPOSE),
      Rule("albert.encoder.embedding_hidden_mapping_in.bias",
           "albert/encoder/embedding_hidden_mapping_in/bias"),
  ]
  for n in ("query", "key", "value"):
    rules += [Rule(f"{hl}attention.{n}.weight", f"{fl}attention/{n}/kernel", HEADS_IN_KERNEL),
              Rule(f"{hl}attention.{n}.bias", f"{fl}attention/{n}/bias", HEADS_BIAS)]
  for hf, flax, transform in (("attention.dense", "attention/out", HEADS_OUT_KERNEL),
                              ("ffn", "mlp/wi", TRANSPOSE), ("ffn_output", "mlp/wo", TRANSPOSE)):
    rules += [Rule(f"{hl}{hf}.weight", f"{fl}{flax}/kernel", transform),
              Rule(f"{hl}{hf}.bias", f"{fl}{flax}/bias")]
  for hf, flax in (("attention.LayerNorm", "attention_layer_norm"),
                   ("full_layer_layer_norm", "mlp_layer_norm")):
    rules += [Rule(f"{hl}{hf}.weight", f"{fl}{flax}/scale"),
              Rule(f"{hl}{hf}.bias", f"{fl}{flax}/bias")]
  rules += [
      Rule("albert.pooler.weight", "albert/pooler/dense/kernel", TRANSPOSE),
      Rule("albert.pooler.bias", "albert/pooler/dense/bias"),
      *mlm_head_rules("predictions.", "predictions/", "albert/embeddings/word_embeddings/embedding"),
      Rule("sop_classifier.classifier.weight", "sop_classifier/kernel", TRANSPOSE),
      Rule("sop_classifier.classifier.bias", "sop_classifier/bias"),
  ]
  return rules


RULES = _rules()


def config_from_hf(hf: Mapping[str, Any], source: str = "config.json") -> AlbertConfig:
  """HF AlbertConfig dict -> AlbertConfig; one-line ValueError naming the key otherwise."""
  act = hf.get("hidden_act", "gelu_new")
  if act not in _ACT_FROM_HF:
    raise ValueError(f"{source}: unsupported hidden_act {act!r}; supported: {sorted(_ACT_FROM_HF)}")
  if hf.get("position_embedding_type", "absolute") != "absolute":
    raise ValueError(f"{source}: position_embedding_type {hf['position_embedding_type']!r} "
                     "is not supported (absolute only)")
  layers, groups = hf["num_hidden_layers"], hf.get("num_hidden_groups", 1)
  if groups <= 0 or layers % groups:
    raise ValueError(f"{source}: num_hidden_groups={groups} must divide num_hidden_layers="
                     f"{layers} evenly")
  return AlbertConfig(
      vocab_size=hf["vocab_size"], embedding_size=hf.get("embedding_size", 128),
      hidden_size=hf["hidden_size"], num_layers=layers, num_heads=hf["num_attention_heads"],
      intermediate_size=hf["intermediate_size"], share_mode="all", num_hidden_groups=groups,
      inner_group_num=hf.get("inner_group_num", 1), hidden_act=_ACT_FROM_HF[act],
      max_position_embeddings=hf["max_position_embeddings"],
      type_vocab_size=hf.get("type_vocab_size", 2),
      layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
      hidden_dropout_rate=hf.get("hidden_dropout_prob", 0.0),
      attention_dropout_rate=hf.get("attention_probs_dropout_prob", 0.0),
      classifier_dropout_rate=hf.get("classifier_dropout_prob", 0.1),
      initializer_range=hf.get("initializer_range", 0.02))


def config_to_hf(cfg: AlbertConfig, with_heads: bool = True) -> Dict[str, Any]:
  if cfg.share_mode not in ("all", "none"):
    raise ValueError(f"AlbertConfig.share_mode={cfg.share_mode!r}: Hugging Face ALBERT shares "
                     "whole layers only ('all' or 'none'); this model cannot be exported")
  return {
      "model_type": "albert",
      "architectures": ["AlbertForPreTraining" if with_heads else "AlbertModel"],
      "vocab_size": cfg.vocab_size, "embedding_size": cfg.embedding_size,
      "hidden_size": cfg.hidden_size, "num_hidden_layers": cfg.num_layers,
      "num_attention_heads": cfg.num_heads, "intermediate_size": cfg.intermediate_size,
      "num_hidden_groups": cfg.groups, "inner_group_num": cfg.inner_group_num,
      "hidden_act": _ACT_TO_HF[cfg.hidden_act],
      "max_position_embeddings": cfg.max_position_embeddings,
      "type_vocab_size": cfg.type_vocab_size, "layer_norm_eps": cfg.layer_norm_eps,
      "hidden_dropout_prob": cfg.hidden_dropout_rate,
      "attention_probs_dropout_prob": cfg.attention_dropout_rate,
      "classifier_dropout_prob": cfg.classifier_dropout_rate,
      "initializer_range": cfg.initializer_range, "position_embedding_type": "absolute",
      "tie_word_embeddings": True, "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3,
  }


@registry.register
class AlbertConverter(registry.Converter):
  """ALBERT: AlbertModel (backbone) / AlbertForPreTraining (+ MLM and SOP heads)."""
  model_type = "albert"
  architecture_prefixes = ("Albert",)
  config_class = AlbertConfig
  base_model_class = AlbertModel
  head_model_class = AlbertForPreTraining
  rules = RULES
  head_prefixes = ("predictions.", "sop_classifier.")
  hf_backbone_prefix = "albert."
  flax_backbone_prefix = "albert/"

  def config_from_hf(self, hf_config, source="config.json"):
    return config_from_hf(hf_config, source)

  def config_to_hf(self, cfg, with_heads=True):
    return config_to_hf(cfg, with_heads)

  def rule_context(self, cfg):
    return {"num_heads": cfg.num_heads}

  def export_hf(self, params, cfg):
    config_to_hf(cfg)   # partial sharing has no HF layout: say so before matching names
    return super().export_hf(params, cfg)
