"""What fine-tuning needs to know of a family: one `Backbone` entry per family.

  register_backbone(Backbone(...))   a family joins fine-tuning (BERT below; each family
                                     issue adds its own entry next to its model)
  get_backbone(family)

An entry says how to build the family's model config (fresh, from a named size,
or from an imported / exported checkpoint plus the fine-tuning overrides), the
name of the backbone module inside the fine-tuning model (the converter's
backbone prefix, so imported params drop in), how to turn token ids of one or
two texts into model inputs (BERT: [CLS] A [SEP] B [SEP] with token types),
which output summarises a sequence for classification, and each parameter's
depth for layer-wise learning-rate decay.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

_REGISTRY: Dict[str, "Backbone"] = {}


@dataclasses.dataclass(frozen=True)
class Backbone:
  family: str
  module_name: str                                  # submodule name == converter backbone prefix
  config_class: type
  sizes: Mapping[str, Mapping[str, Any]]            # fresh (not pretrained) sizes
  make_module: Callable[[Any], Any]                 # model config -> flax backbone module
  # (model config, {hidden_dropout, attention_dropout, dtype, scan_layers, remat_policy,
  #  fused_ops}) -> model config with the fine-tuning run's settings
  apply_overrides: Callable[[Any, Mapping[str, Any]], Any]
  # (ids_a, ids_b or None, max_length, special ids) -> {input_ids, token_type_ids}
  format_inputs: Callable[..., Dict[str, np.ndarray]]
  special_roles: Tuple[str, ...]                    # vocabulary roles format_inputs uses
  summary_output: str                               # output name of the [B, H] summary
  sequence_output: str                              # output name of the [B, L, H] states
  num_layers: Callable[[Any], int]
  layer_depth: Callable[[str, int], int]            # (param path 'a/b/c', num_layers) -> depth
  # classification head: "pooled" (dropout -> classifier on summary_output: BERT, ALBERT) or
  # "first_token_mlp" (RoBERTa: dropout -> dense H -> tanh -> dropout -> out_proj on the
  # first token of sequence_output; params classifier/{dense,out_proj} as in HF) or
  # "text_to_text" (T5: no head; only the glue_t2t objective fine-tunes it) or
  # "last_token_summary" (XLNet: dense H -> tanh -> dropout -> logits_proj on the LAST
  # position of sequence_output, as HF's XLNetForSequenceClassification; needs pad_left)
  classifier: str = "pooled"
  classifier_activation: str = "tanh"               # first_token_mlp's: tanh | gelu (ELECTRA)
  # vocabulary -> config fields a fresh backbone takes from it (RoBERTa: pad_token_id)
  fresh_fields: Callable[[Any], Dict[str, Any]] = lambda vocab: {}
  # model config -> why layer-wise lr decay cannot apply ("" when it can)
  layer_decay_error: Callable[[Any], str] = lambda cfg: ""
  # A causal LM (GPT): the module's attend(states [B, L, H]) -> next-token logits [B, L, V],
  # and the default weight of GPT-1's auxiliary LM loss in fine-tuning (0: none)
  causal_lm: bool = False
  aux_lm_weight: float = 0.0
  # (ids_a, ids_b, max_length, special ids) -> {input_ids} of the pair in the other order,
  # the same tokens as format_inputs keeps (GPT-1's similarity tasks read both orders);
  # None: one order
  format_swapped: Optional[Callable[..., Dict[str, np.ndarray]]] = None
  # the checkpoint's embedding may have more rows than the vocabulary has ids (T5: 32,128
  # rows for 32,000 pieces + 100 sentinels)
  vocab_padded: bool = False
  # batches pad on the left, so the last position holds the last real token (XLNet)
  pad_left: bool = False


def register_backbone(backbone: Backbone) -> Backbone:
  _REGISTRY[backbone.family] = backbone
  return backbone


def get_backbone(family: str, key: str = "config.model.family") -> Backbone:
  if family == "elmo":
    raise ValueError(f"{key}={family!r}: ELMo is fine-tuned feature-based, by objective "
                     "'glue' only (configs/glue.py, plm_jax/finetune/objective_elmo.py)")
  if family not in _REGISTRY:
    raise ValueError(f"{key}={family!r}: no fine-tuning backbone for this family; known: "
                     f"{sorted(_REGISTRY)}")
  return _REGISTRY[family]


def families() -> Tuple[str, ...]:
  return tuple(sorted(_REGISTRY))


def truncate_pair(a: Sequence[int], b: Optional[Sequence[int]], budget: int
                  ) -> Tuple[list, Optional[list]]:
  """Drop tokens from the end of the longer text until both fit `budget` (BERT's rule)."""
  a = list(a)
  b = None if b is None else list(b)
  while len(a) + (len(b) if b is not None else 0) > budget:
    if b is not None and len(b) > len(a):
      b.pop()
    else:
      a.pop()
  return a, b


# ---- BERT -------------------------------------------------------------------------------

def _bert_inputs(ids_a, ids_b, max_length: int, special: Mapping[str, int]
                 ) -> Dict[str, np.ndarray]:
  """[CLS] A [SEP] (B [SEP]); token type 0 for [CLS] A [SEP], 1 for B [SEP]."""
  budget = max_length - (3 if ids_b is not None else 2)
  a, b = truncate_pair(ids_a, ids_b, budget)
  ids = [special["cls"]] + a + [special["sep"]]
  types = [0] * len(ids)
  if b is not None:
    ids += b + [special["sep"]]
    types += [1] * (len(b) + 1)
  return {"input_ids": np.asarray(ids, np.int32), "token_type_ids": np.asarray(types, np.int32)}


_LAYER = re.compile(r"(?:^|/)layers_(\d+)(?:/|$)")


def encoder_layer_depth(path: str, num_layers: int) -> int:
  """Embeddings 0, encoder layer i -> i + 1, everything above the encoder -> num_layers + 1."""
  m = _LAYER.search(path)
  if m:
    return int(m.group(1)) + 1
  parts = path.split("/")
  if len(parts) > 1 and parts[1] == "embeddings":
    return 0
  return num_layers + 1


def _bert_overrides(cfg, o: Mapping[str, Any]):
  return cfg.replace(hidden_dropout_rate=o["hidden_dropout"],
                     attention_dropout_rate=o["attention_dropout"], dtype=o["dtype"],
                     scan_layers=o["scan_layers"], remat_policy=o["remat_policy"],
                     fused_ops=o["fused_ops"])


def _register_bert():
  from plm_jax.models.bert import BertConfig, BertModel  # pylint: disable=import-outside-toplevel
  register_backbone(Backbone(
      family="bert", module_name="bert", config_class=BertConfig,
      sizes={"tiny": dict(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256),
             "small": dict(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024),
             "base": dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072)},
      make_module=BertModel, apply_overrides=_bert_overrides, format_inputs=_bert_inputs,
      special_roles=("cls", "sep"), summary_output="pooler_output",
      sequence_output="last_hidden_state", num_layers=lambda cfg: cfg.num_layers,
      layer_depth=encoder_layer_depth))


_register_bert()


def _register_ernie():
  """ERNIE 1.0: BERT's network (params under 'bert', plm_jax.models.ernie), BERT's inputs."""
  from plm_jax.models.ernie import ErnieConfig, ErnieModel  # pylint: disable=import-outside-toplevel
  register_backbone(dataclasses.replace(get_backbone("bert"), family="ernie",
                                        config_class=ErnieConfig, make_module=ErnieModel))


_register_ernie()


# ---- RoBERTa ----------------------------------------------------------------------------

def _roberta_inputs(ids_a, ids_b, max_length: int, special: Mapping[str, int]
                    ) -> Dict[str, np.ndarray]:
  """<s> A </s> (</s> B </s>), one token type (fairseq / HF RobertaTokenizer)."""
  budget = max_length - (4 if ids_b is not None else 2)
  a, b = truncate_pair(ids_a, ids_b, budget)
  ids = [special["cls"]] + a + [special["sep"]]
  if b is not None:
    ids += [special["sep"]] + b + [special["sep"]]
  return {"input_ids": np.asarray(ids, np.int32),
          "token_type_ids": np.zeros(len(ids), np.int32)}


def _roberta_fresh_fields(vocab) -> Dict[str, Any]:
  from plm_jax.data import vocab as vocab_lib  # pylint: disable=import-outside-toplevel
  return {"pad_token_id": vocab_lib.special_ids(vocab, ("pad",))[0]}


def _register_roberta():
  from plm_jax.models.roberta import RobertaConfig, RobertaModel  # pylint: disable=import-outside-toplevel
  register_backbone(Backbone(
      family="roberta", module_name="roberta", config_class=RobertaConfig,
      sizes={"tiny": dict(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256),
             "base": dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072)},
      make_module=RobertaModel, apply_overrides=_bert_overrides, format_inputs=_roberta_inputs,
      special_roles=("cls", "sep"), summary_output="pooler_output",
      sequence_output="last_hidden_state", num_layers=lambda cfg: cfg.num_layers,
      layer_depth=encoder_layer_depth, classifier="first_token_mlp",
      fresh_fields=_roberta_fresh_fields))


# ---- ALBERT -----------------------------------------------------------------------------

_GROUP = re.compile(r"(?:^|/)groups_(\d+)_layers_\d+(?:/|$)")


def _albert_depth(path: str, num_layers: int) -> int:
  """Embeddings and the E -> H mapping 0; layer group g (share_mode none: layer g) -> g + 1;
  pooler and heads num_layers + 1."""
  m = _GROUP.search(path)
  if m:
    return int(m.group(1)) + 1
  parts = path.split("/")
  if len(parts) > 1 and (parts[1] == "embeddings" or "/embedding_hidden_mapping_in/" in path):
    return 0
  return num_layers + 1


def _albert_layer_decay_error(cfg) -> str:
  # One parameter group per layer, named groups_{i}_layers_{k} (share_mode none or all);
  # attention / ffn sharing splits a layer's params between groups_* and layers_*.
  if cfg.share_mode in ("none", "all") and cfg.groups == cfg.num_layers:
    return ""
  return (f"ALBERT shares its layers (config share_mode={cfg.share_mode!r}, "
          f"{cfg.groups} group(s) for {cfg.num_layers} layers): a parameter has no single depth")


def _albert_overrides(cfg, o: Mapping[str, Any]):
  for key, plain in (("scan_layers", False), ("remat_policy", "none")):
    if o[key] != plain:
      raise ValueError(f"config.model.{key}={o[key]!r}: not available for the albert "
                       f"backbone (its shared layers are built unrolled); use {plain!r}")
  return cfg.replace(hidden_dropout_rate=o["hidden_dropout"],
                     attention_dropout_rate=o["attention_dropout"], dtype=o["dtype"],
                     fused_ops=o["fused_ops"])


def _register_albert():
  from plm_jax.models.albert import AlbertConfig, AlbertModel  # pylint: disable=import-outside-toplevel
  register_backbone(Backbone(
      family="albert", module_name="albert", config_class=AlbertConfig,
      sizes={"tiny": dict(embedding_size=32, hidden_size=64, num_layers=2, num_heads=2,
                          intermediate_size=256),
             "base": dict(embedding_size=128, hidden_size=768, num_layers=12, num_heads=12,
                          intermediate_size=3072)},
      make_module=AlbertModel, apply_overrides=_albert_overrides, format_inputs=_bert_inputs,
      special_roles=("cls", "sep"), summary_output="pooler_output",
      sequence_output="last_hidden_state",
      num_layers=lambda cfg: cfg.num_layers if cfg.share_mode == "none" else cfg.groups,
      layer_depth=_albert_depth, layer_decay_error=_albert_layer_decay_error))


_register_roberta()
_register_albert()


# ---- ELECTRA (the discriminator) ----------------------------------------------------------

def _electra_depth(path: str, num_layers: int) -> int:
  """As the released ELECTRA fine-tuning (model/optimization.py _get_layer_lrs): embeddings and
  embeddings_project 0, layer i -> i + 1, the task head num_layers + 1 = L + 2 (num_layers is
  L + 1 for this backbone), so layer i's factor is decay ** (L + 1 - i)."""
  m = _LAYER.search(path)
  if m:
    return int(m.group(1)) + 1
  parts = path.split("/")
  if len(parts) > 1 and parts[1] in ("embeddings", "embeddings_project"):
    return 0
  return num_layers + 1


def _register_electra():
  from plm_jax.models.electra import ElectraConfig, ElectraModel  # pylint: disable=import-outside-toplevel
  register_backbone(Backbone(
      family="electra", module_name="electra", config_class=ElectraConfig,
      sizes={"tiny": dict(embedding_size=32, hidden_size=64, num_layers=2, num_heads=2,
                          intermediate_size=256),
             "small": dict(embedding_size=128, hidden_size=256, num_layers=12, num_heads=4,
                           intermediate_size=1024),
             "base": dict(embedding_size=768, hidden_size=768, num_layers=12, num_heads=12,
                          intermediate_size=3072)},
      make_module=ElectraModel, apply_overrides=_bert_overrides, format_inputs=_bert_inputs,
      special_roles=("cls", "sep"),
      summary_output="last_hidden_state",   # unused: the head reads the first token (no pooler)
      sequence_output="last_hidden_state", num_layers=lambda cfg: cfg.num_layers + 1,
      layer_depth=_electra_depth, classifier="first_token_mlp", classifier_activation="gelu"))


_register_electra()


# ---- GPT-1 / GPT-2 ----------------------------------------------------------------------

def _gpt_inputs(ids_a, ids_b, max_length: int, special: Mapping[str, int],
                swap: bool = False) -> Dict[str, np.ndarray]:
  """GPT-1's input transformation: start A (delim B) extract. The vocabulary's end-of-text
  token plays all three parts (GPT-1 added three new tokens; one existing token keeps a
  pretrained checkpoint's vocabulary as it is); the classifier reads the extract token.
  swap: start B delim A extract, with the same (truncated) A and B."""
  eot = special["eos"]
  budget = max_length - (3 if ids_b is not None else 2)
  a, b = truncate_pair(ids_a, ids_b, budget)
  if swap and b is not None:
    a, b = b, a
  ids = [eot] + a + [eot] + ([] if b is None else b + [eot])
  return {"input_ids": np.asarray(ids, np.int32), "token_type_ids": np.zeros(len(ids), np.int32)}


def _gpt_swapped(ids_a, ids_b, max_length: int, special: Mapping[str, int]
                 ) -> Dict[str, np.ndarray]:
  return _gpt_inputs(ids_a, ids_b, max_length, special, swap=True)


def _gpt_depth(path: str, num_layers: int) -> int:
  """Token and position embeddings 0, layer i -> i + 1, ln_f and heads num_layers + 1."""
  m = _LAYER.search(path)
  if m:
    return int(m.group(1)) + 1
  parts = path.split("/")
  return 0 if len(parts) > 1 and parts[1] in ("wte", "wpe") else num_layers + 1


def _gpt_overrides(cfg, o: Mapping[str, Any]):
  return cfg.replace(hidden_dropout_rate=o["hidden_dropout"],
                     embedding_dropout_rate=o["hidden_dropout"],
                     attention_dropout_rate=o["attention_dropout"], dtype=o["dtype"],
                     scan_layers=o["scan_layers"], remat_policy=o["remat_policy"],
                     fused_ops=o["fused_ops"])


def _register_gpt():
  from plm_jax.models import gpt  # pylint: disable=import-outside-toplevel
  tiny = dict(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256)
  base = dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072)
  for family, cls in (("gpt2", gpt.GPT2Config), ("openai-gpt", gpt.OpenAIGPTConfig)):
    register_backbone(Backbone(
        family=family, module_name="transformer", config_class=cls,
        sizes={"tiny": tiny, "base": base}, make_module=gpt.GPTSequenceBackbone,
        apply_overrides=_gpt_overrides, format_inputs=_gpt_inputs, special_roles=("eos",),
        summary_output="last_token_state", sequence_output="last_hidden_state",
        num_layers=lambda cfg: cfg.num_layers, layer_depth=_gpt_depth, causal_lm=True,
        aux_lm_weight=0.5, format_swapped=_gpt_swapped))


_register_gpt()


# ---- T5 (text-to-text: plm_jax/finetune/objective_t2t.py) ----------------------------------

def _t5_inputs(ids_a, ids_b, max_length: int, special: Mapping[str, int]):
  raise ValueError("the t5 backbone reads text (config.objective='glue_t2t'), not token pairs")


def _t5_overrides(cfg, o: Mapping[str, Any]):
  # T5 has one dropout rate (hidden states and attention probabilities): hidden_dropout.
  return cfg.replace(dropout_rate=o["hidden_dropout"], dtype=o["dtype"],
                     scan_layers=o["scan_layers"], remat_policy=o["remat_policy"],
                     fused_ops=o["fused_ops"])


def _register_t5():
  from plm_jax.models.t5 import T5Config, T5ForConditionalGeneration  # pylint: disable=import-outside-toplevel
  register_backbone(Backbone(
      family="t5", module_name="t5", config_class=T5Config,
      sizes={"tiny": dict(hidden_size=64, head_dim=16, intermediate_size=128, num_layers=2,
                          num_decoder_layers=2, num_heads=4, feed_forward_proj="gated-gelu",
                          tie_word_embeddings=False),
             "small": dict(hidden_size=512, head_dim=64, intermediate_size=1024, num_layers=8,
                           num_decoder_layers=8, num_heads=6, feed_forward_proj="gated-gelu",
                           tie_word_embeddings=False)},
      make_module=T5ForConditionalGeneration, apply_overrides=_t5_overrides,
      format_inputs=_t5_inputs, special_roles=(), summary_output="", sequence_output="",
      num_layers=lambda cfg: cfg.num_layers, layer_depth=lambda path, n: n + 1,
      classifier="text_to_text", fresh_fields=lambda vocab: {"eos_token_id": int(vocab.eos_id)},
      layer_decay_error=lambda cfg: "T5 is an encoder-decoder (no single layer order)",
      vocab_padded=True))


_register_t5()


# ---- XLNet ------------------------------------------------------------------------------

def _xlnet_inputs(ids_a, ids_b, max_length: int, special: Mapping[str, int]
                  ) -> Dict[str, np.ndarray]:
  """A <sep> (B <sep>) <cls>, segment ids 0 for A <sep>, 1 for B <sep>, 2 for <cls> (the
  released classifier_utils.py); the batches pad on the left (Backbone.pad_left)."""
  budget = max_length - (3 if ids_b is not None else 2)
  a, b = truncate_pair(ids_a, ids_b, budget)
  ids = a + [special["sep"]]
  types = [0] * len(ids)
  if b is not None:
    ids += b + [special["sep"]]
    types += [1] * (len(b) + 1)
  ids.append(special["cls"])
  types.append(2)
  return {"input_ids": np.asarray(ids, np.int32), "token_type_ids": np.asarray(types, np.int32)}


_XLNET_LAYER = re.compile(r"(?:^|/)layer_(\d+)(?:/|$)")


def _xlnet_depth(path: str, num_layers: int) -> int:
  """word_embedding and mask_emb 0, layer_i -> i + 1, the summary and logits_proj
  num_layers + 1."""
  m = _XLNET_LAYER.search(path)
  if m:
    return int(m.group(1)) + 1
  parts = path.split("/")
  if len(parts) > 1 and parts[0] == "transformer":
    return 0
  return num_layers + 1


def _xlnet_overrides(cfg, o: Mapping[str, Any]):
  """One dropout rate (hidden_dropout), no memory, no bi_data (the released run_classifier);
  layers are unrolled."""
  for key, plain in (("scan_layers", False), ("remat_policy", "none")):
    if o[key] != plain:
      raise ValueError(f"config.model.{key}={o[key]!r}: not available for the xlnet backbone "
                       f"(its layers are built unrolled); use {plain!r}")
  return cfg.replace(dropout_rate=o["hidden_dropout"], dtype=o["dtype"], fused_ops=o["fused_ops"],
                     bi_data=False, mem_len=0, reuse_len=0)


def _register_xlnet():
  from plm_jax.models.xlnet import XLNetConfig, XLNetModel  # pylint: disable=import-outside-toplevel
  register_backbone(Backbone(
      family="xlnet", module_name="transformer", config_class=XLNetConfig,
      sizes={"tiny": dict(hidden_size=64, num_layers=2, num_heads=2, head_dim=32,
                          intermediate_size=256),
             "base": dict(hidden_size=768, num_layers=12, num_heads=12, head_dim=64,
                          intermediate_size=3072),
             "large": dict(hidden_size=1024, num_layers=24, num_heads=16, head_dim=64,
                           intermediate_size=4096)},
      make_module=XLNetModel, apply_overrides=_xlnet_overrides, format_inputs=_xlnet_inputs,
      special_roles=("cls", "sep"),
      summary_output="last_hidden_state",   # unused: the head reads the last position
      sequence_output="last_hidden_state", num_layers=lambda cfg: cfg.num_layers,
      layer_depth=_xlnet_depth, classifier="last_token_summary", pad_left=True))


_register_xlnet()
