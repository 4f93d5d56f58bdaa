"""Hugging Face XLNet <-> plm_jax XLNet: the name table, the config mapping, the registry entry.

Hugging Face stores each layer's projections q, k, v, o, r as [d_model, heads, d_head]
and the biases r_w / r_r / r_s as [heads, d_head], exactly the plm_jax layout, so they map
as they are; only the feed-forward Linear weights are transposed. The LM head
(lm_loss.weight) is tied to the word embedding ('tied' rule) and has its own bias.
XLNetModel checkpoints (no lm_loss) import as the backbone; XLNetLMHeadModel as the
model with the head, which is what an import gives when the bias is there.
"""
from typing import Any, Dict, Mapping

from plm_jax.convert import registry
from plm_jax.convert.table import TRANSPOSE, Rule
from plm_jax.models.xlnet import XLNetConfig, XLNetLMHeadModel, XLNetModel

_ACTS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "relu": "relu", "silu": "silu",
         "swish": "silu"}
_ACTS_TO_HF = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu"}


def _rules():
  hl, fl = "transformer.layer.{layer}.", "transformer/layer_{layer}/"
  rules = [Rule("transformer.word_embedding.weight", "transformer/word_embedding"),
           Rule("transformer.mask_emb", "transformer/mask_emb")]
  for p in ("q", "k", "v", "o", "r", "r_r_bias", "r_s_bias", "r_w_bias", "seg_embed"):
    rules.append(Rule(f"{hl}rel_attn.{p}", f"{fl}rel_attn/{p}"))
  for block in ("rel_attn", "ff"):
    rules += [Rule(f"{hl}{block}.layer_norm.weight", f"{fl}{block}/layer_norm/scale"),
              Rule(f"{hl}{block}.layer_norm.bias", f"{fl}{block}/layer_norm/bias")]
  for d in ("layer_1", "layer_2"):
    rules += [Rule(f"{hl}ff.{d}.weight", f"{fl}ff/{d}/kernel", TRANSPOSE),
              Rule(f"{hl}ff.{d}.bias", f"{fl}ff/{d}/bias")]
  return rules + [Rule("lm_loss.bias", "lm_loss_bias"),
                  Rule("lm_loss.weight", "transformer/word_embedding", kind="tied")]


RULES = _rules()


def _int(hf: Mapping[str, Any], key: str, source: str, minimum: int = 1) -> int:
  value = hf[key]
  if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
    raise ValueError(f"{source}: {key} must be an integer >= {minimum}, got {value!r}")
  return value


def config_from_hf(hf: Mapping[str, Any], source: str = "config.json") -> XLNetConfig:
  """HF XLNetConfig dict -> XLNetConfig; one-line ValueError naming the key otherwise."""
  d_model, n_head = _int(hf, "d_model", source), _int(hf, "n_head", source)
  if d_model % n_head:
    raise ValueError(f"{source}: d_model {d_model} is not divisible by n_head {n_head}")
  act = hf.get("ff_activation", "gelu")
  if act not in _ACTS:
    raise ValueError(f"{source}: ff_activation {act!r} is not supported; known: {sorted(_ACTS)}")
  if hf.get("attn_type", "bi") not in ("bi", "uni"):
    raise ValueError(f"{source}: attn_type {hf['attn_type']!r} must be 'bi' or 'uni'")
  if not hf.get("untie_r", True):
    raise ValueError(f"{source}: untie_r=false (one r_w / r_r bias for every layer) is not "
                     "supported")
  return XLNetConfig(
      vocab_size=_int(hf, "vocab_size", source), hidden_size=d_model,
      num_layers=_int(hf, "n_layer", source), num_heads=n_head, head_dim=d_model // n_head,
      intermediate_size=_int(hf, "d_inner", source), hidden_act=_ACTS[act],
      layer_norm_eps=float(hf.get("layer_norm_eps", 1e-12)),
      dropout_rate=float(hf.get("dropout", 0.1)),
      initializer_range=float(hf.get("initializer_range", 0.02)),
      attn_type=hf.get("attn_type", "bi"), bi_data=bool(hf.get("bi_data", False)),
      clamp_len=int(hf.get("clamp_len", -1)), same_length=bool(hf.get("same_length", False)),
      mem_len=int(hf.get("mem_len") or 0), reuse_len=int(hf.get("reuse_len") or 0))


def config_to_hf(cfg: XLNetConfig, with_heads: bool = True) -> Dict[str, Any]:
  if cfg.head_dim * cfg.num_heads != cfg.hidden_size:
    raise ValueError(f"XLNet export: head_dim {cfg.head_dim} x num_heads {cfg.num_heads} must "
                     f"equal hidden_size {cfg.hidden_size} (Hugging Face derives d_head)")
  return dict(
      model_type="xlnet", architectures=["XLNetLMHeadModel" if with_heads else "XLNetModel"],
      vocab_size=cfg.vocab_size, d_model=cfg.hidden_size, n_layer=cfg.num_layers,
      n_head=cfg.num_heads, d_head=cfg.head_dim, d_inner=cfg.intermediate_size,
      ff_activation=_ACTS_TO_HF[cfg.hidden_act], untie_r=True, attn_type=cfg.attn_type,
      layer_norm_eps=cfg.layer_norm_eps, dropout=cfg.dropout_rate,
      initializer_range=cfg.initializer_range, bi_data=cfg.bi_data, clamp_len=cfg.clamp_len,
      same_length=cfg.same_length, mem_len=cfg.mem_len or None,
      reuse_len=cfg.reuse_len or None, tie_word_embeddings=True)


@registry.register
class XLNetConverter(registry.Converter):
  """XLNet: XLNetModel (backbone) / XLNetLMHeadModel (+ lm_loss bias, tied weight)."""
  model_type = "xlnet"
  architecture_prefixes = ("XLNet",)
  config_class = XLNetConfig
  base_model_class = XLNetModel
  head_model_class = XLNetLMHeadModel
  rules = RULES
  head_prefixes = ("lm_loss.",)
  task_head_prefixes = ("sequence_summary.", "logits_proj.", "qa_outputs.", "start_logits.",
                        "end_logits.", "answer_class.", "classifier.")
  hf_backbone_prefix = "transformer."
  flax_backbone_prefix = "transformer/"

  def config_from_hf(self, hf_config, source="config.json"):
    return config_from_hf(hf_config, source)

  def config_to_hf(self, cfg, with_heads=True):
    return config_to_hf(cfg, with_heads)
