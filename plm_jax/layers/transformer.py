"""Post-LN Transformer encoder layer and stack (optional nn.scan and remat).

The modules take one `config` with these fields (BertConfig has them all):
  hidden_size, num_heads, intermediate_size, hidden_act, layer_norm_eps,
  hidden_dropout_rate, attention_dropout_rate, initializer_range, dtype ('float32'|'bfloat16'),
  num_layers, scan_layers (bool), remat_policy ('none'|'full'|'dots_saveable'|
  'dots_with_no_batch_dims_saveable').
"""
from typing import Any, Optional

import flax.linen as nn
import jax

from plm_jax.layers import common
from plm_jax.layers.attention import MultiHeadAttention
from plm_jax.layers.mlp import Mlp

REMAT_POLICIES = ("none", "full", "dots_saveable", "dots_with_no_batch_dims_saveable")


def remat_policy(name: str):
  """Config name -> jax.checkpoint policy (None for 'full' = save nothing)."""
  if name == "full":
    return None
  if name == "dots_saveable":
    return jax.checkpoint_policies.dots_saveable
  if name == "dots_with_no_batch_dims_saveable":
    return jax.checkpoint_policies.dots_with_no_batch_dims_saveable
  raise ValueError(f"unknown remat_policy {name!r}; choose one of {list(REMAT_POLICIES)}")


class PostLNEncoderLayer(nn.Module):
  """x = LN(x + drop(attn(x))); x = LN(x + drop(mlp(x))) (BERT's layer).

  Params: attention/{query,key,value,out}, attention_layer_norm, mlp/{wi,wo}, mlp_layer_norm.
  __call__ returns (x, None) so the same module serves as an nn.scan body.
  """
  config: Any

  @nn.compact
  def __call__(self, x: jax.Array, bias: Optional[jax.Array], deterministic: bool):
    """x [batch, length, embed] (float32 residual stream), bias [batch, 1, 1, length]."""
    cfg = self.config
    dtype = common.get_dtype(cfg.dtype)
    x = common.constrain(x, common.BATCH_LENGTH_EMBED)
    h = MultiHeadAttention(
        num_heads=cfg.num_heads, dropout_rate=cfg.attention_dropout_rate,
        initializer_range=cfg.initializer_range, dtype=dtype, name="attention")(
            x, bias=bias, deterministic=deterministic)
    h = common.Dropout(cfg.hidden_dropout_rate)(h, deterministic=deterministic)
    x = common.LayerNorm(cfg.layer_norm_eps, name="attention_layer_norm")(x + h)
    h = Mlp(cfg.intermediate_size, cfg.hidden_act, cfg.initializer_range, dtype, name="mlp")(x)
    h = common.Dropout(cfg.hidden_dropout_rate)(h, deterministic=deterministic)
    x = common.LayerNorm(cfg.layer_norm_eps, name="mlp_layer_norm")(x + h)
    return common.constrain(x, common.BATCH_LENGTH_EMBED), None  # [batch, length, embed] float32


class Encoder(nn.Module):
  """A stack of `config.num_layers` encoder layers.

  scan_layers=False: params 'layers_0' ... 'layers_{n-1}'.
  scan_layers=True: one 'layers' subtree whose params have a leading [num_layers]
  axis with logical name 'layers'.
  """
  config: Any
  layer_cls: Any = PostLNEncoderLayer

  @nn.compact
  def __call__(self, x: jax.Array, bias: Optional[jax.Array] = None,
               deterministic: bool = True) -> jax.Array:
    cfg = self.config
    layer = self.layer_cls
    if cfg.remat_policy != "none":
      # Argument indices count the module itself as 0: x=1, bias=2, deterministic=3.
      layer = nn.remat(layer, policy=remat_policy(cfg.remat_policy),
                       prevent_cse=not cfg.scan_layers, static_argnums=(3,))
    if cfg.scan_layers:
      stack = nn.scan(
          layer, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
          in_axes=(nn.broadcast, nn.broadcast), length=cfg.num_layers,
          metadata_params={nn.PARTITION_NAME: "layers"})
      x, _ = stack(cfg, name="layers")(x, bias, deterministic)
    else:
      for i in range(cfg.num_layers):
        x, _ = layer(cfg, name=f"layers_{i}")(x, bias, deterministic)
    return x  # [batch, length, embed] float32
