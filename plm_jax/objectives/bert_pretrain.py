"""BERT pretraining objective: masked LM + next-sentence prediction.

Devlin et al. (2019), section 3.1: the MLM loss is the cross-entropy of the
original token at the masked positions only (averaged over real masked tokens,
`masked_lm_weights` is 0 on padded prediction slots); the NSP loss is the
cross-entropy of IsNext / NotNext on the pooled [CLS] output. Total = sum.

Batch format (one global batch, all fixed shapes):
  input_ids, token_type_ids, attention_mask   int32   [B, L]
  masked_lm_positions, masked_lm_ids          int32   [B, P]
  masked_lm_weights                           float32 [B, P]
  next_sentence_label                         int32   [B]
"""
from __future__ import annotations

import functools
from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import ml_collections

from plm_jax.objectives import losses
from plm_jax.objectives.base import Batch, Metrics, Objective, register


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> Tuple[jax.Array, jax.Array]:
  """Per-item negative log-likelihood and correctness, in float32."""
  nll = losses.softmax_cross_entropy(logits, labels)
  correct = losses.top1_correct(logits, labels)
  return nll, correct


@register("bert_mlm_nsp")
class BertMlmNsp(Objective):
  """MLM + (optional, config.mlm.nsp) NSP on BertForPreTraining."""

  def __init__(self, config: ml_collections.ConfigDict):
    super().__init__(config)
    self._vocab_size: Optional[int] = None

  # ---- model ----------------------------------------------------------------------
  def vocab_size(self) -> int:
    """Size of the data pipeline's vocabulary (overrides config.model.vocab_size)."""
    if self._vocab_size is None:
      from plm_jax.data.vocab import get_vocabulary  # pylint: disable=import-outside-toplevel
      self._vocab_size = int(get_vocabulary(self.config).vocab_size)
    return self._vocab_size

  def model_config(self):
    from plm_jax.models.bert import BertConfig  # pylint: disable=import-outside-toplevel
    d = dict(self.config.model)
    d["vocab_size"] = self.vocab_size()
    return BertConfig.from_dict(d)

  @functools.lru_cache(maxsize=2)
  def make_model(self, deterministic: bool = True):
    # `deterministic` is a call argument of BertForPreTraining; loss_fn passes it.
    del deterministic
    from plm_jax.models.bert import BertForPreTraining  # pylint: disable=import-outside-toplevel
    return BertForPreTraining(self.model_config())

  # ---- batch format ---------------------------------------------------------------
  def batch_spec(self, batch_size: int) -> Dict[str, jax.ShapeDtypeStruct]:
    length = int(self.config.data.seq_length)
    preds = int(self.config.mlm.max_predictions)
    i32 = jnp.int32
    return {
        "input_ids": jax.ShapeDtypeStruct((batch_size, length), i32),
        "token_type_ids": jax.ShapeDtypeStruct((batch_size, length), i32),
        "attention_mask": jax.ShapeDtypeStruct((batch_size, length), i32),
        "masked_lm_positions": jax.ShapeDtypeStruct((batch_size, preds), i32),
        "masked_lm_ids": jax.ShapeDtypeStruct((batch_size, preds), i32),
        "masked_lm_weights": jax.ShapeDtypeStruct((batch_size, preds), jnp.float32),
        "next_sentence_label": jax.ShapeDtypeStruct((batch_size,), i32),
    }

  def init_params(self, rng: jax.Array) -> Any:
    """The 'params' collection; leaves may be nn.LogicallyPartitioned boxes."""
    dummy = {k: jnp.zeros(s.shape, s.dtype) for k, s in self.batch_spec(1).items()}
    params_rng, dropout_rng = jax.random.split(rng)
    variables = self.make_model(True).init(
        {"params": params_rng, "dropout": dropout_rng},
        input_ids=dummy["input_ids"], attention_mask=dummy["attention_mask"],
        token_type_ids=dummy["token_type_ids"], masked_lm_positions=dummy["masked_lm_positions"], deterministic=True)
    return variables["params"]

  # ---- loss -----------------------------------------------------------------------
  def loss_normalizers(self, batch: Batch) -> Dict[str, jax.Array]:
    """MLM: the number of masked tokens (weights); NSP: the number of examples."""
    return {"mlm": jnp.maximum(jnp.sum(batch["masked_lm_weights"].astype(jnp.float32)), 1e-8),
            "nsp": jnp.asarray(batch["next_sentence_label"].shape[0], jnp.float32)}

  def loss_fn(self, params: Any, batch: Batch, rng: Optional[jax.Array],
              deterministic: bool, normalizers: Optional[Dict[str, jax.Array]] = None
              ) -> Tuple[jax.Array, Metrics]:
    """MLM mean over masked tokens + NSP mean over examples, over this batch, or
    over the batch that `normalizers` (see loss_normalizers) was computed from."""
    norm = normalizers or self.loss_normalizers(batch)
    rngs = {} if (deterministic or rng is None) else {"dropout": rng}
    out = self.make_model(deterministic).apply(
        {"params": params}, input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"],
        masked_lm_positions=batch["masked_lm_positions"],
        deterministic=deterministic, rngs=rngs)

    weights = batch["masked_lm_weights"].astype(jnp.float32)               # [B, P]
    mlm_nll, mlm_correct = _cross_entropy(out["prediction_logits"], batch["masked_lm_ids"])
    mlm_sum = jnp.sum(mlm_nll * weights)
    mlm_weight = jnp.sum(weights)
    mlm_loss = mlm_sum / norm["mlm"]
    metrics = {
        "mlm_loss": (mlm_sum, mlm_weight),
        "mlm_accuracy": (jnp.sum(mlm_correct * weights), mlm_weight),
    }
    loss = mlm_loss
    if self.config.mlm.nsp:
      labels = batch["next_sentence_label"]                                 # [B]
      nsp_nll, nsp_correct = _cross_entropy(out["seq_relationship_logits"], labels)
      count = jnp.asarray(labels.shape[0], jnp.float32)
      nsp_loss = jnp.sum(nsp_nll) / norm["nsp"]
      loss = loss + nsp_loss
      metrics["nsp_loss"] = (jnp.sum(nsp_nll), count)
      metrics["nsp_accuracy"] = (jnp.sum(nsp_correct), count)
    # This batch's loss with weight 1; with normalizers, this micro-batch's
    # share of the whole batch's loss (the train step adds the shares up).
    metrics["loss"] = (loss, jnp.ones((), jnp.float32))
    return loss, metrics

  # ---- data -----------------------------------------------------------------------
  def get_dataset(self, split: str, batch_size: int, seed: int,
                  shard_index: int = 0, num_shards: int = 1,
                  num_epochs: Optional[int] = None):
    from plm_jax.data import bert_pretrain  # pylint: disable=import-outside-toplevel
    return bert_pretrain.get_dataset(self.config, split, batch_size, seed,
                                     shard_index, num_shards, num_epochs)
