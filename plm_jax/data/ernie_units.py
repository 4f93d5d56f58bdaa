"""Knowledge units of raw text for ERNIE masking: words, phrases and entities.

  words     jieba (PyPI `jieba`, its default dictionary and HMM for unknown words); it
            also splits English on spaces and punctuation, so English text goes the
            same way (its units are whole words, each one or more WordPieces).
  phrases   a lexicon, one phrase a line (a file), or learnt from the corpus by
            `learn_phrases`: adjacent word pairs seen at least `min_count` times,
            ranked by pointwise mutual information PMI(a, b) = log(c(ab) N / (c(a) c(b)))
            (N: the number of words), the best `max_phrases` with PMI >= min_pmi. A
            phrase matches a run of whole words whose text equals it (longest first).
  entities  a lexicon, one entity a line (a file, UTF-8), matched on the characters of
            the sentence longest-first, left to right, before word segmentation (an
            entity is never split by jieba); `learn_entities` proposes one from jieba's
            part-of-speech tags (nr person, ns place, nt organisation, nz other proper
            noun, as jieba's dictionary tags its words) for corpora that come without one.

`Segmenter.segment(sentence)` -> words and two label rows in ERNIE's convention (0:
starts a unit, 1: continues it, -1: no unit, i.e. whitespace):
  phrase_seg  a phrase is one unit, every other word its own unit;
  entity_seg  an entity is one unit, phrases and words as in phrase_seg elsewhere.
`segment_sentences` is the tf.data step: {'sentences'} -> {'tokens', 'phrase_seg',
'entity_seg'} ragged [S, (T)]: each word tokenized by the vocabulary, its first
token takes the word's label, the rest 1 (or -1).
"""
from __future__ import annotations

import collections
import functools
import logging
import math
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

PHRASE_MAX_WORDS = 4
ENTITY_TAGS = ("nr", "ns", "nt", "nz")


@functools.lru_cache(maxsize=1)
def _jieba():
  import jieba  # pylint: disable=import-outside-toplevel
  jieba.setLogLevel(logging.WARNING)
  tok = jieba.Tokenizer()
  tok.initialize()
  return tok


def cut(text: str) -> List[str]:
  """jieba words of `text` (spaces kept as words, so ''.join(words) == text)."""
  return _jieba().lcut(text, HMM=True)


def _is_word(w: str) -> bool:
  """A word that can be part of a phrase: holds a letter, digit or CJK character."""
  return any(c.isalnum() for c in w)


def read_lexicon(path: str, config_key: str) -> Tuple[str, ...]:
  """One entry a line (UTF-8, stripped, empty lines skipped); not UTF-8 -> one-line error
  naming the file and line."""
  if not tf.io.gfile.exists(path):
    raise ValueError(f"{config_key}: lexicon file {path!r} does not exist")
  with tf.io.gfile.GFile(path, "rb") as f:
    data = f.read()
  out = []
  for number, raw in enumerate(data.split(b"\n"), start=1):
    try:
      line = raw.decode("utf-8").strip()
    except UnicodeDecodeError as e:
      raise ValueError(f"{config_key}: {path} line {number} is not UTF-8 (byte "
                       f"{raw[e.start]:#04x} at column {e.start + 1}); a lexicon must be "
                       "UTF-8 text, one entry a line") from None
    if line:
      out.append(line)
  return tuple(out)


def write_lexicon(path: str, entries: Iterable[str]) -> None:
  with tf.io.gfile.GFile(path, "w") as f:
    f.write("".join(e + "\n" for e in entries))


def learn_phrases(documents: Iterable[str], min_count: int = 5, max_phrases: int = 20_000,
                  min_pmi: float = 3.0) -> List[str]:
  """Phrases of two adjacent words (a single space between them allowed) by PMI (module
  doc), best first; the phrase text is the words' text as it appears."""
  unigrams: collections.Counter = collections.Counter()
  pairs: collections.Counter = collections.Counter()
  total = 0
  for doc in documents:
    for line in doc.split("\n"):
      words = cut(line)
      prev, gap = None, ""
      for w in words:
        if w.isspace():
          gap = w if (prev is not None and w == " ") else None
          if gap is None:
            prev = None
          continue
        if not _is_word(w):
          prev, gap = None, ""
          continue
        unigrams[w] += 1
        total += 1
        if prev is not None and gap is not None:
          pairs[(prev, gap, w)] += 1
        prev, gap = w, ""
  scored = []
  for (a, gap, b), n in pairs.items():
    if n >= min_count:
      pmi = math.log(n * total / (unigrams[a] * unigrams[b]))
      if pmi >= min_pmi:
        scored.append((-pmi, -n, a + gap + b))
  return [p for _, _, p in sorted(scored)[:max_phrases]]


def learn_entities(documents: Iterable[str], min_count: int = 3,
                   max_entities: int = 20_000) -> List[str]:
  """Proper nouns: words whose part-of-speech tag in jieba's dictionary is one of
  ENTITY_TAGS, at least two characters, seen at least min_count times; most frequent
  first. (A dictionary look-up per word: jieba's POS tagger itself is ~10x slower.)"""
  from jieba import posseg  # pylint: disable=import-outside-toplevel
  tags = posseg.POSTokenizer(_jieba()).word_tag_tab
  counts: collections.Counter = collections.Counter()
  for doc in documents:
    for line in doc.split("\n"):
      for w in cut(line):
        if len(w) >= 2 and tags.get(w) in ENTITY_TAGS:
          counts[w] += 1
  ranked = sorted((-n, w) for w, n in counts.items() if n >= min_count)
  return [w for _, w in ranked[:max_entities]]


class Segmenter:
  """Words, phrase units and entity units of a sentence (module doc)."""

  def __init__(self, phrases: Sequence[str] = (), entities: Sequence[str] = ()):
    self.phrases = frozenset(phrases)
    self.entities = frozenset(entities)
    self._entity_lengths = sorted({len(e) for e in self.entities}, reverse=True)
    # Filters that skip most look-ups (the matches are the same): the characters a unit can
    # start with, and the character lengths a phrase can have.
    self._entity_starts = frozenset(e[0] for e in self.entities if e)
    self._phrase_starts = frozenset(p[0] for p in self.phrases if p)
    self._phrase_lengths = frozenset(len(p) for p in self.phrases)

  def entity_spans(self, text: str) -> List[Tuple[int, int]]:
    """[start, end) of each entity, longest match first at each position, left to right."""
    spans, i = [], 0
    while i < len(text):
      if text[i] not in self._entity_starts:
        i += 1
        continue
      for n in self._entity_lengths:
        if i + n <= len(text) and text[i:i + n] in self.entities:
          spans.append((i, i + n))
          i += n
          break
      else:
        i += 1
    return spans

  def _phrase_labels(self, words: List[str]) -> List[int]:
    """Labels of a run of non-entity words: a phrase 0, 1, ...; other words 0; spaces -1."""
    labels = [(-1 if w.isspace() else 0) for w in words]
    if not self.phrases:
      return labels
    is_word = [_is_word(w) for w in words]
    ends = np.cumsum([0] + [len(w) for w in words]).tolist()   # character offsets
    i = 0
    while i < len(words):
      if not is_word[i] or words[i][0] not in self._phrase_starts:
        i += 1
        continue
      for j in range(min(len(words), i + 2 * PHRASE_MAX_WORDS - 1), i + 1, -1):
        if (is_word[j - 1] and ends[j] - ends[i] in self._phrase_lengths
            and "".join(words[i:j]) in self.phrases):
          labels[i + 1:j] = [1] * (j - i - 1)
          i = j
          break
      else:
        i += 1
    return labels

  def segment(self, text: str) -> Tuple[List[str], List[int], List[int]]:
    """text -> (words, phrase_seg, entity_seg), one label per word."""
    words: List[str] = []
    phrase: List[int] = []
    entity: List[int] = []
    pos = 0
    for start, end in self.entity_spans(text) + [(len(text), len(text))]:
      if start > pos:
        run = cut(text[pos:start])
        labels = self._phrase_labels(run)
        words += run
        phrase += labels
        entity += labels
      if end > start:
        inner = cut(text[start:end])
        words += inner
        phrase += [(-1 if w.isspace() else 0) for w in inner]
        entity += [0] + [1] * (len(inner) - 1)
      pos = end
    return words, phrase, entity

  def segment_np(self, sentences: np.ndarray):
    """numpy_function body: sentences [S] bytes -> words [W] bytes, word row splits [S+1],
    phrase [W], entity [W] int32."""
    words: List[bytes] = []
    splits = [0]
    phrase: List[int] = []
    entity: List[int] = []
    for s in sentences:
      w, p, e = self.segment(s.decode("utf-8", "replace"))
      words += [x.encode("utf-8") for x in w]
      phrase += p
      entity += e
      splits.append(len(words))
    return (np.asarray(words, dtype=object).reshape([-1]), np.asarray(splits, np.int64),
            np.asarray(phrase, np.int32), np.asarray(entity, np.int32))


def word_labels_to_tokens(tokens: tf.RaggedTensor, labels: tf.Tensor) -> tf.RaggedTensor:
  """tokens [W, (T)], word labels [W] -> token labels [W, (T)]: the first token the word's
  label, the others 1 (or -1 for a word in no unit)."""
  per_token = tf.gather(labels, tokens.value_rowids())
  first = tf.ragged.range(tokens.row_lengths()).flat_values == 0
  rest = tf.where(per_token < 0, -1, 1)
  return tokens.with_flat_values(tf.where(first, per_token, rest))


def segment_sentences(dataset: tf.data.Dataset, *, segmenter: Segmenter,
                      vocabulary) -> tf.data.Dataset:
  """{'sentences' [S]} -> {'tokens', 'phrase_seg', 'entity_seg'}: ragged int32 [S, (T)];
  sentences without tokens dropped, documents without sentences dropped."""
  def fn(ex):
    words, splits, phrase, entity = tf.numpy_function(
        segmenter.segment_np, [ex["sentences"]], [tf.string, tf.int64, tf.int32, tf.int32],
        stateful=False)
    words = tf.ensure_shape(words, [None])
    splits = tf.ensure_shape(splits, [None])
    tokens = tf.cast(vocabulary.encode_tf(words), tf.int32)            # [W, (T)]
    per_word = {"tokens": tokens,
                "phrase_seg": word_labels_to_tokens(tokens, tf.ensure_shape(phrase, [None])),
                "entity_seg": word_labels_to_tokens(tokens, tf.ensure_shape(entity, [None]))}
    out: Dict[str, tf.RaggedTensor] = {}
    for k, v in per_word.items():                                      # [S, (W), (T)] -> [S, (T)]
      out[k] = tf.RaggedTensor.from_row_splits(v, splits).merge_dims(1, 2)
    keep = out["tokens"].row_lengths() > 0
    return {k: tf.ragged.boolean_mask(v, keep) for k, v in out.items()}
  ds = dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.filter(lambda ex: ex["tokens"].nrows() > 0)


def make_segmenter(phrases_path: str = "", entities_path: str = "",
                   phrases: Optional[Sequence[str]] = None,
                   key_prefix: str = "config.ernie") -> Segmenter:
  """A Segmenter from lexicon files (and/or a learnt phrase list)."""
  p = list(phrases or ())
  if phrases_path:
    p += read_lexicon(phrases_path, f"{key_prefix}.phrase_lexicon")
  e = read_lexicon(entities_path, f"{key_prefix}.entity_lexicon") if entities_path else ()
  return Segmenter(p, e)
