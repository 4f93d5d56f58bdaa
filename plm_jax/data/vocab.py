"""Vocabularies: BERT WordPiece (tokenized inside the tf.data graph) and lookup.

`WordPieceVocabulary` reproduces `transformers.BertTokenizer(vocab,
do_lower_case=...)` ids with TensorFlow ops only, so it runs inside tf.data:

  1. clean text: drop NUL, U+FFFD, control, format and private-use characters
     (Unicode Cc other than \\t \\n \\r, Cf, Co); map \\t \\n \\r, space
     separators (Zs) and the line/paragraph separators U+2028/U+2029 to ' '
     (Hugging Face's tokenizers: what its BertNormalizer drops, and Rust's
     White_Space after that)
  2. put spaces around CJK ideographs (the same code-point blocks as BERT)
  3. uncased only: lower-case (full Unicode mapping), NFD, drop combining
     marks (Mn) -- BERT's "strip accents"
  4. split on spaces, and split off every punctuation character (ASCII
     symbols 33-47, 58-64, 91-96, 123-126 and Unicode P*) as its own word
  5. words longer than 100 characters become [UNK]; the rest go through
     greedy longest-match-first WordPiece (tensorflow_text
     FastWordpieceTokenizer, '##' continuation prefix).

tensorflow_text.BertTokenizer is not used as is because its lower-casing is
NFKC case folding, which differs from Python's str.lower() (e.g. 'ß' -> 'ss',
ligatures, full-width letters) and so from the Hugging Face ids.
"""
from __future__ import annotations

from typing import List, Mapping, Optional, Sequence, Tuple

import numpy as np
import seqio
import tensorflow as tf
import tensorflow_text as tf_text

VOCAB_PATH_KEY = "config.data.vocab.path"
BERT_ROLES = ("pad", "unk", "cls", "sep", "mask")

# Format characters (Cf) that Hugging Face's tokenizers keeps: its Unicode tables predate
# them (Arabic marks of Unicode 9/14, Kaithi and Egyptian hieroglyph format controls).
_CF_KEPT = r"\x{0890}\x{0891}\x{08E2}\x{110CD}\x{13430}-\x{1343F}"
_CONTROL = (r"[\x{0}\x{FFFD}\p{Co}]|[^\P{Cc}\t\n\r]|[^\P{Cf}" + _CF_KEPT + "]")
_WHITESPACE = r"[\t\n\r\p{Zs}\x{2028}\x{2029}]"
_CJK = (r"[\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}\x{2A700}-\x{2B73F}"
        r"\x{2B740}-\x{2B81F}\x{2B820}-\x{2CEAF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}]")
_PUNCT = r"[!-/:-@\[-`{-~\p{P}]"
_MAX_CHARS_PER_WORD = 100


def read_vocab_file(path: str, config_key: str = VOCAB_PATH_KEY) -> List[str]:
  """One token per line (UTF-8); a line that is not UTF-8 is an error naming it."""
  if not path or not tf.io.gfile.exists(path):
    raise ValueError(f"{config_key}: vocabulary file {path!r} does not exist")
  if tf.io.gfile.isdir(path):
    raise ValueError(f"{config_key}: {path!r} is a directory, not a vocabulary file")
  with tf.io.gfile.GFile(path, "rb") as f:
    data = f.read()
  tokens = []
  for number, raw in enumerate(data.split(b"\n"), start=1):
    try:
      tokens.append(raw.decode("utf-8").rstrip("\r"))
    except UnicodeDecodeError as e:
      raise ValueError(f"{config_key}: {path} line {number} is not UTF-8 (byte "
                       f"{raw[e.start]:#04x} at column {e.start + 1}); a vocabulary file must "
                       f"be UTF-8 text") from None
  while tokens and not tokens[-1]:
    tokens.pop()
  return tokens


def clean_text_tf(text: tf.Tensor) -> tf.Tensor:
  """Step 1 of the module doc: control/format/private-use characters dropped, whitespace -> ' '."""
  text = tf.strings.regex_replace(text, _CONTROL, "")
  return tf.strings.regex_replace(text, _WHITESPACE, " ")


def basic_tokenize_tf(text: tf.Tensor, lowercase: bool) -> tf.RaggedTensor:
  """Steps 1-4 of the module doc (BERT's BasicTokenizer; Hugging Face's BertNormalizer +
  BertPreTokenizer): 1-D string tensor [N] -> ragged words [N, (words)]."""
  text = clean_text_tf(text)
  text = tf.strings.regex_replace(text, "(" + _CJK + ")", " \\1 ")
  if lowercase:
    text = tf.strings.lower(text, encoding="utf-8")
    text = tf_text.normalize_utf8(text, "NFD")
    text = tf.strings.regex_replace(text, r"\p{Mn}", "")
  return tf_text.regex_split(text, " +|" + _PUNCT + "|" + _CJK, _PUNCT + "|" + _CJK)


class WordPieceVocabulary(seqio.Vocabulary):
  """BERT vocab.txt vocabulary; pad id 0 ([PAD]), no EOS.

  `special_tokens` maps roles (pad, unk, cls, sep, mask) to tokens; a token
  starting with '##' continues the previous word.
  """
  SPECIAL_TOKENS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]",
                    "mask": "[MASK]"}
  CONTINUATION_PREFIX = "##"

  def __init__(self, vocab_path: str, lowercase: bool = True, extra_ids: int = 0):
    self._vocab_path = vocab_path
    self._lowercase = lowercase
    self._tokens = read_vocab_file(vocab_path)
    self._index = {t: i for i, t in enumerate(self._tokens)}
    if "[UNK]" not in self._index:
      raise ValueError(f"{VOCAB_PATH_KEY}: {vocab_path!r} has no [UNK] token")
    self._wordpiece = None       # built lazily: not picklable, graph-independent
    self.special_tokens = dict(self.SPECIAL_TOKENS)
    super().__init__(extra_ids=extra_ids)

  # ---- ids ------------------------------------------------------------------------
  @property
  def tokens(self) -> Sequence[str]:
    return self._tokens

  @property
  def lowercase(self) -> bool:
    return self._lowercase

  @property
  def vocab_path(self) -> str:
    return self._vocab_path

  @property
  def eos_id(self) -> Optional[int]:
    return None

  @property
  def pad_id(self) -> int:
    return 0

  @property
  def unk_id(self) -> Optional[int]:
    return self._index["[UNK]"]

  def token_to_id(self, token: str) -> Optional[int]:
    return self._index.get(token)

  def id_to_token(self, i: int) -> str:
    return self._tokens[int(i)]

  def is_continuation(self, token: str) -> bool:
    return token.startswith(self.CONTINUATION_PREFIX)

  @property
  def _base_vocab_size(self) -> int:
    return len(self._tokens)

  # ---- tf ---------------------------------------------------------------------------
  def _tokenizer(self) -> tf_text.FastWordpieceTokenizer:
    if self._wordpiece is None:
      # Built eagerly (init_scope lifts out of a tf.data function being traced), so
      # the one vocabulary of a run can serve several datasets' graphs.
      with tf.init_scope():
        self._wordpiece = self._build_tokenizer()
    return self._wordpiece

  def _build_tokenizer(self) -> tf_text.FastWordpieceTokenizer:
    return tf_text.FastWordpieceTokenizer(
          vocab=self._tokens, suffix_indicator=self.CONTINUATION_PREFIX,
          max_bytes_per_word=4 * _MAX_CHARS_PER_WORD + 4, token_out_type=tf.int64,
          unknown_token=self.special_tokens["unk"], no_pretokenization=True,
          support_detokenization=False)

  def basic_tokenize_tf(self, text: tf.Tensor) -> tf.RaggedTensor:
    """1-D string tensor [N] -> ragged words [N, (words)] (BERT BasicTokenizer)."""
    return basic_tokenize_tf(text, self._lowercase)

  def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
    """Scalar string -> int32 [tokens]; 1-D strings -> ragged int32 [N, (tokens)]."""
    s = tf.convert_to_tensor(s, tf.string)
    scalar = s.shape.rank == 0
    words = self.basic_tokenize_tf(tf.reshape(s, [-1]))
    long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > _MAX_CHARS_PER_WORD
    words = words.with_flat_values(tf.where(long, "[UNK]", words.flat_values))
    ids = self._tokenizer().tokenize(words)                 # [N, (words), (pieces)]
    ids = tf.cast(ids.merge_dims(1, 2), tf.int32)          # [N, (tokens)]
    return ids[0] if scalar else ids

  def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
    ids = tf.convert_to_tensor(ids)
    pieces = tf.gather(tf.constant(self._tokens), tf.cast(ids, tf.int32))
    text = tf.strings.reduce_join(pieces, axis=-1, separator=" ")
    return tf.strings.regex_replace(text, " " + self.CONTINUATION_PREFIX, "")

  # ---- python -------------------------------------------------------------------------
  def _encode(self, s: str) -> Sequence[int]:
    return self._encode_tf(tf.constant(s)).numpy().tolist()

  def _decode(self, ids) -> str:
    pieces = [self._tokens[int(i)] for i in ids]
    return " ".join(pieces).replace(" " + self.CONTINUATION_PREFIX, "")

  def __eq__(self, other):
    return (isinstance(other, WordPieceVocabulary) and other._tokens == self._tokens
            and other._lowercase == self._lowercase)

  def __hash__(self):
    return hash((len(self._tokens), self._vocab_path, self._lowercase))

  def __str__(self) -> str:
    return (f"WordPieceVocabulary(file={self._vocab_path}, size={self.vocab_size}, "
            f"lowercase={self._lowercase})")


class SentencePieceVocabulary(seqio.SentencePieceVocabulary):
  """seqio's SentencePiece vocabulary plus plm_jax's special-token roles and word rule.

  Special tokens are pieces of the model (plm_jax.data.spm_train makes [PAD],
  [UNK], [CLS], [SEP], [MASK]; pass `special_tokens` for models with other
  names, e.g. ALBERT's '<pad>'/'[CLS]' or XLNet's '<cls>'/'<sep>'/'<mask>').
  A piece that starts with U+2581 ('▁') starts a word.
  """
  SPECIAL_TOKENS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]",
                    "mask": "[MASK]"}
  WORD_START = "\u2581"

  def __init__(self, path: str, special_tokens: Optional[Mapping[str, str]] = None, **kwargs):
    super().__init__(path, **kwargs)
    self.special_tokens = dict(self.SPECIAL_TOKENS, **(special_tokens or {}))

  def token_to_id(self, token: str) -> Optional[int]:
    i = self.tokenizer.piece_to_id(token)
    return i if self.tokenizer.id_to_piece(i) == token else None

  def id_to_token(self, i: int) -> str:
    return self.tokenizer.id_to_piece(int(i))

  def is_continuation(self, token: str) -> bool:
    return not token.startswith(self.WORD_START)


def special_ids(vocab, roles: Sequence[str] = BERT_ROLES) -> Tuple[int, ...]:
  """Ids of the vocabulary's special tokens for `roles` (in that order).

  The token of each role comes from the vocabulary (`vocab.special_tokens`);
  a missing one is a ValueError naming the tokens and config.data.vocab.path.
  """
  tokens = getattr(vocab, "special_tokens", None)
  if tokens is None:
    raise TypeError(f"unsupported vocabulary type {type(vocab).__name__} (no special_tokens)")
  unknown = [r for r in roles if r not in tokens]
  if unknown:
    raise ValueError(f"{VOCAB_PATH_KEY}: vocabulary {vocab} defines no token for role(s) "
                     f"{unknown}; it has {sorted(tokens)}")
  ids = {r: vocab.token_to_id(tokens[r]) for r in roles}
  missing = [tokens[r] for r in roles if ids[r] is None]
  if missing:
    raise ValueError(f"{VOCAB_PATH_KEY}: vocabulary {vocab} lacks the special token(s) "
                     f"{missing} needed here")
  return tuple(int(ids[r]) for r in roles)


def all_special_ids(vocab) -> Tuple[int, ...]:
  """Ids of every special token the vocabulary defines and holds."""
  ids = [vocab.token_to_id(t) for t in vocab.special_tokens.values()]
  return tuple(sorted({int(i) for i in ids if i is not None}))


def continuation_mask(vocab) -> np.ndarray:
  """bool [vocab_size]: the token continues the previous word (the vocabulary's rule:
  WordPiece '##x'; SentencePiece: no leading U+2581; byte-level BPE: no leading 'G')."""
  out = np.zeros([vocab.vocab_size], dtype=bool)
  for i in range(vocab.vocab_size):
    out[i] = vocab.is_continuation(vocab.id_to_token(i))
  return out


def replacement_ids(vocab) -> np.ndarray:
  """Ids the MLM 'random token' draws from: every id but specials and [unusedN]/<...> slots."""
  keep = []
  specials = set(all_special_ids(vocab))
  for i in range(vocab.vocab_size):
    if i in specials:
      continue
    t = vocab.id_to_token(i)
    if (t.startswith("[") and t.endswith("]")) or (t.startswith("<") and t.endswith(">")):
      continue
    keep.append(i)
  return np.asarray(keep, dtype=np.int32)


def get_vocabulary(vocab_config) -> seqio.Vocabulary:
  """A vocabulary from a `data.vocab` section (type builtin | wordpiece | sentencepiece, or
  auto: from the path's file, see plm_jax.data.config.VocabConfig.resolved_type).

  Build it once per run and pass it around (an objective caches its own):
  a WordPiece vocabulary reads its file and builds its tokenizer tables.
  """
  v = vocab_config
  kind = v.resolved_type() if hasattr(v, "resolved_type") else v.type
  if kind == "builtin":
    from plm_jax.data import builtin  # pylint: disable=import-outside-toplevel
    return WordPieceVocabulary(builtin.write_vocab(builtin.default_vocab_dir()), lowercase=True)
  if kind == "wordpiece":
    return WordPieceVocabulary(v.path, lowercase=v.lowercase)
  if kind == "sentencepiece":
    if not v.path or not tf.io.gfile.exists(v.path):
      raise ValueError(f"{VOCAB_PATH_KEY}: SentencePiece model {v.path!r} does not exist")
    return SentencePieceVocabulary(v.path)
  if kind == "bpe":   # byte-level (GPT-2, RoBERTa) or GPT-1's, told apart by the tokens
    from plm_jax.data import gpt1_bpe  # pylint: disable=import-outside-toplevel
    return gpt1_bpe.load_bpe(v.path)
  raise ValueError(f"config.data.vocab.type: unknown type {kind!r}; "
                   "choose builtin, wordpiece, sentencepiece or bpe")
