"""Config sections shared by the objectives' data pipelines: `data.corpus`, `data.vocab`.

Frozen dataclasses (see plm_jax.configlib); an objective nests them in its own
`data` section.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional

from plm_jax.configlib import fail, param

CORPUS_TYPES = ("builtin", "text", "tfds", "ernie")   # ernie: plm_jax.data.ernie_format
VOCAB_TYPES = ("builtin", "wordpiece", "sentencepiece", "bpe")
AUTO = "auto"   # data.vocab.type: from data.vocab.path's file (builtin when the path is empty)
_FILE_KINDS = {"wordpiece": "a WordPiece vocab.txt", "sentencepiece": "a SentencePiece model",
               "bpe": "a byte-level BPE vocabulary (vocab.json + merges.txt)"}


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
  """Where the pretraining text comes from (plm_jax.data.sources)."""
  type: str = param("builtin", choices=CORPUS_TYPES)
  paths: str = ""                         # text: comma-separated globs (reader=glob mixes formats)
  reader: str = "plain"                   # text: plain | gutenberg | wikiextractor | wikitext
  doc_separator: str = param("blank_line", choices=("blank_line", "line"))
  eval_paths: str = ""                    # text: held-out globs; empty: every eval_every_nth doc
  eval_every_nth: int = param(100, ge=2)  # hold out 1 of every N documents
  max_sentences_per_doc: int = param(256, gt=0)
  on_bad_file: str = param("error", choices=("error", "skip"))  # text: a binary/undecodable file
  tfds_name: str = ""                     # tfds: e.g. wikipedia/20230601.en
  tfds_text_key: str = "text"
  tfds_train_split: str = "train[:99%]"
  tfds_eval_split: str = "train[99%:]"
  tfds_data_dir: str = ""

  def check(self, prefix: str) -> None:
    if self.type == "tfds" and not self.tfds_name:
      raise ValueError(f"{prefix}.tfds_name is empty (needed when {prefix}.type='tfds')")
    if self.type in ("text", "ernie") and not self.paths.strip():
      raise ValueError(f"{prefix}.paths is empty: give one or more comma-separated file globs")


def vocab_type_of_path(path: str) -> Optional[str]:
  """The vocabulary type a path names, or None: '*.model' sentencepiece, '*.txt'
  wordpiece, 'vocab.json' or 'merges.txt' (or a directory holding both) bpe."""
  name = os.path.basename(path.rstrip("/"))
  if name.endswith(".model"):
    return "sentencepiece"
  if name in ("vocab.json", "merges.txt") or (
      os.path.isdir(path) and all(os.path.isfile(os.path.join(path, f))
                                  for f in ("vocab.json", "merges.txt"))):
    return "bpe"
  if name.endswith(".txt"):
    return "wordpiece"
  return None


@dataclasses.dataclass(frozen=True)
class VocabConfig:
  """The vocabulary (plm_jax.data.vocab.get_vocabulary)."""
  type: str = param(AUTO, choices=(AUTO,) + VOCAB_TYPES)  # auto: from path (see resolved_type)
  path: str = ""                          # wordpiece: vocab.txt; sentencepiece: .model;
                                          # bpe: vocab.json (merges.txt beside it)
  lowercase: bool = True                  # wordpiece: uncased (True) or cased (False)

  def resolved_type(self) -> str:
    """`type`, or for 'auto' the type of `path`'s file ('builtin' when path is empty)."""
    if self.type != AUTO:
      return self.type
    return vocab_type_of_path(self.path) if self.path else "builtin"

  def check(self, prefix: str) -> None:
    from_path = vocab_type_of_path(self.path) if self.path else None
    if self.type == AUTO and self.path and from_path is None:
      fail(f"{prefix}.path", self.path, f"cannot tell the vocabulary type from the file name "
           f"(*.model: sentencepiece, *.txt: wordpiece, vocab.json + merges.txt: bpe); set "
           f"{prefix}.type to one of {list(VOCAB_TYPES)}")
    if self.type == AUTO and from_path is not None and from_path not in VOCAB_TYPES:
      fail(f"{prefix}.path", self.path, f"{_FILE_KINDS[from_path]}: this vocabulary type "
           f"({from_path!r}) is not supported yet; {prefix}.type can be {list(VOCAB_TYPES)}")
    if self.type == "builtin" and self.path:
      fail(f"{prefix}.path", self.path, f"{prefix}.type='builtin' reads no file; leave the "
           f"path empty, or set {prefix}.type={AUTO!r} to take the type from the file")
    if self.type not in (AUTO, "builtin"):
      if not self.path:
        fail(f"{prefix}.path", self.path, f"empty, but {prefix}.type={self.type!r} needs a file")
      if from_path is not None and from_path != self.type:
        fail(f"{prefix}.path", self.path, f"{_FILE_KINDS[from_path]}, which contradicts "
             f"{prefix}.type={self.type!r}; set {prefix}.type={from_path!r} (or {AUTO!r})")
