"""ALBERT (Lan et al., 2020): factorised embeddings and cross-layer parameter sharing.

  embeddings: word/position/type tables of width embedding_size E (not H), LN, dropout
  encoder:    embedding_hidden_mapping_in (E -> H), then num_layers applications of
              BERT's post-LN TransformerLayer whose parameters are shared (share_mode):
      all        the layers fall into num_hidden_groups consecutive groups; every layer of
                 a group runs the group's inner_group_num TransformerLayers (Hugging
                 Face's num_hidden_groups / inner_group_num; 1 group = the paper's ALBERT)
      attention  the self-attention projections are shared (per group, as above); each
                 layer keeps its own norms and FFN
      ffn        the FFN is shared; each layer keeps its own attention and norms
      none       no sharing (= all with one group per layer)
  pooler:     tanh(dense([CLS])) as BERT
  heads:      MLM (dense H -> E, act, LN, tied decoder E -> V + bias) and SOP (dropout, 2-way)

Sharing reuses one TransformerLayer class: a shared layer is one module instance
called several times, a shared sublayer is a module passed to the layers
(TransformerLayer.shared_attention / shared_mlp). Unlike HF's AlbertLayer (which
applies no dropout to the FFN output) the FFN output gets hidden dropout as in
BERT and the original ALBERT; the same function without dropout.

Contract (Hugging Face names):
  AlbertConfig, check_albert_config(cfg, prefix) (one-line ValueError naming the key)
  AlbertModel(config)        __call__(input_ids, attention_mask=None, token_type_ids=None,
                             deterministic=True) -> last_hidden_state [B, L, H],
                             pooler_output [B, H]
  AlbertForPreTraining(config) ... masked_lm_positions=None -> + prediction_logits
                             ([B, P, V] or [B, L, V]), sop_logits [B, 2]
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
from plm_jax.layers.transformer import TransformerLayer, bert_layer_kwargs, make_attention, make_mlp
from plm_jax.models.bert import BertConfig, BertMlmHead, BertPooler, gather_positions

SHARE_MODES = ("all", "attention", "ffn", "none")


@dataclasses.dataclass(frozen=True)
class AlbertConfig(ModelConfig):
  vocab_size: int = 30000
  embedding_size: int = 128
  hidden_size: int = 768
  num_layers: int = 12
  num_heads: int = 12
  intermediate_size: int = 3072
  share_mode: str = "all"
  num_hidden_groups: int = 1
  inner_group_num: int = 1
  hidden_act: str = "gelu_tanh"          # HF 'gelu_new'
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  hidden_dropout_rate: float = 0.0       # ALBERT v2: no dropout
  attention_dropout_rate: float = 0.0
  classifier_dropout_rate: float = 0.1   # SOP head
  initializer_range: float = 0.02
  dtype: str = "float32"
  fused_ops: bool = True


  @property
  def groups(self) -> int:
    """Number of parameter groups actually built (share_mode none: one per layer)."""
    return self.num_layers if self.share_mode == "none" else self.num_hidden_groups


def check_albert_config(cfg: AlbertConfig, prefix: str = "config.model") -> None:
  """The sharing fields: a ValueError naming the key when they cannot describe a stack."""
  if cfg.share_mode not in SHARE_MODES:
    raise ValueError(f"{prefix}.share_mode={cfg.share_mode!r}: choose one of {list(SHARE_MODES)}")
  for key in ("num_layers", "num_hidden_groups", "inner_group_num", "embedding_size"):
    if getattr(cfg, key) <= 0:
      raise ValueError(f"{prefix}.{key}={getattr(cfg, key)!r}: must be > 0")
  if cfg.num_layers % cfg.num_hidden_groups:
    raise ValueError(f"{prefix}.num_hidden_groups={cfg.num_hidden_groups}: the sharing groups "
                     f"must divide num_layers={cfg.num_layers} evenly")


class AlbertEncoder(nn.Module):
  """embedding_hidden_mapping_in, then the shared layer stack (see the module doc).

  Params: embedding_hidden_mapping_in; share_mode all/none: groups_{g}/layers_{k}/...;
  attention / ffn: groups_{g}/{attention,mlp}_{k} (the shared sublayer) and
  layers_{i}/layers_{k}/... (the rest of layer i's k-th inner layer).
  """
  config: AlbertConfig

  @nn.compact
  def __call__(self, x: jax.Array, bias: Optional[jax.Array] = None,
               deterministic: bool = True) -> jax.Array:
    """x [batch, length, E] -> [batch, length, H] float32."""
    cfg = self.config
    check_albert_config(cfg)
    x = dense(cfg.hidden_size, (None, "embed"), cfg.initializer_range,
              common.get_dtype(cfg.dtype), "embedding_hidden_mapping_in")(x).astype(jnp.float32)
    kw = bert_layer_kwargs(cfg)
    per_group = cfg.num_layers // cfg.groups
    inner = range(cfg.inner_group_num)
    if cfg.share_mode in ("all", "none"):
      groups = [[TransformerLayer(**kw, name=f"groups_{g}_layers_{k}") for k in inner]
                for g in range(cfg.groups)]
      layer_at = lambda i, k: groups[i // per_group][k]
    else:
      make = make_attention if cfg.share_mode == "attention" else make_mlp
      field = "shared_attention" if cfg.share_mode == "attention" else "shared_mlp"
      part = "attention" if cfg.share_mode == "attention" else "mlp"
      shared = [[make(kw, name=f"groups_{g}_{part}_{k}") for k in inner]
                for g in range(cfg.groups)]
      layer_at = lambda i, k: TransformerLayer(
          **kw, **{field: shared[i // per_group][k]}, name=f"layers_{i}_layers_{k}")
    for i in range(cfg.num_layers):
      for k in inner:
        x, _ = layer_at(i, k)(x, bias, deterministic=deterministic)
    return x


class AlbertModel(nn.Module):
  """Backbone: embeddings (width E) -> encoder (width H) -> pooler."""
  config: AlbertConfig

  def setup(self):
    cfg = self.config
    self.embeddings = TextEmbeddings(
        vocab_size=cfg.vocab_size, hidden_size=cfg.embedding_size,
        max_position_embeddings=cfg.max_position_embeddings,
        type_vocab_size=cfg.type_vocab_size, layer_norm_eps=cfg.layer_norm_eps,
        dropout_rate=cfg.hidden_dropout_rate, initializer_range=cfg.initializer_range,
        dtype=common.get_dtype(cfg.dtype), fused_ops=cfg.fused_ops)
    self.encoder = AlbertEncoder(cfg)
    self.pooler = BertPooler(cfg)

  def __call__(self, input_ids: jax.Array, attention_mask: Optional[jax.Array] = None,
               token_type_ids: Optional[jax.Array] = None,
               deterministic: bool = True) -> Dict[str, jax.Array]:
    """input_ids/attention_mask/token_type_ids [batch, length] -> {last_hidden_state
    [batch, length, H], pooler_output [batch, H]}, float32."""
    x = self.embeddings(input_ids, token_type_ids, deterministic=deterministic)  # [B, L, E]
    x = self.encoder(x, padding_mask_bias(attention_mask), deterministic=deterministic)
    return {"last_hidden_state": x, "pooler_output": self.pooler(x)}

  def attend(self, query: jax.Array) -> jax.Array:
    """Tied decoder: [..., E] -> [..., vocab]."""
    return self.embeddings.attend(query)


def _mlm_head_config(cfg: AlbertConfig) -> BertConfig:
  """BERT's MLM head with ALBERT's sizes: transform H -> E, LN over E, decoder E -> V."""
  return BertConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.embedding_size,
                    hidden_act=cfg.hidden_act, layer_norm_eps=cfg.layer_norm_eps,
                    initializer_range=cfg.initializer_range, dtype=cfg.dtype,
                    fused_ops=cfg.fused_ops)


class AlbertForPreTraining(nn.Module):
  """AlbertModel ('albert') + MLM head ('predictions') + SOP head ('sop_classifier')."""
  config: AlbertConfig

  def setup(self):
    cfg = self.config
    self.albert = AlbertModel(cfg)
    self.predictions = BertMlmHead(_mlm_head_config(cfg))
    self.sop_dropout = common.Dropout(cfg.classifier_dropout_rate)
    self.sop_classifier = dense(2, ("embed", None), cfg.initializer_range,
                                common.get_dtype(cfg.dtype), name=None)

  def __call__(self, input_ids: jax.Array, attention_mask: Optional[jax.Array] = None,
               token_type_ids: Optional[jax.Array] = None,
               masked_lm_positions: Optional[jax.Array] = None,
               deterministic: bool = True) -> Dict[str, jax.Array]:
    out = self.albert(input_ids, attention_mask, token_type_ids, deterministic=deterministic)
    hidden = out["last_hidden_state"]
    if masked_lm_positions is not None:
      hidden = gather_positions(hidden, masked_lm_positions)  # [batch, P, H]
    pooled = self.sop_dropout(out["pooler_output"], deterministic=deterministic)
    return dict(out, prediction_logits=self.predictions(hidden, self.albert.attend),
                sop_logits=self.sop_classifier(pooled).astype(jnp.float32))
