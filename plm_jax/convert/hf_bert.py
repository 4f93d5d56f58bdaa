"""Hugging Face BERT <-> plm_jax BERT: the name table, the config mapping and the registry entry.

The generic import/export engine is plm_jax.convert.registry.Converter; this file
holds only what is BERT's: the rules, config_from_hf / config_to_hf, the model
classes, the 'bert.' backbone prefix and the gamma/beta aliases of old checkpoints.
Use it through plm_jax.load_pretrained / registry.get_converter("bert").
"""
import re
from typing import Any, Dict, Mapping

from plm_jax.convert import registry
from plm_jax.convert.table import (HEADS_BIAS, HEADS_IN_KERNEL, HEADS_OUT_KERNEL, TRANSPOSE, Rule,
                                   mlm_head_rules)
from plm_jax.models.bert import BertConfig, BertForPreTraining, BertModel


def _backbone_rules():
  """HF 'bert.' names -> 'bert/' flax paths."""
  hl, fl = "bert.encoder.layer.{layer}.", "bert/encoder/layers_{layer}/"
  rules = [
      Rule("bert.embeddings.word_embeddings.weight", "bert/embeddings/word_embeddings/embedding"),
      Rule("bert.embeddings.position_embeddings.weight", "bert/embeddings/position_embeddings/embedding"),
      Rule("bert.embeddings.token_type_embeddings.weight",
           "bert/embeddings/token_type_embeddings/embedding"),
      Rule("bert.embeddings.LayerNorm.weight", "bert/embeddings/layer_norm/scale"),
      Rule("bert.embeddings.LayerNorm.bias", "bert/embeddings/layer_norm/bias"),
      Rule("bert.embeddings.position_ids", kind="ignore"),    # buffer, not a parameter
      Rule("bert.embeddings.token_type_ids", kind="ignore"),  # buffer, not a parameter
  ]
  for name in ("query", "key", "value"):
    rules += [Rule(f"{hl}attention.self.{name}.weight", f"{fl}attention/{name}/kernel", HEADS_IN_KERNEL),
              Rule(f"{hl}attention.self.{name}.bias", f"{fl}attention/{name}/bias", HEADS_BIAS)]
  rules += [
      Rule(hl + "attention.output.dense.weight", fl + "attention/out/kernel", HEADS_OUT_KERNEL),
      Rule(hl + "attention.output.dense.bias", fl + "attention/out/bias"),
      Rule(hl + "attention.output.LayerNorm.weight", fl + "attention_layer_norm/scale"),
      Rule(hl + "attention.output.LayerNorm.bias", fl + "attention_layer_norm/bias"),
      Rule(hl + "intermediate.dense.weight", fl + "mlp/wi/kernel", TRANSPOSE),
      Rule(hl + "intermediate.dense.bias", fl + "mlp/wi/bias"),
      Rule(hl + "output.dense.weight", fl + "mlp/wo/kernel", TRANSPOSE),
      Rule(hl + "output.dense.bias", fl + "mlp/wo/bias"),
      Rule(hl + "output.LayerNorm.weight", fl + "mlp_layer_norm/scale"),
      Rule(hl + "output.LayerNorm.bias", fl + "mlp_layer_norm/bias"),
      Rule("bert.pooler.dense.weight", "bert/pooler/dense/kernel", TRANSPOSE),
      Rule("bert.pooler.dense.bias", "bert/pooler/dense/bias"),
  ]
  return rules


# The decoder is tied to the word embeddings; its bias is the same tensor as predictions.bias.
HEAD_RULES = mlm_head_rules("cls.predictions.", "mlm_head/", "bert/embeddings/word_embeddings/embedding",
                            dense="transform.dense", layer_norm="transform.LayerNorm") + [
    Rule("cls.seq_relationship.weight", "nsp_head/kernel", TRANSPOSE),
    Rule("cls.seq_relationship.bias", "nsp_head/bias"),
]
RULES = _backbone_rules() + HEAD_RULES
HEAD_PREFIXES = ("cls.predictions.", "cls.seq_relationship.")

# Older (TF-converted) checkpoints name LayerNorm params gamma/beta.
_ALIASES = [(re.compile(r"LayerNorm\.gamma$"), "LayerNorm.weight"),
            (re.compile(r"LayerNorm\.beta$"), "LayerNorm.bias")]

_ACT_FROM_HF = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                "relu": "relu"}
_ACT_TO_HF = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}


# ---- config -----------------------------------------------------------------------------

def config_from_hf(hf: Mapping[str, Any], source: str = "config.json") -> BertConfig:
  """HF BertConfig dict -> BertConfig; ValueError (one line) for anything BERT-incompatible."""
  act = hf.get("hidden_act", "gelu")
  for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
              "intermediate_size", "max_position_embeddings"):
    if key not in hf:
      raise ValueError(f"{source}: required key {key!r} is missing")
    if not isinstance(hf[key], int) or isinstance(hf[key], bool) or hf[key] <= 0:
      raise ValueError(f"{source}: {key} must be a positive integer, got {hf[key]!r}")
  if act not in _ACT_FROM_HF:
    raise ValueError(f"{source}: unsupported hidden_act {act!r}; supported: {sorted(_ACT_FROM_HF)}")
  if hf.get("position_embedding_type", "absolute") != "absolute":
    raise ValueError(f"{source}: position_embedding_type {hf['position_embedding_type']!r} "
                     "is not supported (absolute only)")
  if hf.get("is_decoder") or hf.get("add_cross_attention"):
    raise ValueError(f"{source}: decoder / cross-attention BERT is not supported")
  return BertConfig(
      vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"],
      num_layers=hf["num_hidden_layers"], num_heads=hf["num_attention_heads"],
      intermediate_size=hf["intermediate_size"], hidden_act=_ACT_FROM_HF[act],
      max_position_embeddings=hf["max_position_embeddings"],
      type_vocab_size=hf.get("type_vocab_size", 2),
      layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
      hidden_dropout_rate=hf.get("hidden_dropout_prob", 0.1),
      attention_dropout_rate=hf.get("attention_probs_dropout_prob", 0.1),
      initializer_range=hf.get("initializer_range", 0.02))


def config_to_hf(cfg: BertConfig, with_heads: bool = True) -> Dict[str, Any]:
  return {
      "model_type": "bert",
      "architectures": ["BertForPreTraining" if with_heads else "BertModel"],
      "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
      "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
      "intermediate_size": cfg.intermediate_size, "hidden_act": _ACT_TO_HF[cfg.hidden_act],
      "max_position_embeddings": cfg.max_position_embeddings,
      "type_vocab_size": cfg.type_vocab_size, "layer_norm_eps": cfg.layer_norm_eps,
      "hidden_dropout_prob": cfg.hidden_dropout_rate,
      "attention_probs_dropout_prob": cfg.attention_dropout_rate,
      "initializer_range": cfg.initializer_range,
      "position_embedding_type": "absolute", "tie_word_embeddings": True, "pad_token_id": 0,
  }


# ---- registry entry ---------------------------------------------------------------------

@registry.register
class BertConverter(registry.Converter):
  """BERT: BertModel (backbone) / BertForPreTraining (+ MLM and NSP heads)."""
  model_type = "bert"
  architecture_prefixes = ("Bert",)
  config_class = BertConfig
  base_model_class = BertModel
  head_model_class = BertForPreTraining
  rules = RULES
  head_prefixes = HEAD_PREFIXES
  hf_backbone_prefix = "bert."
  flax_backbone_prefix = "bert/"
  optional_prefixes = ("bert/pooler/",)   # BertForMaskedLM, BertModel(add_pooling_layer=False)

  def config_from_hf(self, hf_config, source="config.json"):
    return config_from_hf(hf_config, source)

  def config_to_hf(self, cfg, with_heads=True):
    return config_to_hf(cfg, with_heads)

  def rule_context(self, cfg):
    return {"num_heads": cfg.num_heads}

  def layer_stacks(self, cfg):
    return {"bert/encoder": cfg.num_layers}

  def rename(self, name):
    for pattern, repl in _ALIASES:
      name = pattern.sub(repl, name)
    return name
