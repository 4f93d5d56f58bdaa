"""One configurable Transformer layer and one layer stack (optional nn.scan and remat).

TransformerLayer covers the families' layers by fields: norm position 'post'
(BERT, GPT-1, RoBERTa, ELECTRA, ALBERT) or 'pre' (GPT-2, T5, XLNet-style
stacks), LayerNorm or RMSNorm, causal self-attention, an optional
cross-attention sublayer (encoder-decoder), biases on or off, attention scale,
plain or gated MLP.

stack_layers / LayerStack run any such layer class `num_layers` times,
unrolled (params layers_0 ... layers_{n-1}) or under nn.scan (one 'layers'
subtree with a leading [num_layers] axis named 'layers'), optionally under
jax.checkpoint (remat), passing any extra inputs through to every layer.

Encoder(config) is BERT's stack: TransformerLayer with the post-LN fields of a
config with hidden_size, num_heads, intermediate_size, hidden_act,
layer_norm_eps, hidden_dropout_rate, attention_dropout_rate, initializer_range,
dtype ('float32'|'bfloat16'), num_layers, scan_layers (bool), remat_policy
('none'|'full'|'dots_saveable'|'dots_with_no_batch_dims_saveable') and
optionally fused_ops (bool, default True).
"""
import inspect
from typing import Any, Mapping, Optional

import flax.linen as nn
import jax

from plm_jax.layers import common
from plm_jax.layers.attention import MultiHeadAttention
from plm_jax.layers.mlp import Mlp
from plm_jax.layers.norms import make_norm

REMAT_POLICIES = ("none", "full", "dots_saveable", "dots_with_no_batch_dims_saveable")
NORM_POSITIONS = ("post", "pre")


def remat_policy(name: str):
  """Config name -> jax.checkpoint policy (None for 'full' = save nothing)."""
  if name == "full":
    return None
  if name == "dots_saveable":
    return jax.checkpoint_policies.dots_saveable
  if name == "dots_with_no_batch_dims_saveable":
    return jax.checkpoint_policies.dots_with_no_batch_dims_saveable
  raise ValueError(f"unknown remat_policy {name!r}; choose one of {list(REMAT_POLICIES)}")


class TransformerLayer(nn.Module):
  """Self-attention [-> cross-attention] -> MLP, each a residual sublayer.

  post: x = norm(x + drop(f(x)))  (BERT).  pre: x = x + drop(f(norm(x)))  (GPT-2, T5;
  the final norm after the stack belongs to the model).

  Params: attention/{query,key,value,out}, attention_layer_norm,
  [cross_attention/..., cross_attention_layer_norm,] mlp/{wi | wi_0, wi_1, wo},
  mlp_layer_norm. The norms have a bias only for layernorm with use_bias.
  __call__ returns (x, None) so the same module serves as an nn.scan body.
  """
  num_heads: int
  intermediate_size: int
  hidden_act: str = "gelu"
  head_dim: Optional[int] = None
  norm_position: str = "post"
  norm_type: str = "layernorm"
  norm_eps: float = 1e-12
  causal: bool = False
  cross_attention: bool = False
  use_bias: bool = True
  attention_scale: Optional[float] = None
  mlp_gated: bool = False
  hidden_dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  initializer_range: float = 0.02
  dtype: Any = "float32"
  fused_ops: bool = True
  # Cross-layer sharing (ALBERT): a self-attention or MLP module instance created by the
  # caller and passed to several layers; its params live where it was created, the rest of
  # each layer (its norms, the other sublayer) stays the layer's own.
  shared_attention: Optional[nn.Module] = None
  shared_mlp: Optional[nn.Module] = None

  def _attention(self, name, causal):
    return make_attention(self, name, causal)

  def _residual(self, x, name, sublayer, deterministic):
    """One residual sublayer around sublayer(h) with its norm '{name}_layer_norm'."""
    norm = lambda: make_norm(self.norm_type, self.norm_eps, f"{name}_layer_norm",
                             self.use_bias, self.fused_ops)
    if self.norm_position == "pre":
      h = sublayer(norm()(x))
      return x + common.Dropout(self.hidden_dropout_rate)(h, deterministic=deterministic)
    if self.norm_position == "post":
      h = sublayer(x)
      h = common.Dropout(self.hidden_dropout_rate)(h, deterministic=deterministic)
      return norm()(x + h)
    raise ValueError(f"unknown norm_position {self.norm_position!r}; choose one of "
                     f"{list(NORM_POSITIONS)}")

  @nn.compact
  def __call__(self, x: jax.Array, bias: Optional[jax.Array] = None,
               encoder_outputs: Optional[jax.Array] = None,
               cross_bias: Optional[jax.Array] = None,
               deterministic: bool = True, decode: bool = False):
    """x [batch, length, embed] (float32 residual stream); bias: self-attention's additive
    bias (masks, position bias) broadcastable to [batch, heads, length, kv_len];
    encoder_outputs [batch, enc_len, enc_embed] and cross_bias (e.g. [batch, 1, 1, enc_len])
    for the cross-attention sublayer; decode: use the self-attention key/value cache."""
    x = common.constrain(x, common.BATCH_LENGTH_EMBED)
    attention = self.shared_attention
    if attention is None:
      attention = self._attention("attention", self.causal)
    x = self._residual(
        x, "attention",
        lambda h: attention(h, bias=bias, deterministic=deterministic, decode=decode),
        deterministic)
    if self.cross_attention:
      if encoder_outputs is None:
        raise ValueError("TransformerLayer(cross_attention=True) needs encoder_outputs")
      cross = self._attention("cross_attention", False)
      x = self._residual(
          x, "cross_attention",
          lambda h: cross(h, encoder_outputs, bias=cross_bias, deterministic=deterministic),
          deterministic)
    mlp = self.shared_mlp if self.shared_mlp is not None else make_mlp(self, "mlp")
    x = self._residual(x, "mlp", mlp, deterministic)
    return common.constrain(x, common.BATCH_LENGTH_EMBED), None  # [batch, length, embed] float32


def _field(layer, key):
  """A TransformerLayer field from a layer or a mapping of its kwargs (defaults filled)."""
  if isinstance(layer, Mapping):
    return layer.get(key, TransformerLayer.__dataclass_fields__[key].default)
  return getattr(layer, key)


def make_attention(layer, name: Optional[str] = None,
                   causal: Optional[bool] = None) -> MultiHeadAttention:
  """The self-attention sublayer of a TransformerLayer (or of its kwargs, to share it)."""
  f = lambda k: _field(layer, k)
  return MultiHeadAttention(
      num_heads=f("num_heads"), head_dim=f("head_dim"),
      dropout_rate=f("attention_dropout_rate"), initializer_range=f("initializer_range"),
      use_bias=f("use_bias"), scale=f("attention_scale"),
      causal=f("causal") if causal is None else causal,
      dtype=common.get_dtype(f("dtype")), fused_ops=f("fused_ops"), name=name)


def make_mlp(layer, name: Optional[str] = None) -> Mlp:
  """The MLP sublayer of a TransformerLayer (or of its kwargs, to share it)."""
  f = lambda k: _field(layer, k)
  return Mlp(f("intermediate_size"), f("hidden_act"), f("initializer_range"),
             common.get_dtype(f("dtype")), use_bias=f("use_bias"), gated=f("mlp_gated"),
             fused_ops=f("fused_ops"), name=name)


def _is_static(value) -> bool:
  """Python scalars and strings (deterministic, decode, ...) are static under remat."""
  return isinstance(value, (bool, int, float, str))


def stack_layers(layer_cls, layer_kwargs: Mapping[str, Any], num_layers: int, x: jax.Array,
                 *args, scan: bool = False, remat: str = "none", name: str = "layers",
                 **kwargs) -> jax.Array:
  """Runs layer_cls(**layer_kwargs) num_layers times on x inside the current compact module.

  Every layer gets the same extra inputs (*args, **kwargs), bound to the
  layer's __call__(x, ...) signature (no *args/**kwargs there) and passed
  positionally; Python scalars among them (deterministic, decode) are static
  under remat, arrays and None are traced. The layer returns (x, aux); aux is
  dropped. Params: '{name}_{i}' unrolled, or '{name}' with a leading
  [num_layers] axis (logical name 'layers') under scan; the 'cache'
  collection (decoding) is scanned the same way.
  """
  bound = inspect.signature(layer_cls.__call__).bind(None, x, *args, **kwargs)
  bound.apply_defaults()
  extras = list(bound.arguments.values())[2:]  # after self and x
  layer = layer_cls
  if remat != "none":
    # Argument indices count the module itself as 0 and x as 1.
    static = tuple(i + 2 for i, v in enumerate(extras) if _is_static(v))
    layer = nn.remat(layer, policy=remat_policy(remat), prevent_cse=not scan,
                     static_argnums=static)
  if scan:
    layer = nn.scan(
        layer, variable_axes={"params": 0, "cache": 0},
        split_rngs={"params": True, "dropout": True},
        in_axes=(nn.broadcast,) * len(extras), length=num_layers,
        metadata_params={nn.PARTITION_NAME: "layers"})
    x, _ = layer(**layer_kwargs, name=name)(x, *extras)
  else:
    for i in range(num_layers):
      x, _ = layer(**layer_kwargs, name=f"{name}_{i}")(x, *extras)
  return x


class LayerStack(nn.Module):
  """A module around stack_layers: params '{name}_{i}' / '{name}' below this module.

  (A model that wants the layers directly under its own scope, as BERT's
  'encoder/layers_{i}', calls stack_layers from its compact __call__ instead.)
  """
  layer_cls: Any
  layer_kwargs: Mapping[str, Any]
  num_layers: int
  scan_layers: bool = False
  remat_policy: str = "none"

  @nn.compact
  def __call__(self, x: jax.Array, *args, **kwargs) -> jax.Array:
    return stack_layers(self.layer_cls, self.layer_kwargs, self.num_layers, x, *args,
                        scan=self.scan_layers, remat=self.remat_policy, **kwargs)


def bert_layer_kwargs(config) -> dict:
  """TransformerLayer fields for BERT's post-LN layer from a BERT-style config."""
  return dict(
      num_heads=config.num_heads, intermediate_size=config.intermediate_size,
      hidden_act=config.hidden_act, norm_position="post", norm_type="layernorm",
      norm_eps=config.layer_norm_eps, hidden_dropout_rate=config.hidden_dropout_rate,
      attention_dropout_rate=config.attention_dropout_rate,
      initializer_range=config.initializer_range, dtype=config.dtype,
      fused_ops=getattr(config, "fused_ops", True))


class Encoder(nn.Module):
  """BERT's stack of `config.num_layers` post-LN TransformerLayers.

  scan_layers=False: params 'layers_0' ... 'layers_{n-1}'.
  scan_layers=True: one 'layers' subtree whose params have a leading [num_layers]
  axis with logical name 'layers'.
  """
  config: Any

  @nn.compact
  def __call__(self, x: jax.Array, bias: Optional[jax.Array] = None,
               deterministic: bool = True) -> jax.Array:
    """x [batch, length, embed], bias [batch, 1, 1, length] -> [batch, length, embed] float32."""
    cfg = self.config
    return stack_layers(TransformerLayer, bert_layer_kwargs(cfg), cfg.num_layers, x, bias,
                        deterministic=deterministic, scan=cfg.scan_layers,
                        remat=cfg.remat_policy)
