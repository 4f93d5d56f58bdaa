"""BERT (Devlin et al., 2019): post-LN Transformer encoder backbone.

Contract (arguments and output names as in Hugging Face transformers):
  BertConfig                frozen dataclass, fields = configs/bert.py `model` section
  BertConfig.from_dict(d)   from a ConfigDict/dict; unknown key -> ValueError naming it
  BertModel(config)         __call__(input_ids, attention_mask=None, token_type_ids=None,
                            deterministic=True) -> dict with
                            last_hidden_state [B, L, H], pooler_output [B, H]
  BertForPreTraining(config) __call__(input_ids, attention_mask=None, token_type_ids=None,
                            masked_lm_positions=None, deterministic=True) -> dict with
                            last_hidden_state, pooler_output, prediction_logits ([B, P, V]
                            at the positions, or [B, L, V] when positions is None),
                            seq_relationship_logits [B, 2]
"""
import dataclasses
from typing import Dict, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from plm_jax.models.config_base import ModelConfig
from plm_jax.layers import common
from plm_jax.layers.attention import padding_mask_bias
from plm_jax.layers.embeddings import TextEmbeddings
from plm_jax.layers.mlp import dense
from plm_jax.layers.norms import LayerNorm
from plm_jax.layers.transformer import Encoder


@dataclasses.dataclass(frozen=True)
class BertConfig(ModelConfig):
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
  # CPU-specific custom VJPs and gradient barriers (plm_jax/layers/fused.py) on,
  # or the plain jax formulations; the same function either way.
  fused_ops: bool = True
  # Out-of-range input_ids / token_type_ids raise a ValueError with the id and position
  # (plm_jax.layers.checks) instead of reading a clamped row or giving NaN.
  check_inputs: bool = False


def task_type_vocab_size(cfg) -> int:
  """Rows of the task-type table: a config's task_type_vocab_size when it has
  use_task_id set (ERNIE, plm_jax.models.ernie), else 0 (no table)."""
  return int(cfg.task_type_vocab_size) if getattr(cfg, "use_task_id", False) else 0


class BertPooler(nn.Module):
  """tanh(dense(first token)). Params: dense [embed, mlp] (square hidden->hidden)."""
  config: BertConfig

  @nn.compact
  def __call__(self, sequence_output: jax.Array) -> jax.Array:
    cfg = self.config
    first = sequence_output[:, 0]  # [batch, embed]
    h = dense(cfg.hidden_size, ("embed", "mlp"), cfg.initializer_range,
              common.get_dtype(cfg.dtype), "dense")(first)
    return jnp.tanh(h).astype(jnp.float32)  # [batch, embed]


class BertModel(nn.Module):
  """Backbone: embeddings (sum -> LN -> dropout) -> encoder -> pooler.

  Params: embeddings/{word,position,token_type}_embeddings/embedding, embeddings/layer_norm,
  encoder/layers_{i} (or encoder/layers when scan_layers), pooler/dense.
  """
  config: BertConfig

  def setup(self):
    cfg = self.config
    self.embeddings = TextEmbeddings(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
        max_position_embeddings=cfg.max_position_embeddings,
        type_vocab_size=cfg.type_vocab_size, layer_norm_eps=cfg.layer_norm_eps,
        dropout_rate=cfg.hidden_dropout_rate, initializer_range=cfg.initializer_range,
        dtype=common.get_dtype(cfg.dtype), fused_ops=cfg.fused_ops,
        check_inputs=cfg.check_inputs, task_type_vocab_size=task_type_vocab_size(cfg))
    self.encoder = Encoder(cfg)
    self.pooler = BertPooler(cfg)

  def __call__(self, input_ids: jax.Array, attention_mask: Optional[jax.Array] = None,
               token_type_ids: Optional[jax.Array] = None,
               deterministic: bool = True,
               position_ids: Optional[jax.Array] = None,
               task_type_ids: Optional[jax.Array] = None) -> Dict[str, jax.Array]:
    """input_ids/attention_mask/token_type_ids [batch, length] -> {last_hidden_state
    [batch, length, embed], pooler_output [batch, embed]}, float32. position_ids
    [batch, length] default to 0 .. length-1; task_type_ids (ERNIE's, default 0) are
    read only by a config with use_task_id."""
    x = self.embeddings(input_ids, token_type_ids, position_ids, deterministic=deterministic,
                        task_type_ids=task_type_ids)
    x = self.encoder(x, padding_mask_bias(attention_mask), deterministic=deterministic)
    return {"last_hidden_state": x, "pooler_output": self.pooler(x)}

  def attend(self, query: jax.Array) -> jax.Array:
    """Tied decoder: [..., embed] -> [..., vocab] via the word embedding table."""
    return self.embeddings.attend(query)


class BertMlmHead(nn.Module):
  """transform (dense -> act -> LN) then the tied decoder plus an output bias [vocab].

  Params: transform [mlp, embed], layer_norm, bias [vocab]. `decoder` is the
  tied `attend` function of the word embeddings.

  The square transform kernel is named ("mlp", "embed"), i.e. sharded
  (tensor, fsdp) under the default rules. The mirror layout (fsdp, tensor)
  followed by the tied (tensor, fsdp) decoder hits an XLA SPMD partitioner bug
  (jax 0.10.2, CPU, mesh (2, 2, 2)): a wrong gradient for this kernel while
  the forward pass is right; tests/test_sharding.py keeps a repro of it.
  """
  config: BertConfig

  @nn.compact
  def __call__(self, hidden: jax.Array, decoder) -> jax.Array:
    """hidden [batch, P, embed] -> logits [batch, P, vocab] float32."""
    cfg = self.config
    h = dense(cfg.hidden_size, ("mlp", "embed"), cfg.initializer_range,
              common.get_dtype(cfg.dtype), "transform")(hidden)
    h = common.activation(cfg.hidden_act, cfg.fused_ops)(h)
    h = LayerNorm(cfg.layer_norm_eps, axis_name="embed", fused_ops=cfg.fused_ops,
                  name="layer_norm")(h)
    logits = decoder(h).astype(jnp.float32)  # [batch, P, vocab]
    bias = self.param("bias", common.partitioned(nn.initializers.zeros, ("vocab",)),
                      (cfg.vocab_size,), jnp.float32)
    return logits + bias


def gather_positions(sequence: jax.Array, positions: jax.Array) -> jax.Array:
  """sequence [batch, length, embed], positions [batch, P] int -> [batch, P, embed]."""
  return jnp.take_along_axis(sequence, positions[..., None].astype(jnp.int32), axis=1)


class BertForPreTraining(nn.Module):
  """BertModel ('bert') + MLM head ('mlm_head', tied decoder) + NSP head ('nsp_head')."""
  config: BertConfig

  def setup(self):
    cfg = self.config
    self.bert = BertModel(cfg)
    self.mlm_head = BertMlmHead(cfg)
    self.nsp_head = dense(2, ("embed", None), cfg.initializer_range,
                          common.get_dtype(cfg.dtype), name=None)

  def __call__(self, input_ids: jax.Array, attention_mask: Optional[jax.Array] = None,
               token_type_ids: Optional[jax.Array] = None,
               masked_lm_positions: Optional[jax.Array] = None,
               deterministic: bool = True,
               task_type_ids: Optional[jax.Array] = None) -> Dict[str, jax.Array]:
    out = self.bert(input_ids, attention_mask, token_type_ids, deterministic=deterministic,
                    task_type_ids=task_type_ids)
    sequence_output = out["last_hidden_state"]
    hidden = sequence_output
    if masked_lm_positions is not None:
      # Project only the P predicted positions onto the vocabulary, not every token.
      hidden = gather_positions(sequence_output, masked_lm_positions)  # [batch, P, embed]
    mlm_logits = self.mlm_head(hidden, self.bert.attend)
    nsp_logits = self.nsp_head(out["pooler_output"]).astype(jnp.float32)  # [batch, 2]
    return dict(last_hidden_state=sequence_output, pooler_output=out["pooler_output"],
                prediction_logits=mlm_logits, seq_relationship_logits=nsp_logits)
