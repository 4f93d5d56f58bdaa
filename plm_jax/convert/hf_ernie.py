"""Hugging Face ERNIE <-> plm_jax ERNIE: BERT's table under 'ernie.', the task-type table.

HF's ErnieModel / ErnieForPreTraining are BERT's tensors under 'ernie.' (the heads
keep BERT's 'cls.' names), plus `ernie.embeddings.task_type_embeddings.weight` when
the config has use_task_id (ERNIE 2.0 / 3.0 files). plm_jax keeps BERT's params
('bert/...', plm_jax.models.ernie), so only the HF side of the table changes.
"""
from typing import Any, Dict, Mapping

from plm_jax.convert import hf_bert, registry
from plm_jax.convert.table import Rule
from plm_jax.models.ernie import ErnieConfig, ErnieForPreTraining, ErnieModel

TASK_TYPE_RULE = Rule("ernie.embeddings.task_type_embeddings.weight",
                      "bert/embeddings/task_type_embeddings/embedding")


def _hf_rename(rule: Rule) -> Rule:
  hf = None if rule.hf is None else ("ernie." + rule.hf[len("bert."):]
                                     if rule.hf.startswith("bert.") else rule.hf)
  return Rule(hf, rule.flax, rule.transform, rule.kind)


RULES = [_hf_rename(r) for r in hf_bert.RULES]


def config_from_hf(hf: Mapping[str, Any], source: str = "config.json") -> ErnieConfig:
  values = vars(hf_bert.config_from_hf(hf, source))
  task_types = hf.get("task_type_vocab_size", 3)
  if not isinstance(task_types, int) or isinstance(task_types, bool) or task_types <= 0:
    raise ValueError(f"{source}: task_type_vocab_size must be a positive integer, "
                     f"got {task_types!r}")
  return ErnieConfig(**values, use_task_id=bool(hf.get("use_task_id", False)),
                     task_type_vocab_size=task_types)


def config_to_hf(cfg: ErnieConfig, with_heads: bool = True) -> Dict[str, Any]:
  out = hf_bert.config_to_hf(cfg, with_heads)
  out.update(model_type="ernie",
             architectures=["ErnieForPreTraining" if with_heads else "ErnieModel"],
             use_task_id=cfg.use_task_id, task_type_vocab_size=cfg.task_type_vocab_size)
  return out


@registry.register
class ErnieConverter(hf_bert.BertConverter):
  """ERNIE: ErnieModel (backbone) / ErnieForPreTraining (+ MLM and NSP heads); BERT's table,
  heads, layer stack and gamma/beta aliases under 'ernie.', plus the task-type table."""
  model_type = "ernie"
  architecture_prefixes = ("Ernie",)
  config_class = ErnieConfig
  base_model_class = ErnieModel
  head_model_class = ErnieForPreTraining
  rules = RULES
  hf_backbone_prefix = "ernie."

  def rules_for(self, cfg):
    return list(self.rules) + ([TASK_TYPE_RULE] if cfg.use_task_id else [])

  def config_from_hf(self, hf_config, source="config.json"):
    return config_from_hf(hf_config, source)

  def config_to_hf(self, cfg, with_heads=True):
    return config_to_hf(cfg, with_heads)
