"""The plm_jax params export: one format, written by the trainer and the CLI, read here.

  export_dir/params            Orbax StandardCheckpointer save of the params (unboxed, float32)
  export_dir/plm_config.json   {"family": "bert",
                                "config_class": "plm_jax.models.bert.BertConfig",
                                "config": dataclasses.asdict(model_config)}
  export_dir/<tokenizer files> the run's vocabulary in Hugging Face's names (save_tokenizer):
                               WordPiece: vocab.txt + tokenizer_config.json (BertTokenizer);
                               SentencePiece: spiece.model. copy_tokenizer_files copies
                               them into a Hugging Face directory.

  save_export(export_dir, params, model_config, family) -> export_dir (absolute)
  load_export(export_dir) -> (family, model_config, params)

`config_class` is imported on load, so config dataclasses defined outside plm_jax
round-trip too (their module must be importable by the reader). The old format,
export_dir/<family>_config.json holding dataclasses.asdict(config) (e.g.
bert_config.json), is still read; the family's config class comes from the registry.
"""
import dataclasses
import glob
import importlib
import json
import os
import shutil
from typing import Any, Dict, Mapping, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

PARAMS_DIR = "params"
CONFIG_FILE = "plm_config.json"
_OLD_CONFIG_SUFFIX = "_config.json"  # old format: <family>_config.json


def _class_name(cls: type) -> str:
  return f"{cls.__module__}.{cls.__qualname__}"


def _import_class(name: str, source: str) -> type:
  """'pkg.module.Outer.Inner' -> the class; the longest importable module prefix wins."""
  parts = name.split(".")
  for i in range(len(parts) - 1, 0, -1):
    try:
      obj = importlib.import_module(".".join(parts[:i]))
    except ImportError:
      continue
    try:
      for attr in parts[i:]:
        obj = getattr(obj, attr)
    except AttributeError:
      break
    if isinstance(obj, type) and dataclasses.is_dataclass(obj):
      return obj
    break
  raise ValueError(f"{source}: config_class {name!r} is not an importable dataclass")


def _float32(x: Any) -> Any:
  if isinstance(x, jax.Array):  # keeps its sharding (the trainer's params)
    return x.astype(jnp.float32) if jnp.issubdtype(x.dtype, jnp.floating) else x
  x = np.asarray(x)  # jnp.issubdtype: numpy's says no for ml_dtypes' bfloat16
  return jnp.asarray(x.astype(np.float32) if jnp.issubdtype(x.dtype, jnp.floating) else x)


def save_export(export_dir: str, params: Mapping, model_config: Any, family: str) -> str:
  """Writes export_dir/params and export_dir/plm_config.json; returns the absolute export_dir.

  Call it on every process (the Orbax save is collective); only process 0 writes the
  JSON. An existing export in export_dir is replaced.
  """
  if not dataclasses.is_dataclass(model_config) or isinstance(model_config, type):
    raise ValueError(f"save_export: model_config must be a dataclass instance, got {model_config!r}")
  config_class = _class_name(type(model_config))
  try:
    readable = _import_class(config_class, "save_export") is type(model_config)
  except ValueError:
    readable = False
  if not readable:
    raise ValueError(f"save_export: {config_class} cannot be imported back by load_export "
                     "(define the config class at module level)")
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  export_dir = os.path.abspath(export_dir)
  os.makedirs(export_dir, exist_ok=True)
  params = jax.tree_util.tree_map(_float32, nn.unbox(params))
  ckptr = ocp.StandardCheckpointer()
  ckptr.save(os.path.join(export_dir, PARAMS_DIR), params, force=True)
  ckptr.wait_until_finished()
  ckptr.close()
  if jax.process_index() == 0:
    record = {"family": family, "config_class": config_class,
              "config": dataclasses.asdict(model_config)}
    tmp = os.path.join(export_dir, CONFIG_FILE + ".tmp")
    with open(tmp, "w") as f:
      json.dump(record, f, indent=2, sort_keys=True)
    os.replace(tmp, os.path.join(export_dir, CONFIG_FILE))
  return export_dir


TOKENIZER_FILES = ("vocab.txt", "spiece.model", "vocab.json", "merges.txt",
                   "tokenizer_config.json", "special_tokens_map.json")


def save_tokenizer(export_dir: str, vocab: Any, model_max_length: Optional[int] = None
                   ) -> Tuple[str, ...]:
  """Writes the vocabulary's files into export_dir under Hugging Face's names; returns them.

  A WordPiece vocabulary (plm_jax.data.vocab.WordPieceVocabulary: its tokens and case) gives
  vocab.txt and a tokenizer_config.json for transformers' BertTokenizer, whose ids it
  matches; a SentencePiece one gives its model as spiece.model (no tokenizer_config: no
  transformers class reproduces seqio's SentencePiece ids exactly); a byte-level BPE one
  (plm_jax.data.bpe) its vocab.json and merges.txt with a tokenizer_config.json for
  RobertaTokenizer (RoBERTa's <s> </s> specials) or GPT2Tokenizer; GPT-1's BPE
  (plm_jax.data.gpt1_bpe) the same files for OpenAIGPTTokenizer. None writes nothing.
  Only process 0 writes.
  """
  if vocab is None or jax.process_index() != 0:
    return ()
  if hasattr(vocab, "save_files"):   # a vocabulary that writes its own files (ELMo's words)
    return tuple(vocab.save_files(export_dir))
  if hasattr(vocab, "tokens") and hasattr(vocab, "lowercase"):   # WordPiece
    with open(os.path.join(export_dir, "vocab.txt"), "w", encoding="utf-8") as f:
      f.write("".join(token + "\n" for token in vocab.tokens))
    specials = getattr(vocab, "special_tokens", {})
    config = {"tokenizer_class": "BertTokenizer", "do_lower_case": bool(vocab.lowercase),
              **{f"{role}_token": token for role, token in specials.items()}}
    if model_max_length:
      config["model_max_length"] = int(model_max_length)
    with open(os.path.join(export_dir, "tokenizer_config.json"), "w") as f:
      json.dump(config, f, indent=2, sort_keys=True)
    return ("vocab.txt", "tokenizer_config.json")
  if hasattr(vocab, "merges_path") and hasattr(vocab, "vocab_path"):   # byte-level BPE
    for src, name in ((vocab.vocab_path, "vocab.json"), (vocab.merges_path, "merges.txt")):
      with open(src, "rb") as f_in, open(os.path.join(export_dir, name), "wb") as f_out:
        f_out.write(f_in.read())
    specials = getattr(vocab, "special_tokens", {})
    names = {"cls": "cls_token", "sep": "sep_token", "pad": "pad_token", "unk": "unk_token",
             "mask": "mask_token", "bos": "bos_token", "eos": "eos_token"}
    default_class = "RobertaTokenizer" if "cls" in specials else "GPT2Tokenizer"
    config = {"tokenizer_class": getattr(vocab, "hf_tokenizer_class", default_class),
              **{names[r]: t for r, t in specials.items() if r in names}}
    if "cls" in specials:
      config.update(bos_token=specials["cls"], eos_token=specials["sep"])
    if model_max_length:
      config["model_max_length"] = int(model_max_length)
    with open(os.path.join(export_dir, "tokenizer_config.json"), "w") as f:
      json.dump(config, f, indent=2, sort_keys=True)
    return ("vocab.json", "merges.txt", "tokenizer_config.json")
  # seqio.SentencePieceVocabulary: the model as trained (its file), not sp_model, which has
  # the extra ids (T5's sentinels) appended: a loader adds those again (T5Tokenizer, seqio)
  path = getattr(vocab, "sentencepiece_model_file", None)
  if path:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    with tf.io.gfile.GFile(path, "rb") as f:
      model = f.read()
  else:
    model = getattr(vocab, "sp_model", None)
  if model:
    with open(os.path.join(export_dir, "spiece.model"), "wb") as f:
      f.write(model)
    return ("spiece.model",)
  raise ValueError(f"save_tokenizer: no export format for vocabulary {vocab}")


def copy_tokenizer_files(export_dir: str, hf_dir: str) -> Tuple[str, ...]:
  """Copies the tokenizer files (TOKENIZER_FILES) of a params export into hf_dir (or, the
  other way, of a Hugging Face directory into an export)."""
  export_dir = _find_export_dir(export_dir)
  copied = []
  for name in TOKENIZER_FILES:
    if os.path.isfile(os.path.join(export_dir, name)):
      shutil.copyfile(os.path.join(export_dir, name), os.path.join(hf_dir, name))
      copied.append(name)
  return tuple(copied)


def _old_config_files(export_dir: str):
  return sorted(p for p in glob.glob(os.path.join(export_dir, "*" + _OLD_CONFIG_SUFFIX))
                if os.path.basename(p) != CONFIG_FILE)


def _find_export_dir(path: str) -> str:
  """The export dir itself, or the parent of its params/ dir."""
  path = os.path.abspath(path)
  def has_config(d):
    return os.path.isfile(os.path.join(d, CONFIG_FILE)) or bool(_old_config_files(d))
  if (not has_config(path) and os.path.basename(path.rstrip(os.sep)) == PARAMS_DIR
      and has_config(os.path.dirname(path))):
    return os.path.dirname(path)
  return path


def _build_config(cls: type, values: Mapping[str, Any], source: str) -> Any:
  if not isinstance(values, Mapping):
    raise ValueError(f"{source}: 'config' is not a JSON object")
  values = dict(values)
  for field in dataclasses.fields(cls):  # JSON turns tuples into lists
    if isinstance(values.get(field.name), list) and "tuple" in str(field.type).lower():
      values[field.name] = tuple(values[field.name])
  try:
    if hasattr(cls, "from_dict"):
      return cls.from_dict(values)
    return cls(**values)
  except (TypeError, ValueError) as e:
    raise ValueError(f"{source}: config does not fit {_class_name(cls)}: {e}") from None


def read_export_config(export_dir: str) -> Tuple[str, Any]:
  """(family, model config) of an export directory (new or old format)."""
  export_dir = _find_export_dir(export_dir)
  if not os.path.isdir(export_dir):
    raise FileNotFoundError(f"{export_dir}: no such export directory")
  path = os.path.join(export_dir, CONFIG_FILE)
  if os.path.isfile(path):
    try:
      with open(path) as f:
        record = json.load(f)
      family, class_name, values = record["family"], record["config_class"], record["config"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
      raise ValueError(f"{path}: not a plm_jax export config (needs family, config_class, "
                       f"config): {type(e).__name__}: {e}") from None
    return family, _build_config(_import_class(class_name, path), values, path)
  old = _old_config_files(export_dir)
  if not old:
    raise FileNotFoundError(f"{export_dir}: not a plm_jax params export "
                            f"(needs {CONFIG_FILE} and {PARAMS_DIR}/)")
  if len(old) > 1:
    raise ValueError(f"{export_dir}: several old-format configs "
                     f"{[os.path.basename(p) for p in old]}; keep one")
  from plm_jax.convert import registry  # pylint: disable=import-outside-toplevel
  family = os.path.basename(old[0])[:-len(_OLD_CONFIG_SUFFIX)]
  cls = registry.get_converter(family, source=old[0]).config_class
  try:
    with open(old[0]) as f:
      values = json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"{old[0]}: not JSON: {e}") from None
  return family, _build_config(cls, values, old[0])


def load_export(export_dir: str) -> Tuple[str, Any, Dict]:
  """Reads an export (or its params/ dir): (family, model config, params as saved)."""
  family, cfg = read_export_config(export_dir)
  export_dir = _find_export_dir(export_dir)
  params_path = os.path.join(export_dir, PARAMS_DIR)
  if not os.path.isdir(params_path):
    raise FileNotFoundError(f"{export_dir}: not a plm_jax params export (no {PARAMS_DIR}/ "
                            "next to its config)")
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  ckptr = ocp.StandardCheckpointer()
  try:
    # Onto this process's first device, whatever mesh and hosts wrote it (a multi-host
    # run's export names devices of other processes, which Orbax cannot restore onto).
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    saved = ckptr.metadata(params_path)
    saved = getattr(saved, "item_metadata", saved)
    target = jax.tree_util.tree_map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), saved)
    params = ckptr.restore(params_path, target)
  finally:
    ckptr.close()
  return family, cfg, params
