"""Fine-tuning models: a family's backbone plus a task head.

  FinetuneModel(family, config, head, num_labels, classifier_dropout)
    head="classification": dropout -> dense [H, num_labels] on the backbone's summary
        (BERT, ALBERT: the pooled [CLS] output, as BertForSequenceClassification); num_labels=1
        is regression (STS-B). Output {"logits": [B, num_labels]}. A backbone whose
        `classifier` is "first_token_mlp" (RoBERTa) instead reads the first token's final
        state: dropout -> dense [H, H] -> tanh -> dropout -> dense [H, num_labels]
        (RobertaClassificationHead; params classifier/dense, classifier/out_proj); ELECTRA's
        is the same with GELU (the backbone's classifier_activation).
    head="span": dense [H, 2] on every position (BertForQuestionAnswering's qa_outputs).
        Output {"start_logits": [B, L], "end_logits": [B, L]}.

Params: <backbone module name>/... (the family's backbone, e.g. bert/...), then
`classifier/{kernel,bias}` or `qa_outputs/{kernel,bias}` (the Hugging Face head
names). Heads are initialised N(0, initializer_range) with zero bias, like HF.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from plm_jax.finetune.backbones import get_backbone
from plm_jax.layers.mlp import dense

HEADS = ("classification", "span")


class FirstTokenClassifier(nn.Module):
  """RoBERTa's sentence head on the first token's state: [B, H] -> logits [B, num_labels].
  activation: 'tanh' (RoBERTa) or 'gelu' (exact; ELECTRA's ElectraClassificationHead)."""
  num_labels: int
  dropout: float
  std: float
  activation: str = "tanh"

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    act = jnp.tanh if self.activation == "tanh" else lambda h: jax.nn.gelu(h, approximate=False)
    x = nn.Dropout(self.dropout)(x, deterministic=deterministic)
    x = act(dense(x.shape[-1], ("embed", "mlp"), self.std, jnp.float32, "dense")(x))
    x = nn.Dropout(self.dropout)(x, deterministic=deterministic)
    return dense(self.num_labels, ("mlp", None), self.std, jnp.float32, "out_proj")(x
                                                                                   ).astype(jnp.float32)


class FinetuneModel(nn.Module):
  family: str
  config: Any
  head: str = "classification"
  num_labels: int = 2
  classifier_dropout: float = 0.1

  @nn.compact
  def __call__(self, input_ids: jax.Array, attention_mask: Optional[jax.Array] = None,
               token_type_ids: Optional[jax.Array] = None,
               deterministic: bool = True) -> Dict[str, jax.Array]:
    bb = get_backbone(self.family)
    out = bb.make_module(self.config, name=bb.module_name)(
        input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
        deterministic=deterministic)
    std = float(getattr(self.config, "initializer_range", 0.02))
    if self.head == "classification" and bb.classifier == "first_token_mlp":
      x = out[bb.sequence_output][:, 0]                                # [batch, embed]
      return {"logits": FirstTokenClassifier(self.num_labels, self.classifier_dropout, std,
                                             bb.classifier_activation,
                                             name="classifier")(x, deterministic)}
    if self.head == "classification":
      x = out[bb.summary_output]                                       # [batch, embed]
      x = nn.Dropout(self.classifier_dropout)(x, deterministic=deterministic)
      logits = dense(self.num_labels, ("embed", None), std, jnp.float32, "classifier")(x)
      return {"logits": logits.astype(jnp.float32)}                    # [batch, labels]
    if self.head == "span":
      x = out[bb.sequence_output]                                      # [batch, length, embed]
      logits = dense(2, ("embed", None), std, jnp.float32, "qa_outputs")(x)
      logits = logits.astype(jnp.float32)                              # [batch, length, 2]
      return {"start_logits": logits[..., 0], "end_logits": logits[..., 1]}
    raise ValueError(f"unknown head {self.head!r}; choose one of {HEADS}")
