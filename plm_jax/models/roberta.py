"""RoBERTa (Liu et al., 2019): BERT's architecture with position ids offset past the padding id.

The network is BERT's (post-LN encoder, tied MLM decoder); what differs is the
recipe (plm_jax.objectives.roberta_pretrain) and two details of the Hugging
Face / fairseq checkpoints kept here: position ids start at pad_token_id + 1 and
count only non-padding tokens (padding gets position pad_token_id), so
max_position_embeddings is the longest input + pad_token_id + 1 (514 for 512
tokens); one token type; LayerNorm eps 1e-5; the MLM head's activation is
always exact GELU.

Contract (arguments and output names as in Hugging Face transformers):
  RobertaConfig              BertConfig fields (RoBERTa defaults) + pad_token_id
  RobertaModel(config)       __call__(input_ids, attention_mask=None, token_type_ids=None,
                             deterministic=True, position_ids=None) -> dict with
                             last_hidden_state [B, L, H], pooler_output [B, H]
  RobertaForMaskedLM(config) __call__(input_ids, attention_mask=None, token_type_ids=None,
                             masked_lm_positions=None, deterministic=True, position_ids=None)
                             -> dict with last_hidden_state, pooler_output, logits
                             ([B, P, V] at the positions, or [B, L, V])

pooler_output is tanh(dense([CLS])) as in BertModel; the MLM objective does not
train it (RoBERTa has no NSP), so heads attached later may prefer
last_hidden_state[:, 0] (what HF's RobertaClassificationHead reads).
"""
import dataclasses
from typing import Dict, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from plm_jax.models.bert import BertConfig, BertMlmHead, BertModel, gather_positions


@dataclasses.dataclass(frozen=True)
class RobertaConfig(BertConfig):
  vocab_size: int = 50265
  max_position_embeddings: int = 514
  type_vocab_size: int = 1
  layer_norm_eps: float = 1e-5
  pad_token_id: int = 1


def roberta_position_ids(input_ids: jax.Array, pad_token_id: int) -> jax.Array:
  """input_ids [batch, length] -> position ids [batch, length] int32: pad_token_id + 1 + the
  index among the row's non-padding tokens, and pad_token_id at padding (fairseq/HF)."""
  keep = (input_ids != pad_token_id).astype(jnp.int32)
  return jnp.cumsum(keep, axis=1) * keep + pad_token_id


class RobertaModel(BertModel):
  """BertModel (same params: embeddings, encoder, pooler) with RoBERTa's position ids."""
  config: RobertaConfig

  def __call__(self, input_ids: jax.Array, attention_mask: Optional[jax.Array] = None,
               token_type_ids: Optional[jax.Array] = None, deterministic: bool = True,
               position_ids: Optional[jax.Array] = None) -> Dict[str, jax.Array]:
    cfg = self.config
    needed = input_ids.shape[-1] + cfg.pad_token_id + 1
    if position_ids is None and needed > cfg.max_position_embeddings:
      raise ValueError(f"sequence length {input_ids.shape[-1]} needs max_position_embeddings >= "
                       f"{needed} (length + pad_token_id + 1), got {cfg.max_position_embeddings}")
    if position_ids is None:
      position_ids = roberta_position_ids(input_ids, cfg.pad_token_id)
    return super().__call__(input_ids, attention_mask, token_type_ids,
                            deterministic=deterministic, position_ids=position_ids)


class RobertaForMaskedLM(nn.Module):
  """RobertaModel ('roberta') + LM head ('lm_head': dense -> GELU -> LN -> tied decoder + bias)."""
  config: RobertaConfig

  def setup(self):
    cfg = self.config
    self.roberta = RobertaModel(cfg)
    self.lm_head = BertMlmHead(cfg.replace(hidden_act="gelu"))   # HF RobertaLMHead: gelu always

  def __call__(self, input_ids: jax.Array, attention_mask: Optional[jax.Array] = None,
               token_type_ids: Optional[jax.Array] = None,
               masked_lm_positions: Optional[jax.Array] = None,
               deterministic: bool = True,
               position_ids: Optional[jax.Array] = None) -> Dict[str, jax.Array]:
    out = self.roberta(input_ids, attention_mask, token_type_ids, deterministic=deterministic,
                       position_ids=position_ids)
    hidden = out["last_hidden_state"]
    if masked_lm_positions is not None:
      hidden = gather_positions(hidden, masked_lm_positions)  # [batch, P, embed]
    return dict(out, logits=self.lm_head(hidden, self.roberta.attend))
