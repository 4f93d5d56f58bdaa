"""Config sections shared by the objectives' data pipelines: `data.corpus`, `data.vocab`.

Frozen dataclasses (see plm_jax.configlib); an objective nests them in its own
`data` section.
"""
from __future__ import annotations

import dataclasses

from plm_jax.configlib import param

CORPUS_TYPES = ("builtin", "text", "tfds")
VOCAB_TYPES = ("builtin", "wordpiece", "sentencepiece", "bpe")


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
  tfds_name: str = ""                     # tfds: e.g. wikipedia/20230601.en
  tfds_text_key: str = "text"
  tfds_train_split: str = "train[:99%]"
  tfds_eval_split: str = "train[99%:]"
  tfds_data_dir: str = ""

  def check(self, prefix: str) -> None:
    if self.type == "tfds" and not self.tfds_name:
      raise ValueError(f"{prefix}.tfds_name is empty (needed when {prefix}.type='tfds')")
    if self.type == "text" and not self.paths.strip():
      raise ValueError(f"{prefix}.paths is empty: give one or more comma-separated file globs")


@dataclasses.dataclass(frozen=True)
class VocabConfig:
  """The vocabulary (plm_jax.data.vocab.get_vocabulary)."""
  type: str = param("builtin", choices=VOCAB_TYPES)
  path: str = ""                          # wordpiece: vocab.txt; sentencepiece: .model;
                                          # bpe: vocab.json (merges.txt beside it)
  lowercase: bool = True                  # wordpiece: uncased (True) or cased (False)
