"""A BERT-Chinese-style WordPiece vocab.txt learnt from a corpus: characters, as Google's
bert-base-chinese (and ERNIE 1.0's 18,000-token vocabulary) are.

BERT's basic tokenizer puts spaces around every CJK ideograph and splits off every
punctuation character (plm_jax.data.vocab, steps 2 and 4; full-width punctuation such as
，。！？“”（）《》 is Unicode P* and so splits too), so Chinese text is a sequence of
one-character words. Other runs (Latin words, digits, full-width letters) are cut into
characters with the WordPiece continuation prefix: a character that starts such a word
is `c`, one inside it `##c`. The vocabulary is [PAD] [UNK] [CLS] [SEP] [MASK] and then
these tokens by frequency (ties by code point), at least `min_count` times, up to
`vocab_size`; the text is normalised as the tokenizer will (lower-case, NFD, accents
dropped when `lowercase`). WordPieceVocabulary reads the file, and so does a released
bert-base-chinese vocab.txt.

  python -m plm_jax.data.zh_vocab --input='../shared/data/pretrain/zh/*.txt' \\
      --out=/tmp/zh_vocab.txt --vocab_size=8000
"""
from __future__ import annotations

import argparse
import collections
import re
import sys
import unicodedata
from typing import Iterable, List, Optional, Sequence

from plm_jax.data import corpora

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_CJK = re.compile("[\u4E00-\u9FFF\u3400-\u4DBF\U00020000-\U0002A6DF\U0002A700-\U0002B73F"
                  "\U0002B740-\U0002B81F\U0002B820-\U0002CEAF\uF900-\uFAFF\U0002F800-\U0002FA1F]")


def _is_punct(c: str) -> bool:
  o = ord(c)
  return (33 <= o <= 47 or 58 <= o <= 64 or 91 <= o <= 96 or 123 <= o <= 126
          or unicodedata.category(c).startswith("P"))


def _normalise(text: str, lowercase: bool) -> str:
  text = "".join(" " if c.isspace() else c for c in text
                 if not unicodedata.category(c) in ("Cc", "Cf", "Co") or c in "\t\n\r")
  if lowercase:
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(c for c in text if unicodedata.category(c) != "Mn")
  return text


def count_tokens(texts: Iterable[str], lowercase: bool = True) -> collections.Counter:
  counts: collections.Counter = collections.Counter()
  for text in texts:
    for chunk in _normalise(text, lowercase).split():
      start = True
      for c in chunk:
        if _CJK.match(c) or _is_punct(c):
          counts[c] += 1
          start = True
        else:
          counts[c if start else "##" + c] += 1
          start = False
  return counts


def build_vocab(texts: Iterable[str], vocab_size: int, min_count: int = 1,
                lowercase: bool = True) -> List[str]:
  if vocab_size <= len(SPECIALS):
    raise ValueError(f"--vocab_size must be > {len(SPECIALS)}, got {vocab_size}")
  counts = count_tokens(texts, lowercase)
  ranked = sorted((t for t, n in counts.items() if n >= min_count),
                  key=lambda t: (-counts[t], [ord(c) for c in t]))
  return list(SPECIALS) + ranked[:vocab_size - len(SPECIALS)]


def _read_texts(pattern: str) -> Iterable[str]:
  for path in corpora.expand_globs(pattern, "--input"):
    with open(path, "rb") as f:
      yield f.read().decode("utf-8-sig", "replace")


def main(argv: Optional[Sequence[str]] = None) -> int:
  """The command line; returns the exit status (0, or 2 after a one-line error)."""
  args = _parser().parse_args(argv)
  try:
    tokens = build_vocab(_read_texts(args.input), args.vocab_size, args.min_count,
                         args.lowercase)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  with open(args.out, "w", encoding="utf-8") as f:
    f.write("".join(t + "\n" for t in tokens))
  print(f"wrote {args.out}: {len(tokens):,} tokens")
  return 0


def stand_in(argv: Sequence[str]) -> str:
  """For `main.py --dry_run` only: writes --out with main(argv)'s size and special tokens but
  made-up characters, without reading --input (plm_jax.data.stand_in_vocab)."""
  from plm_jax.data import stand_in_vocab  # pylint: disable=import-outside-toplevel
  args = _parser().parse_args(argv)
  return stand_in_vocab.wordpiece(args.out, args.vocab_size, SPECIALS)


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m plm_jax.data.zh_vocab",
                              description=__doc__.split("\n")[0])
  p.add_argument("--input", required=True, help="comma-separated file globs (UTF-8 text)")
  p.add_argument("--out", required=True, help="the vocab.txt to write")
  p.add_argument("--vocab_size", type=int, default=8000, help="tokens, specials included")
  p.add_argument("--min_count", type=int, default=2, help="keep tokens seen this often")
  p.add_argument("--lowercase", action=argparse.BooleanOptionalAction, default=True)
  return p


if __name__ == "__main__":
  sys.exit(main())
