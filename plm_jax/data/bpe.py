"""Byte-level BPE (GPT-2, RoBERTa) as a seqio Vocabulary: vocab.json + merges.txt.

Encoding, as OpenAI's GPT-2 encoder and Hugging Face's GPT2Tokenizer /
RobertaTokenizer (add_prefix_space=False, no special tokens added):
  1. split the text with GPT-2's pattern (contractions, ' ?letters', ' ?digits',
     ' ?other symbols', runs of whitespace not followed by a non-space, whitespace);
  2. map every UTF-8 byte of a piece to a printable character (bytes_to_unicode);
  3. merge adjacent symbols by the rank of the pair in merges.txt, lowest first,
     until no ranked pair is left; look the symbols up in vocab.json.
Nothing is normalised or dropped: control characters are bytes like any other.
Pieces are cached (a word's ids are computed once per vocabulary object).

Inside tf.data the encoder runs through tf.numpy_function (it is Python); the
rate on one core is in bench/bench_bpe.py.

Special tokens: RoBERTa's <s> </s> <pad> <unk> <mask> (roles cls, sep, pad,
unk, mask) when vocab.json holds them; GPT-2's <|endoftext|> otherwise (role
eos). A token starting with 'Ġ' (a space byte) starts a word.
"""
from __future__ import annotations

import functools
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import regex
import seqio
import tensorflow as tf

VOCAB_PATH_KEY = "config.data.vocab.path"
PATTERN = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
ROBERTA_SPECIALS = {"cls": "<s>", "pad": "<pad>", "sep": "</s>", "unk": "<unk>", "mask": "<mask>",
                    "eos": "</s>"}   # eos: the end-of-text token of causal LMs (GPT)
GPT2_SPECIALS = {"eos": "<|endoftext|>"}
WORD_START = "\u0120"   # 'Ġ': the byte ' ' under bytes_to_unicode


@functools.lru_cache(maxsize=None)
def bytes_to_unicode() -> Dict[int, str]:
  """GPT-2's reversible byte -> printable character map (printable Latin-1 bytes stay)."""
  keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
  out, extra = {}, 0
  for b in range(256):
    if b in keep:
      out[b] = chr(b)
    else:
      out[b] = chr(256 + extra)
      extra += 1
  return out


def merges_path_for(vocab_path: str) -> str:
  return os.path.join(os.path.dirname(vocab_path), "merges.txt")


def read_bpe_files(vocab_path: str, merges_path: Optional[str] = None
                   ) -> Tuple[Dict[str, int], Dict[Tuple[str, str], int]]:
  """(token -> id, (left, right) -> rank); a merge whose parts or result are not in
  vocab.json is a one-line ValueError naming merges.txt's line."""
  merges_path = merges_path or merges_path_for(vocab_path)
  for path, what in ((vocab_path, "vocab.json"), (merges_path, "merges.txt")):
    if not path or not tf.io.gfile.exists(path):
      raise ValueError(f"{VOCAB_PATH_KEY}: byte-level BPE {what} {path!r} does not exist")
  with tf.io.gfile.GFile(vocab_path, "r") as f:
    try:
      vocab = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f"{vocab_path}: not a JSON token -> id map ({e})") from None
  if not isinstance(vocab, dict):
    raise ValueError(f"{vocab_path}: not a JSON token -> id map")
  ranks = {}
  with tf.io.gfile.GFile(merges_path, "r") as f:
    for lineno, line in enumerate(f, 1):
      line = line.rstrip("\r\n")
      if not line or (lineno == 1 and line.startswith("#version")):
        continue
      parts = line.split(" ")
      if len(parts) != 2:
        raise ValueError(f"{merges_path}:{lineno}: expected two symbols separated by one "
                         f"space, got {line!r}")
      missing = [t for t in (parts[0], parts[1], parts[0] + parts[1]) if t not in vocab]
      if missing:
        raise ValueError(f"{merges_path}:{lineno}: merge {line!r} does not match {vocab_path} "
                         f"(no token {missing[0]!r} there)")
      ranks.setdefault((parts[0], parts[1]), len(ranks))
  return vocab, ranks


def apply_merges(symbols: List[str], ranks: Dict[Tuple[str, str], int]) -> List[str]:
  """BPE: merge the adjacent pair of lowest rank (every occurrence, left to right) until
  no ranked pair is left."""
  while len(symbols) > 1:
    best, best_rank = -1, None
    for i in range(len(symbols) - 1):
      r = ranks.get((symbols[i], symbols[i + 1]))
      if r is not None and (best_rank is None or r < best_rank):
        best, best_rank = i, r
    if best < 0:
      break
    pair = (symbols[best], symbols[best + 1])
    merged, i = [], 0
    while i < len(symbols):   # merge every occurrence of the pair, left to right
      if i < len(symbols) - 1 and (symbols[i], symbols[i + 1]) == pair:
        merged.append(pair[0] + pair[1])
        i += 2
      else:
        merged.append(symbols[i])
        i += 1
    symbols = merged
  return symbols


class BpeFilesVocabulary(seqio.Vocabulary):
  """What a vocab.json + merges.txt pair holds, whatever its symbols (merges.txt beside
  vocab.json unless given): the token <-> id tables, the merge ranks, a per-piece cache of
  ids. Subclasses encode (ByteLevelBPEVocabulary; gpt1_bpe.OpenAIGPTBPEVocabulary)."""

  def __init__(self, vocab_path: str, merges_path: Optional[str] = None, extra_ids: int = 0):
    self._vocab_path = vocab_path
    self._merges_path = merges_path or merges_path_for(vocab_path)
    self._encoder, self._ranks = read_bpe_files(vocab_path, self._merges_path)
    self._decoder: List[str] = [""] * (max(self._encoder.values()) + 1)
    for token, i in self._encoder.items():
      self._decoder[i] = token
    self._cache: Dict[str, Tuple[int, ...]] = {}
    super().__init__(extra_ids=extra_ids)

  @property
  def vocab_path(self) -> str:
    return self._vocab_path

  @property
  def merges_path(self) -> str:
    return self._merges_path

  @property
  def pad_id(self) -> int:
    return self._encoder.get("<pad>", 0)

  @property
  def unk_id(self) -> Optional[int]:
    return self._encoder.get("<unk>")

  @property
  def _base_vocab_size(self) -> int:
    return len(self._decoder)

  def token_to_id(self, token: str) -> Optional[int]:
    return self._encoder.get(token)

  def id_to_token(self, i: int) -> str:
    return self._decoder[int(i)]

  def _encode(self, s: str) -> Sequence[int]:
    return self.encode_ids(s)

  def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
    raise NotImplementedError(f"{type(self).__name__} decodes in Python only (decode)")

  def __eq__(self, other):
    return (type(other) is type(self) and other._encoder == self._encoder
            and other._ranks == self._ranks)

  def __hash__(self):
    return hash((len(self._decoder), self._vocab_path))

  def __str__(self) -> str:
    return f"{type(self).__name__}(file={self._vocab_path}, size={self.vocab_size})"


class ByteLevelBPEVocabulary(BpeFilesVocabulary):
  """A byte-level (GPT-2 / RoBERTa) vocab.json + merges.txt pair."""

  def __init__(self, vocab_path: str, merges_path: Optional[str] = None, extra_ids: int = 0):
    super().__init__(vocab_path, merges_path, extra_ids)
    self._byte_map = bytes_to_unicode()
    self._byte_unmap = {c: b for b, c in self._byte_map.items()}
    roles = ROBERTA_SPECIALS if "<s>" in self._encoder else GPT2_SPECIALS
    self.special_tokens = {r: t for r, t in roles.items() if t in self._encoder}

  # ---- ids ------------------------------------------------------------------------
  @property
  def eos_id(self) -> Optional[int]:
    return self._encoder.get("</s>", self._encoder.get("<|endoftext|>"))

  def is_continuation(self, token: str) -> bool:
    return not token.startswith(WORD_START) and token not in self.special_tokens.values()

  # ---- encoding ---------------------------------------------------------------------
  def _bpe(self, piece: str) -> Tuple[int, ...]:
    """One pre-tokenized piece -> ids (merges applied lowest rank first)."""
    symbols = apply_merges([self._byte_map[b] for b in piece.encode("utf-8")], self._ranks)
    unk = self.unk_id
    return tuple(self._encoder.get(s, unk) for s in symbols)

  def encode_ids(self, text: str) -> List[int]:
    """Python encoder: text -> ids (no special tokens added)."""
    cache = self._cache
    out: List[int] = []
    for piece in PATTERN.findall(text):
      ids = cache.get(piece)
      if ids is None:
        ids = self._bpe(piece)
        if len(cache) < 1_000_000:
          cache[piece] = ids
      out.extend(ids)
    return out

  def _decode(self, ids) -> str:
    text = "".join(self._decoder[int(i)] for i in ids)
    return bytearray(self._byte_unmap[c] for c in text).decode("utf-8", errors="replace")

  def _encode_batch_np(self, texts: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    rows = [self.encode_ids(t.decode("utf-8", errors="replace")) for t in texts.reshape(-1)]
    lengths = np.asarray([len(r) for r in rows], np.int64)
    flat = np.fromiter((i for r in rows for i in r), np.int32, int(lengths.sum()))
    return flat, lengths

  def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
    """Scalar string -> int32 [tokens]; 1-D strings -> ragged int32 [N, (tokens)]."""
    s = tf.convert_to_tensor(s, tf.string)
    scalar = s.shape.rank == 0
    flat, lengths = tf.numpy_function(self._encode_batch_np, [tf.reshape(s, [-1])],
                                      [tf.int32, tf.int64], stateful=False)
    flat = tf.ensure_shape(flat, [None])
    ids = tf.RaggedTensor.from_row_lengths(flat, tf.ensure_shape(lengths, [None]))
    return ids[0] if scalar else ids
