"""Hugging Face RoBERTa <-> plm_jax RoBERTa: BERT's backbone table under 'roberta.', the LM head.

HF's RobertaForMaskedLM has no pooler (RobertaModel has one, and so do the hub's
roberta-base/large files); plm_jax's models always have it, so a checkpoint
without it gets a fresh pooler (`optional_params`) and an export writes it
(transformers then reports roberta.pooler.* as unused by RobertaForMaskedLM).
"""
from typing import Any, Dict, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from plm_jax.convert import hf_bert, registry
from plm_jax.convert.table import Rule, flatten, mlm_head_rules
from plm_jax.models.bert import BertPooler
from plm_jax.models.roberta import RobertaConfig, RobertaForMaskedLM, RobertaModel


def _backbone_rules():
  """BERT's backbone rules with the 'roberta.' / 'roberta/' prefixes."""
  rename = lambda s, a, b: None if s is None else b + s[len(a):]
  return [Rule(rename(r.hf, "bert.", "roberta."), rename(r.flax, "bert/", "roberta/"),
               r.transform, r.kind) for r in hf_bert._backbone_rules()]  # pylint: disable=protected-access


HEAD_RULES = mlm_head_rules("lm_head.", "lm_head/", "roberta/embeddings/word_embeddings/embedding",
                            layer_norm="layer_norm")
RULES = _backbone_rules() + HEAD_RULES


def config_from_hf(hf: Mapping[str, Any], source: str = "config.json") -> RobertaConfig:
  bert = hf_bert.config_from_hf(hf, source)
  values = {k: v for k, v in vars(bert).items()}
  return RobertaConfig(**values, pad_token_id=int(hf.get("pad_token_id", 1)))


def config_to_hf(cfg: RobertaConfig, with_heads: bool = True) -> Dict[str, Any]:
  out = hf_bert.config_to_hf(cfg, with_heads)
  out.update(model_type="roberta",
             architectures=["RobertaForMaskedLM" if with_heads else "RobertaModel"],
             pad_token_id=cfg.pad_token_id, bos_token_id=0, eos_token_id=2)
  return out


@registry.register
class RobertaConverter(registry.Converter):
  """RoBERTa: RobertaModel (backbone) / RobertaForMaskedLM (+ LM head)."""
  model_type = "roberta"
  architecture_prefixes = ("Roberta",)
  config_class = RobertaConfig
  base_model_class = RobertaModel
  head_model_class = RobertaForMaskedLM
  rules = RULES
  head_prefixes = ("lm_head.",)
  hf_backbone_prefix = "roberta."
  flax_backbone_prefix = "roberta/"
  optional_params = ("roberta/pooler/dense/kernel", "roberta/pooler/dense/bias")

  def config_from_hf(self, hf_config, source="config.json"):
    return config_from_hf(hf_config, source)

  def config_to_hf(self, cfg, with_heads=True):
    return config_to_hf(cfg, with_heads)

  def rule_context(self, cfg):
    return {"num_heads": cfg.num_heads}

  def fresh_params(self, cfg, paths, seed):
    if not set(paths) <= set(self.optional_params):
      return super().fresh_params(cfg, paths, seed)
    # Only the pooler is missing: initialise it alone (a whole model costs seconds to compile).
    pooler = BertPooler(cfg).init(jax.random.key(seed), jnp.zeros((1, 1, cfg.hidden_size)))
    fresh = flatten(nn.unbox(pooler["params"]), "roberta/pooler")
    return {p: np.asarray(fresh[p]) for p in paths}

  def layer_stacks(self, cfg):
    return {"roberta/encoder": cfg.num_layers}
