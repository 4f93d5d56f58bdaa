"""Hugging Face ELECTRA <-> plm_jax ELECTRA: the name table, the config mapping, the registry entry.

One model_type ('electra') holds two networks: the discriminator
(ElectraForPreTraining, head 'discriminator_predictions.') and the generator
(ElectraForMaskedLM, 'generator_predictions.' + 'generator_lm_head.'). On import
config.json's `architectures` picks one (ElectraForMaskedLM / ElectraForCausalLM:
the generator; anything else: the discriminator) and the config's
`pretraining_head` records it; on export that field picks the HF class. A
pretraining checkpoint is two directories (models.electra.split_pretraining_params,
and join_pretraining_params to rebuild it; see plm_jax.objectives.electra_pretrain).
"""
from typing import Any, Dict, Mapping

from plm_jax.convert import hf_bert, registry
from plm_jax.convert.table import TRANSPOSE, Rule, mlm_head_rules
from plm_jax.models.electra import (ElectraConfig, ElectraForMaskedLM, ElectraForPreTraining,
                                    ElectraModel)

_GENERATOR_ARCHS = ("ElectraForMaskedLM", "ElectraForCausalLM")
DISCRIMINATOR_PREFIXES = ("discriminator_predictions.",)
GENERATOR_PREFIXES = ("generator_predictions.", "generator_lm_head.")


def _backbone_rules():
  """BERT's backbone rules under 'electra.' without the pooler, plus embeddings_project."""
  rename = lambda s: None if s is None else "electra" + s[len("bert"):]
  rules = [Rule(rename(r.hf), rename(r.flax), r.transform, r.kind)
           for r in hf_bert._backbone_rules()  # pylint: disable=protected-access
           if "pooler" not in (r.hf or "")]
  return rules + [
      Rule("electra.embeddings_project.weight", "electra/embeddings_project/kernel", TRANSPOSE),
      Rule("electra.embeddings_project.bias", "electra/embeddings_project/bias"),
  ]


_WORDS = "electra/embeddings/word_embeddings/embedding"
HEAD_RULES = [
    Rule("discriminator_predictions.dense.weight", "discriminator_predictions/dense/kernel",
         TRANSPOSE),
    Rule("discriminator_predictions.dense.bias", "discriminator_predictions/dense/bias"),
    Rule("discriminator_predictions.dense_prediction.weight",
         "discriminator_predictions/dense_prediction/kernel", TRANSPOSE),
    Rule("discriminator_predictions.dense_prediction.bias",
         "discriminator_predictions/dense_prediction/bias"),
    *mlm_head_rules("generator_predictions.", "generator_predictions/", _WORDS,
                    bias="generator_lm_head.bias", decoder=None),
    Rule("generator_lm_head.weight", _WORDS, kind="tied"),
]
RULES = _backbone_rules() + HEAD_RULES


def config_from_hf(hf: Mapping[str, Any], source: str = "config.json") -> ElectraConfig:
  """HF ElectraConfig dict -> ElectraConfig; one-line ValueError naming the key otherwise."""
  bert = hf_bert.config_from_hf(hf, source)   # the encoder's keys, checked as BERT's
  emb = hf.get("embedding_size", 128)
  if not isinstance(emb, int) or isinstance(emb, bool) or emb <= 0:
    raise ValueError(f"{source}: embedding_size must be a positive integer, got {emb!r}")
  if hf.get("summary_type", "first") != "first":
    raise ValueError(f"{source}: summary_type {hf['summary_type']!r} is not supported")
  archs = [str(a) for a in hf.get("architectures") or []]
  head = "generator" if any(a in _GENERATOR_ARCHS for a in archs) else "discriminator"
  values = {k: v for k, v in vars(bert).items() if k in ElectraConfig.__dataclass_fields__}
  return ElectraConfig(**values, embedding_size=emb, pretraining_head=head)


def config_to_hf(cfg: ElectraConfig, with_heads: bool = True) -> Dict[str, Any]:
  out = hf_bert.config_to_hf(cfg, with_heads)
  generator = cfg.pretraining_head == "generator"
  arch = ("ElectraForMaskedLM" if generator else "ElectraForPreTraining") if with_heads else (
      "ElectraModel")
  out.update(model_type="electra", architectures=[arch], embedding_size=cfg.embedding_size,
             summary_type="first", summary_use_proj=True, summary_activation="gelu",
             summary_last_dropout=0.1)
  return out


@registry.register
class ElectraConverter(registry.Converter):
  """ELECTRA: ElectraModel (backbone) / ElectraForPreTraining or ElectraForMaskedLM."""
  model_type = "electra"
  architecture_prefixes = ("Electra",)
  config_class = ElectraConfig
  base_model_class = ElectraModel
  head_model_class = ElectraForPreTraining
  rules = RULES
  head_prefixes = DISCRIMINATOR_PREFIXES + GENERATOR_PREFIXES
  hf_backbone_prefix = "electra."
  flax_backbone_prefix = "electra/"

  def config_from_hf(self, hf_config, source="config.json"):
    return config_from_hf(hf_config, source)

  def config_to_hf(self, cfg, with_heads=True):
    return config_to_hf(cfg, with_heads)

  def rule_context(self, cfg):
    return {"num_heads": cfg.num_heads}

  def layer_stacks(self, cfg):
    return {"electra/encoder": cfg.num_layers}

  def model_for(self, cfg, with_heads):
    if with_heads and cfg.pretraining_head == "generator":
      return ElectraForMaskedLM(cfg)
    return super().model_for(cfg, with_heads)

  def import_hf(self, hf_dir, with_heads=None, seed=0):
    # A checkpoint holds one network's head: "partial" heads are the norm here, so a
    # present head means the head model (not "init", which would add the other one).
    if with_heads is None:
      from plm_jax.convert import hf_io  # pylint: disable=import-outside-toplevel
      names = hf_io.read_weights(hf_dir).keys()
      with_heads = any(n.startswith(self.head_prefixes) for n in names)
    return super().import_hf(hf_dir, with_heads=with_heads, seed=seed)
