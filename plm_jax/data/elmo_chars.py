"""ELMo's inputs: character ids of words (bilm-tf's UnicodeCharsVocabulary + Batcher) and
its word vocabulary (one token a line, with <S>, </S> and <UNK>).

A word's character ids are its UTF-8 bytes (0-255), truncated to C - 2, between
a begin-of-word (258) and an end-of-word (259) id, padded with 260 to C ids; the
sentence markers <S> / </S> are [258, 256, 259, pad...] / [258, 257, 259, pad...].
Every id is then shifted by +1 so that 0 marks a padding token (the batches the
released models read). Both a NumPy version (for users and tests) and a
TensorFlow one (inside tf.data) are here; they agree exactly.
"""
from __future__ import annotations

import collections
import os
import re
from typing import Iterable, List, Sequence, Tuple

import numpy as np
import tensorflow as tf

BOS_CHAR, EOS_CHAR, BOW_CHAR, EOW_CHAR, PAD_CHAR = 256, 257, 258, 259, 260
BOS, EOS, UNK = "<S>", "</S>", "<UNK>"
# Punctuation is split off words (ASCII [[:punct:]], RE2) before the lookup.
_PUNCT = r"([!-/:-@\[-`{-~])"
_PUNCT_RE = re.compile(_PUNCT)
_SPACE_RE = re.compile(r"[ \t\n\v\f\r]+")   # ASCII whitespace only, as tf.strings.split


def word_char_ids(word: str, max_chars: int = 50) -> np.ndarray:
  """int32 [max_chars]: the word's character ids, +1 shifted (0 is never produced)."""
  code = np.full((max_chars,), PAD_CHAR, np.int32)
  code[0] = BOW_CHAR
  if word in (BOS, EOS):
    code[1] = BOS_CHAR if word == BOS else EOS_CHAR
    code[2] = EOW_CHAR
    return code + 1
  data = word.encode("utf-8", "ignore")[:max_chars - 2]
  if not data:
    raise ValueError(f"word_char_ids: empty word {word!r}")
  code[1:1 + len(data)] = np.frombuffer(data, np.uint8)
  code[1 + len(data)] = EOW_CHAR
  return code + 1


def batch_to_char_ids(sentences: Sequence[Sequence[str]], max_chars: int = 50,
                      add_boundaries: bool = True) -> np.ndarray:
  """int32 [N, T, max_chars] for tokenized sentences (bilm-tf's Batcher: <S> and </S>
  around each sentence when add_boundaries; padding tokens are all zeros)."""
  rows = [([BOS] + list(s) + [EOS]) if add_boundaries else list(s) for s in sentences]
  out = np.zeros((len(rows), max((len(r) for r in rows), default=0), max_chars), np.int32)
  for i, row in enumerate(rows):
    for j, word in enumerate(row):
      out[i, j] = word_char_ids(word, max_chars)
  return out


def tf_word_char_ids(words: tf.Tensor, max_chars: int = 50) -> tf.Tensor:
  """words: string tensor [N] -> int32 [N, max_chars], equal to word_char_ids per word."""
  data = tf.strings.substr(words, 0, max_chars - 2)                 # bytes
  n = tf.strings.length(data)                                       # [N]
  raw = tf.cast(tf.io.decode_raw(data, tf.uint8, fixed_length=max_chars - 2), tf.int32)
  pos = tf.range(max_chars)[None, :]                                # [1, C]
  shifted = tf.pad(raw, [[0, 0], [1, 1]])                           # bytes at 1..C-2
  n = n[:, None]
  code = tf.where(pos == 0, BOW_CHAR,
                  tf.where(pos <= n, shifted, tf.where(pos == n + 1, EOW_CHAR, PAD_CHAR)))
  special = tf.where(pos == 0, BOW_CHAR, tf.where(pos == 2, EOW_CHAR, PAD_CHAR))
  bos = tf.where(pos == 1, BOS_CHAR, special)
  eos = tf.where(pos == 1, EOS_CHAR, special)
  code = tf.where((words == BOS)[:, None], bos, tf.where((words == EOS)[:, None], eos, code))
  return code + 1


def split_words(text: str) -> List[str]:
  """A text -> its words as tf_tokenize splits a line (without <S> / </S>): ASCII
  whitespace separates words and every ASCII punctuation character is a word of its own
  ("don't." -> don ' t .). Newlines are whitespace here (one text, one sentence)."""
  return [w for w in _SPACE_RE.split(_PUNCT_RE.sub(r" \1 ", text)) if w]


def tf_tokenize(text: tf.Tensor) -> tf.Tensor:
  """A document (scalar string) -> its tokens [N]: each non-empty line becomes
  <S> words </S>, words split on whitespace with ASCII punctuation split off."""
  lines = tf.strings.split(text, "\n")
  spaced = tf.strings.regex_replace(lines, _PUNCT, r" \1 ")
  words = tf.strings.split(spaced)                                   # ragged [lines, words]
  words = tf.ragged.boolean_mask(words, tf.strings.length(words) > 0)
  words = tf.ragged.boolean_mask(words, words.row_lengths() > 0)  # drop empty lines
  n = words.nrows()
  bos = tf.fill([n, 1], BOS)
  eos = tf.fill([n, 1], EOS)
  return tf.concat([bos, words, eos], axis=1).flat_values


class WordVocab:
  """bilm-tf's word vocabulary: token -> id, the file's line order; unknown -> <UNK>."""

  def __init__(self, words: Sequence[str], source: str = "vocabulary"):
    self.words: Tuple[str, ...] = tuple(words)
    self.ids = {w: i for i, w in enumerate(self.words)}
    if len(self.ids) != len(self.words):
      dup = next(w for w, c in collections.Counter(self.words).items() if c > 1)
      raise ValueError(f"{source}: token {dup!r} appears twice")
    missing = [t for t in (BOS, EOS, UNK) if t not in self.ids]
    if missing:
      raise ValueError(f"{source}: missing the special tokens {missing} (a bilm-tf vocabulary "
                       "has <S>, </S> and <UNK>, one token a line)")
    self.unk = self.ids[UNK]

  @classmethod
  def from_file(cls, path: str) -> "WordVocab":
    with open(path, encoding="utf-8") as f:
      words = [line.strip() for line in f]
    return cls([w for w in words if w and w != "!!!MAXTERMID"], source=path)

  def save(self, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
      f.write("".join(w + "\n" for w in self.words))

  @property
  def size(self) -> int:
    return len(self.words)

  @property
  def vocab_size(self) -> int:
    return len(self.words)

  def save_files(self, export_dir: str) -> Tuple[str, ...]:
    """The export's tokenizer file: vocab.txt in bilm-tf's format (save_tokenizer calls it)."""
    self.save(os.path.join(export_dir, "vocab.txt"))
    return ("vocab.txt",)

  def encode(self, words: Iterable[str]) -> List[int]:
    return [self.ids.get(w, self.unk) for w in words]

  def tf_table(self) -> tf.lookup.StaticHashTable:
    init = tf.lookup.KeyValueTensorInitializer(tf.constant(self.words),
                                               tf.range(len(self.words), dtype=tf.int32))
    return tf.lookup.StaticHashTable(init, default_value=self.unk)


def build_vocab(documents: Iterable[str], size: int, min_count: int = 1) -> WordVocab:
  """The `size` most frequent tokens of the documents (ties: first seen first; tf_tokenize's
  tokens), after <S>, </S>, <UNK>."""
  counts: collections.Counter = collections.Counter()
  ds = tf.data.Dataset.from_generator(lambda: iter(documents), output_signature=tf.TensorSpec(
      [], tf.string)).map(tf_tokenize)
  for tokens in ds.as_numpy_iterator():
    counts.update(t.decode("utf-8", "replace") for t in tokens)
  for special in (BOS, EOS, UNK):
    counts.pop(special, None)
  common = [w for w, c in counts.most_common(max(size - 3, 0)) if c >= min_count]
  return WordVocab([BOS, EOS, UNK] + common, source="built vocabulary")
