"""Hugging Face OpenAI GPT (GPT-1) and GPT-2 <-> plm_jax GPTLMHeadModel.

Both store their projections as Conv1D weights, [in, out] (the transpose of
torch.nn.Linear), so kernels map without a transpose. The attention input
projection is one fused c_attn [H, 3H] (+ bias [3H]): on import it is split into
three pseudo-tensors (c_attn_q / c_attn_k / c_attn_v, [H, H] each) that the table
maps to attention/{query,key,value}; on export the three are concatenated back.
The LM head is tied to the token embedding (lm_head.weight: a 'tied' rule, absent
from HF's own tied saves). Causal-mask buffers of older checkpoints are ignored.

The model with the (parameter-free) LM head is what an import gives by default.
"""
from typing import Any, Dict, Mapping

import numpy as np

from plm_jax.convert import registry
from plm_jax.convert.table import HEADS_BIAS, Rule, Transform
from plm_jax.models.gpt import GPT2Config, GPTLMHeadModel, GPTModel, OpenAIGPTConfig

# Conv1D [in, heads*head_dim] <-> flax q/k/v kernel [in, heads, head_dim].
CONV_HEADS_IN = Transform("conv_heads_in",
                          lambda x, c: x.reshape(x.shape[0], c["num_heads"], -1),
                          lambda x, c: x.reshape(x.shape[0], -1))
# Conv1D [heads*head_dim, out] <-> flax output kernel [heads, head_dim, out].
CONV_HEADS_OUT = Transform("conv_heads_out",
                           lambda x, c: x.reshape(c["num_heads"], -1, x.shape[-1]),
                           lambda x, c: x.reshape(-1, x.shape[-1]))
_QKV = ("q", "k", "v")
_QKV_FLAX = {"q": "query", "k": "key", "v": "value"}


def _rules(tokens: str, positions: str, final_norm: bool):
  hl, fl = "transformer.h.{layer}.", "transformer/h/layers_{layer}/"
  rules = [Rule(f"transformer.{tokens}.weight", "transformer/wte/embedding"),
           Rule(f"transformer.{positions}.weight", "transformer/wpe/embedding"),
           Rule("transformer.position_ids", kind="ignore"),
           Rule(hl + "attn.bias", kind="ignore"),          # causal-mask buffers
           Rule(hl + "attn.masked_bias", kind="ignore")]
  for p in _QKV:
    rules += [Rule(f"{hl}attn.c_attn_{p}.weight", f"{fl}attention/{_QKV_FLAX[p]}/kernel",
                   CONV_HEADS_IN),
              Rule(f"{hl}attn.c_attn_{p}.bias", f"{fl}attention/{_QKV_FLAX[p]}/bias", HEADS_BIAS)]
  rules += [
      Rule(hl + "attn.c_proj.weight", fl + "attention/out/kernel", CONV_HEADS_OUT),
      Rule(hl + "attn.c_proj.bias", fl + "attention/out/bias"),
      Rule(hl + "ln_1.weight", fl + "attention_layer_norm/scale"),
      Rule(hl + "ln_1.bias", fl + "attention_layer_norm/bias"),
      Rule(hl + "mlp.c_fc.weight", fl + "mlp/wi/kernel"),
      Rule(hl + "mlp.c_fc.bias", fl + "mlp/wi/bias"),
      Rule(hl + "mlp.c_proj.weight", fl + "mlp/wo/kernel"),
      Rule(hl + "mlp.c_proj.bias", fl + "mlp/wo/bias"),
      Rule(hl + "ln_2.weight", fl + "mlp_layer_norm/scale"),
      Rule(hl + "ln_2.bias", fl + "mlp_layer_norm/bias"),
      Rule("lm_head.weight", "transformer/wte/embedding", kind="tied"),
  ]
  if final_norm:
    rules += [Rule("transformer.ln_f.weight", "transformer/ln_f/scale"),
              Rule("transformer.ln_f.bias", "transformer/ln_f/bias")]
  return rules


def _positive_ints(hf: Mapping[str, Any], source: str, keys) -> None:
  for key in keys:
    if key not in hf:
      raise ValueError(f"{source}: required key {key!r} is missing")
    if not isinstance(hf[key], int) or isinstance(hf[key], bool) or hf[key] <= 0:
      raise ValueError(f"{source}: {key} must be a positive integer, got {hf[key]!r}")


def _common_fields(hf: Mapping[str, Any], source: str) -> Dict[str, Any]:
  _positive_ints(hf, source, ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"))
  if hf["n_embd"] % hf["n_head"]:
    raise ValueError(f"{source}: n_embd {hf['n_embd']} is not divisible by n_head {hf['n_head']}")
  return dict(vocab_size=hf["vocab_size"], max_position_embeddings=hf["n_positions"],
              hidden_size=hf["n_embd"], num_layers=hf["n_layer"], num_heads=hf["n_head"],
              layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5),
              embedding_dropout_rate=hf.get("embd_pdrop", 0.1),
              hidden_dropout_rate=hf.get("resid_pdrop", 0.1),
              attention_dropout_rate=hf.get("attn_pdrop", 0.1),
              initializer_range=hf.get("initializer_range", 0.02))


def _common_to_hf(cfg) -> Dict[str, Any]:
  return dict(vocab_size=cfg.vocab_size, n_positions=cfg.max_position_embeddings,
              n_embd=cfg.hidden_size, n_layer=cfg.num_layers, n_head=cfg.num_heads,
              layer_norm_epsilon=cfg.layer_norm_eps, embd_pdrop=cfg.embedding_dropout_rate,
              resid_pdrop=cfg.hidden_dropout_rate, attn_pdrop=cfg.attention_dropout_rate,
              initializer_range=cfg.initializer_range, tie_word_embeddings=True)


class _GPTConverter(registry.Converter):
  """What GPT-1 and GPT-2 share: the fused c_attn, the tied head, the 'transformer.' prefix."""
  base_model_class = GPTModel
  head_model_class = GPTLMHeadModel
  head_prefixes = ("lm_head.",)
  task_head_prefixes = ("classifier.", "qa_outputs.", "score.", "multiple_choice_head.")
  hf_backbone_prefix = "transformer."
  flax_backbone_prefix = "transformer/"

  def rule_context(self, cfg):
    return {"num_heads": cfg.num_heads}

  def layer_stacks(self, cfg):
    return {"transformer/h": cfg.num_layers}

  def import_hf(self, hf_dir, with_heads=None, seed=0):
    # The LM head has no params of its own (tied): a backbone checkpoint gives it too.
    return super().import_hf(hf_dir, True if with_heads is None else with_heads, seed)

  def _canonical_names(self, tensors):
    out = {}
    for name, value in super()._canonical_names(tensors).items():
      stem, dot, kind = name.rpartition(".")
      if stem.endswith(".attn.c_attn") and kind in ("weight", "bias"):
        parts = np.split(np.asarray(value), 3, axis=-1)   # [.., 3H] -> q, k, v [.., H]
        for p, part in zip(_QKV, parts):
          out[f"{stem}_{p}{dot}{kind}"] = part
      else:
        out[name] = value
    return out

  def export_hf(self, params, cfg):
    tensors, heads = super().export_hf(params, cfg)
    out = {}
    for name in sorted(tensors):
      stem, dot, kind = name.rpartition(".")
      if stem.endswith(".attn.c_attn_q"):
        base = stem[:-2]
        out[f"{base}{dot}{kind}"] = np.concatenate(
            [tensors[f"{base}_{p}{dot}{kind}"] for p in _QKV], axis=-1)
      elif not stem.endswith((".attn.c_attn_k", ".attn.c_attn_v")):
        out[name] = tensors[name]
    return out, heads


_OPENAI_ACT = {"gelu": "gelu_tanh", "relu": "relu", "silu": "silu", "swish": "silu"}


@registry.register
class OpenAIGPTConverter(_GPTConverter):
  """GPT-1: OpenAIGPTModel / OpenAIGPTLMHeadModel (tokens_embed, positions_embed, post-LN)."""
  model_type = "openai-gpt"
  architecture_prefixes = ("OpenAIGPT",)
  config_class = OpenAIGPTConfig
  rules = _rules("tokens_embed", "positions_embed", final_norm=False)

  def config_from_hf(self, hf_config, source="config.json"):
    act = hf_config.get("afn", "gelu")
    if act not in _OPENAI_ACT:
      raise ValueError(f"{source}: unsupported afn {act!r}; supported: {sorted(_OPENAI_ACT)}")
    fields = _common_fields(hf_config, source)
    return OpenAIGPTConfig(**fields, intermediate_size=4 * fields["hidden_size"],
                           hidden_act=_OPENAI_ACT[act])

  def config_to_hf(self, cfg, with_heads=True):
    if cfg.intermediate_size != 4 * cfg.hidden_size or cfg.norm_position != "post":
      raise ValueError(f"OpenAIGPTConfig: Hugging Face's GPT-1 has post-LN layers with an inner "
                       f"size of 4 * hidden_size ({4 * cfg.hidden_size}); got norm_position="
                       f"{cfg.norm_position!r}, intermediate_size={cfg.intermediate_size}")
    act = {"gelu_tanh": "gelu", "relu": "relu", "silu": "silu"}.get(cfg.hidden_act)
    if act is None:
      raise ValueError(f"OpenAIGPTConfig: hidden_act {cfg.hidden_act!r} has no GPT-1 afn")
    return dict(_common_to_hf(cfg), model_type="openai-gpt", afn=act,
                architectures=["OpenAIGPTLMHeadModel" if with_heads else "OpenAIGPTModel"])


_GPT2_ACT = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu",
             "relu": "relu", "silu": "silu", "swish": "silu"}


@registry.register
class GPT2Converter(_GPTConverter):
  """GPT-2: GPT2Model / GPT2LMHeadModel (wte, wpe, pre-LN, ln_f)."""
  model_type = "gpt2"
  architecture_prefixes = ("GPT2",)
  config_class = GPT2Config
  rules = _rules("wte", "wpe", final_norm=True)

  def config_from_hf(self, hf_config, source="config.json"):
    act = hf_config.get("activation_function", "gelu_new")
    if act not in _GPT2_ACT:
      raise ValueError(f"{source}: unsupported activation_function {act!r}; supported: "
                       f"{sorted(_GPT2_ACT)}")
    for key in ("scale_attn_by_inverse_layer_idx", "add_cross_attention"):
      if hf_config.get(key):
        raise ValueError(f"{source}: {key}=true is not supported")
    if not hf_config.get("scale_attn_weights", True):
      raise ValueError(f"{source}: scale_attn_weights=false is not supported")
    fields = _common_fields(hf_config, source)
    inner = hf_config.get("n_inner") or 4 * fields["hidden_size"]
    return GPT2Config(**fields, intermediate_size=inner, hidden_act=_GPT2_ACT[act])

  def config_to_hf(self, cfg, with_heads=True):
    if cfg.norm_position != "pre":
      raise ValueError(f"GPT2Config: Hugging Face's GPT-2 has pre-LN layers, got "
                       f"norm_position={cfg.norm_position!r}")
    act = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu", "silu": "silu"}[cfg.hidden_act]
    return dict(_common_to_hf(cfg), model_type="gpt2", activation_function=act,
                n_inner=cfg.intermediate_size, bos_token_id=50256, eos_token_id=50256,
                architectures=["GPT2LMHeadModel" if with_heads else "GPT2Model"])
