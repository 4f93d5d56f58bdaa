"""Fine-tuning models: a family's backbone plus a task head.

  FinetuneModel(family, config, head, num_labels, classifier_dropout)
    head="classification": dropout -> dense [H, num_labels] on the backbone's summary
        (BERT, ALBERT: the pooled [CLS] output, as BertForSequenceClassification); num_labels=1
        is regression (STS-B). Output {"logits": [B, num_labels]}. A backbone whose
        `classifier` is "first_token_mlp" (RoBERTa) instead reads the first token's final
        state: dropout -> dense [H, H] -> tanh -> dropout -> dense [H, num_labels]
        (RobertaClassificationHead; params classifier/dense, classifier/out_proj); ELECTRA's
        is the same with GELU (the backbone's classifier_activation). A "last_token_summary"
        backbone (XLNet, left-padded batches) reads the LAST position's state: dense [H, H]
        -> tanh -> dropout -> dense [H, num_labels] (XLNetForSequenceClassification's
        summary_type 'last', summary_use_proj, tanh, summary_last_dropout, then logits_proj;
        params sequence_summary/summary, logits_proj).
    head="span": dense [H, 2] on every position (BertForQuestionAnswering's qa_outputs).
        Output {"start_logits": [B, L], "end_logits": [B, L]}.
    swapped_input_ids / swapped_attention_mask [B, L] (classification on a pooled summary):
        the pair in the other order (GPT-1's similarity tasks); both orders run through
        the backbone as one [2B, L] batch and their summaries are added before the head.
    lm_head=True (a causal-LM backbone: GPT): the output adds "lm_logits" [B, L, V] (or
        [2B, L, V], the given order first, with swapped inputs): the tied LM head's
        next-token logits, for GPT-1's auxiliary LM loss.

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


class SequenceSummary(nn.Module):
  """XLNet's sequence summary of the last position's state: dense [H, H] ('summary') -> tanh
  -> dropout, [B, H] -> [B, H] (XLNetSequenceSummary with summary_type 'last')."""
  dropout: float
  std: float

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    x = jnp.tanh(dense(x.shape[-1], ("embed", "mlp"), self.std, jnp.float32, "summary")(x))
    return nn.Dropout(self.dropout)(x, deterministic=deterministic)


class FinetuneModel(nn.Module):
  family: str
  config: Any
  head: str = "classification"
  num_labels: int = 2
  classifier_dropout: float = 0.1
  lm_head: bool = False

  @nn.compact
  def __call__(self, input_ids: jax.Array, attention_mask: Optional[jax.Array] = None,
               token_type_ids: Optional[jax.Array] = None,
               deterministic: bool = True, swapped_input_ids: Optional[jax.Array] = None,
               swapped_attention_mask: Optional[jax.Array] = None) -> Dict[str, jax.Array]:
    bb = get_backbone(self.family)
    batch = input_ids.shape[0]
    both = swapped_input_ids is not None
    if both:
      if self.head != "classification" or bb.classifier != "pooled":
        raise ValueError(f"swapped_input_ids: both orders need a classification head on a "
                         f"pooled summary ({self.family} has head {self.head!r}, classifier "
                         f"{bb.classifier!r})")
      masks = [jnp.ones_like(ids) if m is None else m for ids, m in
               ((input_ids, attention_mask), (swapped_input_ids, swapped_attention_mask))]
      attention_mask = jnp.concatenate(masks)                          # [2 batch, length]
      input_ids = jnp.concatenate([input_ids, swapped_input_ids])     # [2 batch, length]
      token_type_ids = None if token_type_ids is None else jnp.concatenate(
          [token_type_ids, jnp.zeros_like(swapped_input_ids)])
    if self.lm_head and not bb.causal_lm:
      raise ValueError(f"lm_head=True: the {self.family} backbone is not a causal LM")
    module = bb.make_module(self.config, name=bb.module_name)
    out = module(input_ids=input_ids, attention_mask=attention_mask,
                 token_type_ids=token_type_ids, deterministic=deterministic)
    extra = {}
    if self.lm_head:      # tied output layer, no params of its own
      extra["lm_logits"] = module.attend(out[bb.sequence_output])     # [batch', length, vocab]
    std = float(getattr(self.config, "initializer_range", 0.02))
    if self.head == "classification" and bb.classifier == "first_token_mlp":
      x = out[bb.sequence_output][:, 0]                                # [batch, embed]
      return {"logits": FirstTokenClassifier(self.num_labels, self.classifier_dropout, std,
                                             bb.classifier_activation,
                                             name="classifier")(x, deterministic), **extra}
    if self.head == "classification" and bb.classifier == "last_token_summary":
      x = out[bb.sequence_output][:, -1]                               # [batch, embed]
      x = SequenceSummary(self.classifier_dropout, std, name="sequence_summary")(
          x.astype(jnp.float32), deterministic)
      logits = dense(self.num_labels, ("mlp", None), std, jnp.float32, "logits_proj")(x)
      return {"logits": logits.astype(jnp.float32), **extra}           # [batch, labels]
    if self.head == "classification":
      x = out[bb.summary_output]                                       # [batch', embed]
      if both:
        x = x[:batch] + x[batch:]                                      # [batch, embed]
      x = nn.Dropout(self.classifier_dropout)(x, deterministic=deterministic)
      logits = dense(self.num_labels, ("embed", None), std, jnp.float32, "classifier")(x)
      return {"logits": logits.astype(jnp.float32), **extra}           # [batch, labels]
    if self.head == "span":
      x = out[bb.sequence_output]                                      # [batch, length, embed]
      logits = dense(2, ("embed", None), std, jnp.float32, "qa_outputs")(x)
      logits = logits.astype(jnp.float32)                              # [batch, length, 2]
      return {"start_logits": logits[..., 0], "end_logits": logits[..., 1], **extra}
    raise ValueError(f"unknown head {self.head!r}; choose one of {HEADS}")
