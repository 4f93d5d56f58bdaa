"""BERT (Devlin et al., 2019): post-LN Transformer encoder backbone.

Contract (helpers: keep these names):
  BertConfig                frozen dataclass, fields = configs/bert.py `model` section
  BertConfig.from_dict(d)   from a ConfigDict/dict; unknown key -> ValueError naming it
  BertModel(config)         __call__(input_ids, token_type_ids, attention_mask, deterministic=True)
                            -> (sequence_output [B, L, H], pooled_output [B, H])
  BertForPreTraining(config) __call__(input_ids, token_type_ids, attention_mask,
                            masked_lm_positions=None, deterministic=True) -> dict with
                            sequence_output, pooled_output, mlm_logits ([B, P, V] at the
                            positions, or [B, L, V] when positions is None), nsp_logits [B, 2]
"""
import dataclasses
from typing import Any, Mapping


@dataclasses.dataclass(frozen=True)
class BertConfig:
  vocab_size: int = 30522
  hidden_size: int = 768
  num_layers: int = 12
  num_heads: int = 12
  intermediate_size: int = 3072
  hidden_act: str = "gelu"
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  hidden_dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.1
  initializer_range: float = 0.02
  dtype: str = "float32"
  scan_layers: bool = False
  remat_policy: str = "none"

  @classmethod
  def from_dict(cls, d: Mapping[str, Any]) -> "BertConfig":
    d = dict(d)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
      raise ValueError(f"config.model: unknown key(s) {unknown} for BertConfig; known: {sorted(names)}")
    return cls(**d)

  def replace(self, **kw) -> "BertConfig":
    return dataclasses.replace(self, **kw)
