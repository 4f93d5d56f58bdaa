"""What every fine-tuning objective shares: its `init` / `model` sections, the model config,
the pretrained backbone's params, the vocabulary, and length-bucketed tf.data streams.

Sections:
  init   hf_dir: a Hugging Face model directory (config.json) or a plm_jax export
         (plm_config.json) to start from; empty: a fresh backbone of `model.size`.
  model  family, size (fresh only), dropout overrides, dtype, scan / remat, fused_ops;
         model.elmo: the task model of family elmo (ElmoSection; objective_elmo.py).
  vocab  the plm_jax.data VocabConfig; with an empty path the checkpoint directory's
         own tokenizer files are used (vocab.txt: WordPiece, with tokenizer_config.json's
         do_lower_case), else the section as given (builtin by default).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence

import jax
import numpy as np

from plm_jax.configlib import param
from plm_jax.data.config import VocabConfig
from plm_jax.finetune import backbones, batching
from plm_jax.layers.transformer import REMAT_POLICIES


@dataclasses.dataclass(frozen=True)
class InitConfig:
  hf_dir: str = ""                       # HF directory or plm_jax export; empty: fresh weights


ELMO = "elmo"     # config.model.family of the feature-based ELMo (plm_jax.finetune.objective_elmo)


@dataclasses.dataclass(frozen=True)
class ElmoSection:
  """config.model.elmo: the task model on a biLM's features (family elmo only). Defaults: the
  GLUE paper's BiLSTM baseline on ELMo (Wang et al. 2019; nyu-mll/GLUE-baselines: 2 layers of
  1,500 cells each way, MLP 512, dropout 0.2) with a frozen biLM as in Peters et al. 2018."""
  fine_tune_bilm: bool = False           # False: the biLM's params get no update
  task_dim: int = param(1500, ge=1)      # task BiLSTM cells per direction
  task_layers: int = param(2, ge=1)      # task BiLSTM layers
  mlp_dim: int = param(512, ge=0)        # classifier MLP hidden width; 0: task_dim
  dropout: float = param(0.2, ge=0.0, lt=1.0)   # on the mixed ELMo and in the MLP
  layer_norm: bool = False               # normalise each biLM layer before the scalar mix


@dataclasses.dataclass(frozen=True)
class FinetuneModelConfig:
  family: str = "bert"
  size: str = "tiny"                     # fresh backbone only (init.hf_dir empty)
  hidden_dropout: float = param(0.1, ge=0.0, lt=1.0)
  attention_dropout: float = param(0.1, ge=0.0, lt=1.0)
  classifier_dropout: float = param(-1.0, ge=-1.0, lt=1.0)  # -1: hidden_dropout
  dtype: str = param("float32", choices=("float32", "bfloat16"))
  scan_layers: bool = False
  remat_policy: str = param("none", choices=REMAT_POLICIES)
  fused_ops: bool = True
  elmo: ElmoSection = ElmoSection()      # family elmo only

  def check(self, prefix: str) -> None:
    if self.family == ELMO:              # no Backbone: the objective checks the rest
      return
    bb = backbones.get_backbone(self.family, f"{prefix}.family")
    if self.size not in bb.sizes:
      raise ValueError(f"{prefix}.size={self.size!r}: unknown {self.family} size; choose one "
                       f"of {sorted(bb.sizes)}")

  @property
  def head_dropout(self) -> float:
    return self.hidden_dropout if self.classifier_dropout < 0 else self.classifier_dropout


def _read_json(path: str) -> Dict:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None


class Checkpoint:
  """The starting point of a fine-tuning run: a fresh backbone, an HF directory or an export."""

  def __init__(self, init: InitConfig, model: FinetuneModelConfig):
    self.init, self.model = init, model
    self.backbone = backbones.get_backbone(model.family)
    self.path = init.hf_dir
    self.kind = "fresh"
    if self.path:
      if os.path.isfile(os.path.join(self.path, "config.json")):
        self.kind = "hf"
      elif os.path.isfile(os.path.join(self.path, "plm_config.json")):
        self.kind = "export"
      else:
        raise ValueError(f"config.init.hf_dir={self.path!r}: neither a Hugging Face directory "
                         "(config.json) nor a plm_jax export (plm_config.json)")

  def overrides(self) -> Dict[str, Any]:
    m = self.model
    return dict(hidden_dropout=m.hidden_dropout, attention_dropout=m.attention_dropout,
                dtype=m.dtype, scan_layers=m.scan_layers, remat_policy=m.remat_policy,
                fused_ops=m.fused_ops)

  def model_config(self, vocab):
    """The backbone's model config for `vocab` (a seqio vocabulary), with the run's overrides."""
    bb = self.backbone
    vocab_size = int(vocab.vocab_size)
    if self.kind == "fresh":
      cfg = bb.config_class(vocab_size=vocab_size, **bb.sizes[self.model.size],
                            **bb.fresh_fields(vocab))
    elif self.kind == "hf":
      from plm_jax.convert import hf_io, registry  # pylint: disable=import-outside-toplevel
      conv = registry.get_converter(self.model.family)
      source = os.path.join(self.path, "config.json")
      hf = hf_io.read_config(self.path)
      conv.check_hf_config(hf, source)
      cfg = conv.config_from_hf(hf, source=source)
    else:
      from plm_jax.convert import export  # pylint: disable=import-outside-toplevel
      family, cfg = export.read_export_config(self.path)
      if family != self.model.family:
        raise ValueError(f"{self.path}: a {family!r} export, but "
                         f"config.model.family={self.model.family!r}")
    rows = getattr(cfg, "vocab_size", vocab_size)
    if rows != vocab_size and not (bb.vocab_padded and rows > vocab_size):
      raise ValueError(f"{self.path}: the model's vocab_size is {cfg.vocab_size} but the "
                       f"vocabulary has {vocab_size} tokens (config.vocab)")
    for key, value in bb.fresh_fields(vocab).items():
      if self.kind != "fresh" and getattr(cfg, key) != value:
        raise ValueError(f"{self.path}: the model's {key} is {getattr(cfg, key)} but the "
                         f"vocabulary says {value} (config.vocab)")
    return bb.apply_overrides(cfg, self.overrides())

  def backbone_params(self, cfg) -> Optional[Dict]:
    """Host params of the backbone module (unrolled or stacked as cfg says), or None."""
    if self.kind == "fresh":
      return None
    from plm_jax.convert import registry  # pylint: disable=import-outside-toplevel
    conv = registry.get_converter(self.model.family)
    if self.kind == "hf":
      _, params, _ = conv.import_hf(self.path, with_heads=False)
    else:
      from plm_jax.convert import export  # pylint: disable=import-outside-toplevel
      _, _, params = export.load_export(self.path)
      params = jax.tree_util.tree_map(np.asarray, params)
      name = self.backbone.module_name
      if name in params:       # a pretraining or fine-tuning model: keep its backbone
        params = params[name]
      if _is_stacked(params):
        params = conv.restack(params, cfg, to_scan=False)
    if getattr(cfg, "scan_layers", False):
      params = conv.restack(params, cfg, to_scan=True)
    return params

  def vocab_config(self, vocab: VocabConfig) -> VocabConfig:
    """`vocab` as given, or (empty path) the checkpoint directory's own tokenizer files."""
    if vocab.path or self.kind == "fresh":
      return vocab
    txt = os.path.join(self.path, "vocab.txt")
    if os.path.isfile(txt):
      lower = True
      tok_cfg = os.path.join(self.path, "tokenizer_config.json")
      if os.path.isfile(tok_cfg):
        lower = bool(_read_json(tok_cfg).get("do_lower_case", True))
      return dataclasses.replace(vocab, type="wordpiece", path=txt, lowercase=lower)
    if os.path.isfile(os.path.join(self.path, "vocab.json")):
      return dataclasses.replace(vocab, type="bpe", path=os.path.join(self.path, "vocab.json"))
    for name in ("spiece.model", "sentencepiece.model", "spm.model"):
      if os.path.isfile(os.path.join(self.path, name)):
        return dataclasses.replace(vocab, type="sentencepiece",
                                   path=os.path.join(self.path, name))
    if vocab.type == "builtin":
      return vocab
    raise ValueError(f"config.vocab.path is empty and {self.path} has no tokenizer files "
                     "(vocab.txt, vocab.json + merges.txt, spiece.model); set config.vocab.type and config.vocab.path")


def model_input_ranges(model_config) -> Dict[str, int]:
  """input_ids < vocab_size and token_type_ids < type_vocab_size (where the family has them)."""
  out = {"input_ids": int(model_config.vocab_size)}
  if getattr(model_config, "type_vocab_size", None):
    out["token_type_ids"] = int(model_config.type_vocab_size)
  return out


def _is_stacked(params: Mapping) -> bool:
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  names = ["/".join(str(getattr(k, "key", k)) for k in p) for p, _ in flat]
  return any("/layers/" in n for n in names) and not any("/layers_0/" in n for n in names)


def layer_scales(params: Any, backbone: backbones.Backbone, num_layers: int,
                 decay: float) -> Any:
  """Per-parameter learning-rate factors: decay ** (num_layers + 1 - depth)."""
  def one(path, _):
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    return float(decay ** (num_layers + 1 - backbone.layer_depth(name, num_layers)))
  return jax.tree_util.tree_map_with_path(one, params)


def bucketed_dataset(examples: Sequence[Mapping[str, np.ndarray]], lengths: Sequence[int],
                     buckets: Sequence[int], sequence: Sequence[str], split: str,
                     batch_size: int, seed: int, shard_index: int, num_shards: int,
                     pad_left: bool = False):
  """tf.data stream of this host's rows of global bucketed batches (see batching; pad_left:
  padding before the tokens, as XLNet's)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  global_batch = batch_size * num_shards

  def gen() -> Iterator[Dict[str, np.ndarray]]:
    if split == "train":
      stream = batching.train_batches(examples, lengths, buckets, global_batch, seed, sequence,
                                      pad_left)
    else:
      stream = batching.eval_batches(examples, lengths, buckets, global_batch, sequence,
                                     pad_left)
    for b in stream:
      yield batching.shard_rows(b, shard_index, num_shards, batch_size)

  first = examples[0]
  signature = {k: tf.TensorSpec((None, None) if k in sequence else (None,) + np.shape(v),
                                tf.as_dtype(np.asarray(v).dtype)) for k, v in first.items()}
  return tf.data.Dataset.from_generator(gen, output_signature=signature)
