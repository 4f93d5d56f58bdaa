"""A small regex sentence splitter, with one Python and one tf.data version.

Both versions use the same patterns, so a document split in a reader (books,
to cut them into documents of N sentences) and text split inside the tf.data
graph (TFDS articles, local documents) end up cut at the same places.

Rules (deliberately simple, no trained model):
  - a sentence ends at `.`, `!` or `?` (optionally followed by closing quotes
    or brackets) when whitespace and then an upper-case letter, a digit or an
    opening quote/bracket follow;
  - a short list of English abbreviations (Mr. Mrs. Dr. St. ...) never ends a
    sentence;
  - Chinese/Japanese full-width `。！？` (plus closing quotes) always end one;
  - line breaks always end one.
Patterns are restricted to syntax that Python `re` and RE2 (TensorFlow) read
the same way.
"""
from __future__ import annotations

import re
from typing import List

import tensorflow as tf

# Abbreviations whose trailing period must not split. Matched case-sensitively
# at a word boundary, then protected by swapping the '.' for a placeholder.
_ABBREVIATIONS = ("Mr", "Mrs", "Ms", "Dr", "St", "Jr", "Sr", "Prof", "Rev",
                  "Gen", "Col", "Capt", "Lt", "Mt", "No", "vs", "etc", "viz",
                  "cf", "Vol", "Ch", "Fig", "i.e", "e.g")
_PLACEHOLDER = "\x07"   # a control char that never survives text cleaning
_ABBREV_RE = r"\b(" + "|".join(a.replace(".", r"\.") for a in _ABBREVIATIONS) + r")\.([ \t\r\n])"
_ABBREV_SUB = "\\1" + _PLACEHOLDER + "\\2"
# End of an English sentence: terminal punctuation, optional closers, spaces,
# then something that can start a sentence.
_EN_END_RE = r"""([.!?]+["'\)\]\x{201D}\x{2019}]*)[ \t\r\n]+(["'\(\[\x{201C}\x{2018}]*[A-Z0-9])"""
_EN_END_SUB = "\\1\n\\2"
_ZH_END_RE = r"([\x{3002}\x{FF01}\x{FF1F}]+[\x{201D}\x{300D}\x{300F}]*)"
_ZH_END_SUB = "\\1\n"


def _py(pattern: str) -> str:
  """RE2 `\\x{HHHH}` -> Python `\\uHHHH`; the rest is shared syntax."""
  return re.sub(r"\\x\{([0-9A-Fa-f]{4})\}", r"\\u\1", pattern)


_ABBREV_PY = re.compile(_py(_ABBREV_RE))
_EN_END_PY = re.compile(_py(_EN_END_RE))
_ZH_END_PY = re.compile(_py(_ZH_END_RE))


def split_sentences(text: str) -> List[str]:
  """Python version: text -> list of stripped, non-empty sentences."""
  text = _ABBREV_PY.sub(_ABBREV_SUB, text)
  text = _EN_END_PY.sub(_EN_END_SUB, text)
  text = _ZH_END_PY.sub(_ZH_END_SUB, text)
  text = text.replace(_PLACEHOLDER, ".")
  return [s.strip() for s in text.split("\n") if s.strip()]


def split_sentences_tf(text: tf.Tensor) -> tf.Tensor:
  """tf.data version: scalar string -> 1-D string tensor of sentences."""
  text = tf.strings.regex_replace(text, _ABBREV_RE, _ABBREV_SUB)
  text = tf.strings.regex_replace(text, _EN_END_RE, _EN_END_SUB)
  text = tf.strings.regex_replace(text, _ZH_END_RE, _ZH_END_SUB)
  text = tf.strings.regex_replace(text, _PLACEHOLDER, ".")
  parts = tf.strings.strip(tf.strings.split(text, "\n"))
  return tf.boolean_mask(parts, tf.strings.length(parts) > 0)
