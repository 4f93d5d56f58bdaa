"""GPT-1's BPE (Radford et al. 2018) as a seqio Vocabulary: vocab.json + merges.txt whose
symbols mark word ends with '</w>' (lower-cased text, no byte map).

Encoding, as transformers 5.24's OpenAIGPTTokenizer (a `tokenizers` pipeline: without ftfy
and spaCy, GPT-1's text is split as BERT's BasicTokenizer splits it):
  0. the special tokens (below) are cut out of the raw text first and keep their ids
     (Hugging Face's added tokens: 'a <unk> b' -> a, <unk>, b);
  1. BertNormalizer(lowercase=True): drop control / format characters, whitespace -> ' ',
     spaces around CJK ideographs, lower-case, NFD and drop combining marks;
  2. BertPreTokenizer: split on whitespace and split off every punctuation character;
  3. each word: its characters, the last one with '</w>' appended ('cat' -> c a t</w>);
     merge adjacent symbols by the rank of the pair in merges.txt, lowest first; look the
     symbols up in vocab.json. A symbol missing there is <unk> (each on its own) when the
     vocabulary holds <unk>, else it is dropped (Hugging Face stops with an error).
Steps 1-2 are plm_jax.data.vocab.basic_tokenize_tf (the WordPiece vocabulary's, equal to
Hugging Face's on every whitespace / control character); step 3 runs in Python
(tf.numpy_function inside tf.data), each word computed once per vocabulary object.

Special tokens (roles): unk '<unk>', eos '<|endoftext|>' when vocab.json holds them. The
released GPT-1 vocabulary has neither; plm_jax.data.bpe_train --kind=gpt1 adds both, and the
end-of-text token is what causal-LM pretraining and GPT fine-tuning need.

  load_bpe(vocab_path, merges_path=None)   this class or a byte-level BPE
                                           (plm_jax.data.bpe), told apart by the tokens
"""
from __future__ import annotations

import json
import re
from typing import List, Optional, Sequence, Tuple

import numpy as np
import seqio
import tensorflow as tf

from plm_jax.data import bpe
from plm_jax.data import vocab as vocab_lib

WORD_END = "</w>"
SPECIALS = {"unk": "<unk>", "eos": "<|endoftext|>"}


def is_gpt1_vocab(tokens) -> bool:
  """More tokens end a word with '</w>' than start one with the byte-level space 'Ġ'."""
  ends = sum(1 for t in tokens if t.endswith(WORD_END))
  starts = sum(1 for t in tokens if t.startswith(bpe.WORD_START))
  return ends > starts


def load_bpe(vocab_path: str, merges_path: Optional[str] = None) -> seqio.Vocabulary:
  """GPT-1's BPE (OpenAIGPTBPEVocabulary) or a byte-level one (GPT-2 / RoBERTa)."""
  try:
    with tf.io.gfile.GFile(vocab_path, "r") as f:
      tokens = json.load(f)
  except (json.JSONDecodeError, tf.errors.OpError, OSError):
    tokens = {}   # the byte-level reader names the problem
  if isinstance(tokens, dict) and is_gpt1_vocab(tokens):
    return OpenAIGPTBPEVocabulary(vocab_path, merges_path)
  return bpe.ByteLevelBPEVocabulary(vocab_path, merges_path)


class OpenAIGPTBPEVocabulary(bpe.BpeFilesVocabulary):
  """A GPT-1 vocab.json + merges.txt pair (merges.txt beside vocab.json unless given)."""
  hf_tokenizer_class = "OpenAIGPTTokenizer"

  def __init__(self, vocab_path: str, merges_path: Optional[str] = None, extra_ids: int = 0):
    super().__init__(vocab_path, merges_path, extra_ids)
    if not is_gpt1_vocab(self._encoder):
      raise ValueError(f"{vocab_path}: not a GPT-1 BPE vocabulary (its tokens do not end "
                       f"words with {WORD_END!r}); a byte-level one loads with "
                       "plm_jax.data.bpe.ByteLevelBPEVocabulary")
    self.special_tokens = {r: t for r, t in SPECIALS.items() if t in self._encoder}
    self._specials = {t: self._encoder[t] for t in self.special_tokens.values()}
    self._special_regex = "|".join(re.escape(t) for t in sorted(self._specials, key=len,
                                                                  reverse=True))

  # ---- ids ------------------------------------------------------------------------
  @property
  def eos_id(self) -> Optional[int]:
    return self._encoder.get(SPECIALS["eos"])

  def is_continuation(self, token: str) -> bool:
    raise ValueError(f"{self._vocab_path}: GPT-1's BPE marks word ends ({WORD_END!r}), not "
                     "word starts: whole-word masking cannot read it from one token")

  # ---- encoding ---------------------------------------------------------------------
  def word_ids(self, word: str) -> Tuple[int, ...]:
    """One lower-cased, pre-tokenized word (or a special token) -> ids."""
    ids = self._cache.get(word)
    if ids is None and word in self._specials:
      ids = (self._specials[word],)
    if ids is None:
      symbols = list(word)
      symbols[-1] += WORD_END
      unk = self.unk_id
      found = (self._encoder.get(s, unk) for s in bpe.apply_merges(symbols, self._ranks))
      ids = tuple(i for i in found if i is not None)
      if len(self._cache) < 1_000_000:
        self._cache[word] = ids
    return ids

  def words_tf(self, texts: tf.Tensor) -> tf.RaggedTensor:
    """1-D strings [N] -> ragged words [N, (words)] (steps 0-2 of the module doc); a special
    token is one word, kept as it is."""
    if not self._specials:
      return vocab_lib.basic_tokenize_tf(texts, lowercase=True)
    import tensorflow_text as tf_text  # pylint: disable=import-outside-toplevel
    texts = tf.strings.regex_replace(texts, r"\x{0}", "")   # step 1 drops NUL; regex_split
    pieces = tf_text.regex_split(texts, self._special_regex, self._special_regex)  # stops at one
    flat = pieces.flat_values
    special = tf.reduce_any(tf.equal(flat[:, None], tf.constant(list(self._specials))), -1)
    normal = vocab_lib.basic_tokenize_tf(tf.where(special, "", flat), lowercase=True)
    kept = tf.RaggedTensor.from_row_lengths(tf.boolean_mask(flat, special),
                                            tf.cast(special, tf.int64))    # [P, (0 or 1)]
    words = tf.concat([normal, kept], axis=1)          # each piece: its words or its special
    return pieces.with_flat_values(words).merge_dims(1, 2)

  def words(self, texts: Sequence[str]) -> List[List[str]]:
    """Texts -> their words (steps 0-2 of the module doc)."""
    ragged = self.words_tf(tf.constant(list(texts), tf.string))
    return [[w.decode("utf-8") for w in row] for row in ragged.to_list()]

  def encode_ids(self, text: str) -> List[int]:
    """Python encoder: text -> ids (no special tokens added)."""
    return [i for w in self.words([text])[0] for i in self.word_ids(w)]

  def _decode(self, ids) -> str:
    """Hugging Face's BPEDecoder: '</w>' becomes a space (nothing after the last token)."""
    tokens = [self._decoder[int(i)] for i in ids]
    return "".join(t.replace(WORD_END, "" if n == len(tokens) - 1 else " ")
                   for n, t in enumerate(tokens))

  def _words_np(self, words: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    rows = [self.word_ids(w.decode("utf-8")) for w in words.reshape(-1)]
    lengths = np.asarray([len(r) for r in rows], np.int64)
    flat = np.fromiter((i for r in rows for i in r), np.int32, int(lengths.sum()))
    return flat, lengths

  def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
    """Scalar string -> int32 [tokens]; 1-D strings -> ragged int32 [N, (tokens)]."""
    s = tf.convert_to_tensor(s, tf.string)
    scalar = s.shape.rank == 0
    words = self.words_tf(tf.reshape(s, [-1]))                          # [N, (words)]
    flat, lengths = tf.numpy_function(self._words_np, [words.flat_values],
                                      [tf.int32, tf.int64], stateful=False)
    per_word = tf.RaggedTensor.from_row_lengths(tf.ensure_shape(flat, [None]),
                                                tf.ensure_shape(lengths, [None]))
    ids = words.with_flat_values(per_word).merge_dims(1, 2)            # [N, (tokens)]
    return ids[0] if scalar else ids
