"""Hugging Face BERT <-> plm_jax BERT: the name table, config mapping, import and export.

  load_pretrained(path, with_heads=None, dtype='float32', scan_layers=False) -> (model, params)
  save_pretrained(params, bert_config, path)        params -> HF directory (config.json + safetensors)
  load_params_export(export_dir) -> (BertConfig, params)   a trainer export (orbax params + bert_config.json)

Heads (`with_heads`): None = whatever the checkpoint holds (MLM+NSP heads -> BertForPreTraining,
no heads -> BertModel); False = BertModel, head tensors dropped on purpose; True =
BertForPreTraining, every head tensor required; "init" = BertForPreTraining with head
params missing from the checkpoint freshly initialised (seed `seed`).
"""
import dataclasses
import json
import os
import re
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from plm_jax.convert import hf_io
from plm_jax.convert.table import (HEADS_BIAS, HEADS_IN_KERNEL, HEADS_OUT_KERNEL, TRANSPOSE,
                                   ConversionError, Rule, flatten, flax_to_hf, hf_to_flax,
                                   stack_layers, unflatten, unstack_layers)
from plm_jax.models.bert import BertConfig, BertForPreTraining, BertModel

EXPORT_PARAMS_DIR = "params"             # workdir/export/params (orbax StandardSave of the params)
EXPORT_CONFIG_FILE = "bert_config.json"  # workdir/export/bert_config.json (dataclasses.asdict)


def _backbone_rules():
  """HF 'bert.' names -> 'bert/' flax paths."""
  hl, fl = "bert.encoder.layer.{layer}.", "bert/encoder/layers_{layer}/"
  rules = [
      Rule("bert.embeddings.word_embeddings.weight", "bert/embeddings/word_embeddings/embedding"),
      Rule("bert.embeddings.position_embeddings.weight", "bert/embeddings/position_embeddings/embedding"),
      Rule("bert.embeddings.token_type_embeddings.weight",
           "bert/embeddings/token_type_embeddings/embedding"),
      Rule("bert.embeddings.LayerNorm.weight", "bert/embeddings/layer_norm/scale"),
      Rule("bert.embeddings.LayerNorm.bias", "bert/embeddings/layer_norm/bias"),
      Rule("bert.embeddings.position_ids", kind="ignore"),    # buffer, not a parameter
      Rule("bert.embeddings.token_type_ids", kind="ignore"),  # buffer, not a parameter
  ]
  for name in ("query", "key", "value"):
    rules += [Rule(f"{hl}attention.self.{name}.weight", f"{fl}attention/{name}/kernel", HEADS_IN_KERNEL),
              Rule(f"{hl}attention.self.{name}.bias", f"{fl}attention/{name}/bias", HEADS_BIAS)]
  rules += [
      Rule(hl + "attention.output.dense.weight", fl + "attention/out/kernel", HEADS_OUT_KERNEL),
      Rule(hl + "attention.output.dense.bias", fl + "attention/out/bias"),
      Rule(hl + "attention.output.LayerNorm.weight", fl + "attention_layer_norm/scale"),
      Rule(hl + "attention.output.LayerNorm.bias", fl + "attention_layer_norm/bias"),
      Rule(hl + "intermediate.dense.weight", fl + "mlp/wi/kernel", TRANSPOSE),
      Rule(hl + "intermediate.dense.bias", fl + "mlp/wi/bias"),
      Rule(hl + "output.dense.weight", fl + "mlp/wo/kernel", TRANSPOSE),
      Rule(hl + "output.dense.bias", fl + "mlp/wo/bias"),
      Rule(hl + "output.LayerNorm.weight", fl + "mlp_layer_norm/scale"),
      Rule(hl + "output.LayerNorm.bias", fl + "mlp_layer_norm/bias"),
      Rule("bert.pooler.dense.weight", "bert/pooler/dense/kernel", TRANSPOSE),
      Rule("bert.pooler.dense.bias", "bert/pooler/dense/bias"),
  ]
  return rules


HEAD_RULES = [
    Rule("cls.predictions.transform.dense.weight", "mlm_head/transform/kernel", TRANSPOSE),
    Rule("cls.predictions.transform.dense.bias", "mlm_head/transform/bias"),
    Rule("cls.predictions.transform.LayerNorm.weight", "mlm_head/layer_norm/scale"),
    Rule("cls.predictions.transform.LayerNorm.bias", "mlm_head/layer_norm/bias"),
    Rule("cls.predictions.bias", "mlm_head/bias"),
    # The decoder is tied to the word embeddings; its bias is the same tensor as predictions.bias.
    Rule("cls.predictions.decoder.weight", "bert/embeddings/word_embeddings/embedding", kind="tied"),
    Rule("cls.predictions.decoder.bias", "mlm_head/bias", kind="tied"),
    Rule("cls.seq_relationship.weight", "nsp_head/kernel", TRANSPOSE),
    Rule("cls.seq_relationship.bias", "nsp_head/bias"),
]
RULES = _backbone_rules() + HEAD_RULES
HEAD_PREFIXES = ("cls.predictions.", "cls.seq_relationship.")

# Older (TF-converted) checkpoints name LayerNorm params gamma/beta.
_ALIASES = [(re.compile(r"LayerNorm\.gamma$"), "LayerNorm.weight"),
            (re.compile(r"LayerNorm\.beta$"), "LayerNorm.bias")]

_ACT_FROM_HF = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                "relu": "relu"}
_ACT_TO_HF = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}


# ---- config -----------------------------------------------------------------------------

def config_from_hf(hf: Mapping[str, Any], source: str = "config.json") -> BertConfig:
  """HF BertConfig dict -> BertConfig; ValueError (one line) for anything not BERT-compatible."""
  model_type, archs = hf.get("model_type"), hf.get("architectures") or []
  if model_type != "bert" and not any(str(a).startswith("Bert") for a in archs):
    raise ValueError(f"{source}: not a BERT checkpoint (model_type={model_type!r}, "
                     f"architectures={archs}); plm_jax.convert.hf_bert imports BERT only")
  act = hf.get("hidden_act", "gelu")
  if act not in _ACT_FROM_HF:
    raise ValueError(f"{source}: unsupported hidden_act {act!r}; supported: {sorted(_ACT_FROM_HF)}")
  if hf.get("position_embedding_type", "absolute") != "absolute":
    raise ValueError(f"{source}: position_embedding_type {hf['position_embedding_type']!r} "
                     "is not supported (absolute only)")
  if hf.get("is_decoder") or hf.get("add_cross_attention"):
    raise ValueError(f"{source}: decoder / cross-attention BERT is not supported")
  return BertConfig(
      vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"],
      num_layers=hf["num_hidden_layers"], num_heads=hf["num_attention_heads"],
      intermediate_size=hf["intermediate_size"], hidden_act=_ACT_FROM_HF[act],
      max_position_embeddings=hf["max_position_embeddings"],
      type_vocab_size=hf.get("type_vocab_size", 2),
      layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
      hidden_dropout_rate=hf.get("hidden_dropout_prob", 0.1),
      attention_dropout_rate=hf.get("attention_probs_dropout_prob", 0.1),
      initializer_range=hf.get("initializer_range", 0.02))


def config_to_hf(cfg: BertConfig, with_heads: bool = True) -> Dict[str, Any]:
  return {
      "model_type": "bert",
      "architectures": ["BertForPreTraining" if with_heads else "BertModel"],
      "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
      "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
      "intermediate_size": cfg.intermediate_size, "hidden_act": _ACT_TO_HF[cfg.hidden_act],
      "max_position_embeddings": cfg.max_position_embeddings,
      "type_vocab_size": cfg.type_vocab_size, "layer_norm_eps": cfg.layer_norm_eps,
      "hidden_dropout_prob": cfg.hidden_dropout_rate,
      "attention_probs_dropout_prob": cfg.attention_dropout_rate,
      "initializer_range": cfg.initializer_range,
      "position_embedding_type": "absolute", "tie_word_embeddings": True, "pad_token_id": 0,
  }


# ---- params helpers ---------------------------------------------------------------------

def model_for(cfg: BertConfig, with_heads: bool) -> nn.Module:
  return BertForPreTraining(cfg) if with_heads else BertModel(cfg)


def init_params(cfg: BertConfig, with_heads: bool, rng: jax.Array) -> Dict:
  ids = jnp.zeros((1, 2), jnp.int32)
  return nn.unbox(model_for(cfg, with_heads).init(rng, ids)["params"])


def _expected_shapes(cfg: BertConfig) -> Dict[str, Tuple[int, ...]]:
  """Flat 'path' -> shape of BertForPreTraining params (unrolled layers)."""
  shapes = jax.eval_shape(lambda: init_params(cfg.replace(scan_layers=False), True, jax.random.key(0)))
  return {p: tuple(s.shape) for p, s in flatten(shapes).items()}


def _canonical_names(tensors: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """Adds the 'bert.' prefix to backbone names of prefix-less checkpoints; gamma/beta aliases."""
  out = {}
  for name, value in tensors.items():
    for pattern, repl in _ALIASES:
      name = pattern.sub(repl, name)
    if not name.startswith(("bert.", "cls.")):
      name = "bert." + name
    if name in out:
      raise ConversionError(f"checkpoint holds {name} twice (with and without the 'bert.' prefix)")
    out[name] = value
  return out


def _strip_bert(flat: Mapping[str, Any]) -> Dict[str, Any]:
  return {p[len("bert/"):]: v for p, v in flat.items()}


# ---- import -----------------------------------------------------------------------------

def import_hf(hf_dir: str, with_heads: Union[None, bool, str] = None, seed: int = 0
              ) -> Tuple[BertConfig, Dict, bool]:
  """Reads a HF BERT directory -> (BertConfig, nested numpy params (unrolled), has_heads)."""
  if with_heads not in (None, True, False, "init"):
    raise ValueError(f"with_heads must be None, True, False or 'init', got {with_heads!r}")
  hf_config = hf_io.read_config(hf_dir)
  cfg = config_from_hf(hf_config, source=hf_dir)
  tensors = _canonical_names(hf_io.read_weights(hf_dir))
  present = {pre for pre in HEAD_PREFIXES if any(n.startswith(pre) for n in tensors)}
  if with_heads is None:
    if present and len(present) < len(HEAD_PREFIXES):
      raise ConversionError(
          f"{hf_dir}: checkpoint has only some pretraining heads ({sorted(present)}); pass "
          "with_heads=False (backbone only) or with_heads='init' (fresh missing heads)")
    with_heads = bool(present)
  heads = with_heads is not False
  if not heads:
    tensors = {n: v for n, v in tensors.items() if not n.startswith("cls.")}
  expected = _expected_shapes(cfg)
  if not heads:
    expected = {p: s for p, s in expected.items() if p.startswith("bert/")}
  optional = [p for p in expected if not p.startswith("bert/")] if with_heads == "init" else []
  ctx = {"num_heads": cfg.num_heads}
  flat = hf_to_flax(tensors, RULES, expected, ctx, source=hf_dir, optional=optional)
  missing = [p for p in optional if p not in flat]
  if missing:
    fresh = flatten(init_params(cfg, True, jax.random.key(seed)))
    flat.update({p: np.asarray(fresh[p]) for p in missing})
  if not heads:
    flat = _strip_bert(flat)
  return cfg, unflatten(flat), heads


def load_pretrained(path: str, with_heads: Union[None, bool, str] = None, dtype: str = "float32",
                    scan_layers: bool = False, seed: int = 0) -> Tuple[nn.Module, Dict]:
  """HF BERT directory -> (model, params) with model.apply({'params': params}, input_ids=..., attention_mask=..., token_type_ids=...).

  model is BertForPreTraining when heads are loaded (see module doc), else BertModel.
  Params are float32 jax arrays; `dtype` is the compute dtype.
  """
  cfg, params, heads = import_hf(path, with_heads=with_heads, seed=seed)
  cfg = cfg.replace(dtype=dtype, scan_layers=scan_layers)
  if scan_layers:
    params = restack(params, cfg, to_scan=True)
  return model_for(cfg, heads), jax.tree_util.tree_map(jnp.asarray, params)


# ---- export -----------------------------------------------------------------------------

def _encoder_path(flat: Mapping[str, Any]) -> str:
  return "bert/encoder" if any(p.startswith("bert/") for p in flat) else "encoder"


def restack(params: Mapping, cfg: BertConfig, to_scan: bool) -> Dict:
  """Converts params between unrolled ('layers_i') and scan_layers ('layers' [n, ...]) layouts."""
  flat = flatten(params)
  stack = _encoder_path(flat)
  fn = stack_layers if to_scan else unstack_layers
  return unflatten(fn(flat, stack, cfg.num_layers))


def to_hf_tensors(params: Mapping, cfg: BertConfig) -> Tuple[Dict[str, np.ndarray], bool]:
  """plm_jax params (full or backbone-only, unrolled or scanned) -> (HF tensors, with_heads)."""
  flat = {p: np.asarray(v, dtype=np.float32) for p, v in flatten(nn.unbox(params)).items()}
  with_heads = any(p.startswith("bert/") for p in flat)
  if not with_heads:
    flat = {"bert/" + p: v for p, v in flat.items()}
  if any(p.startswith("bert/encoder/layers/") for p in flat):
    flat = unstack_layers(flat, "bert/encoder", cfg.num_layers)
  tensors = flax_to_hf(flat, RULES, {"num_heads": cfg.num_heads})
  if not with_heads:
    tensors = {n[len("bert."):]: v for n, v in tensors.items()}
  return tensors, with_heads


def save_pretrained(params: Mapping, bert_config: BertConfig, path: str) -> None:
  """Writes a HF directory (config.json + model.safetensors) loadable by transformers
  BertForPreTraining (full params) or BertModel (backbone-only params)."""
  tensors, with_heads = to_hf_tensors(params, bert_config)
  hf_io.write_checkpoint(path, config_to_hf(bert_config, with_heads), tensors)


# ---- plm_jax params export (trainer output) -----------------------------------------------

def save_params_export(params: Mapping, bert_config: BertConfig, export_dir: str) -> None:
  """Writes export_dir/params (orbax StandardCheckpointer) + export_dir/bert_config.json."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  export_dir = os.path.abspath(export_dir)
  os.makedirs(export_dir, exist_ok=True)
  ckptr = ocp.StandardCheckpointer()
  ckptr.save(os.path.join(export_dir, EXPORT_PARAMS_DIR),
             jax.tree_util.tree_map(jnp.asarray, nn.unbox(params)))
  ckptr.wait_until_finished()
  ckptr.close()
  with open(os.path.join(export_dir, EXPORT_CONFIG_FILE), "w") as f:
    json.dump(dataclasses.asdict(bert_config), f, indent=2)


def load_params_export(export_dir: str) -> Tuple[BertConfig, Dict]:
  """Reads a plm_jax export: export_dir/params (orbax) + export_dir/bert_config.json.

  Also accepts the params directory itself when bert_config.json sits next to it.
  """
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  export_dir = os.path.abspath(export_dir)
  if (not os.path.isfile(os.path.join(export_dir, EXPORT_CONFIG_FILE))
      and os.path.isfile(os.path.join(os.path.dirname(export_dir), EXPORT_CONFIG_FILE))):
    export_dir = os.path.dirname(export_dir)
  config_path = os.path.join(export_dir, EXPORT_CONFIG_FILE)
  params_path = os.path.join(export_dir, EXPORT_PARAMS_DIR)
  if not os.path.isfile(config_path) or not os.path.isdir(params_path):
    raise FileNotFoundError(f"{export_dir}: not a plm_jax params export "
                            f"(needs {EXPORT_CONFIG_FILE} and {EXPORT_PARAMS_DIR}/)")
  with open(config_path) as f:
    cfg = BertConfig.from_dict(json.load(f))
  ckptr = ocp.StandardCheckpointer()
  params = ckptr.restore(params_path)
  ckptr.close()
  return cfg, params
