"""Learn ERNIE's phrase and entity lexicons from a corpus (plm_jax.data.ernie_units).

  python -m plm_jax.data.ernie_lexicon --input='../shared/data/pretrain/zh/*.txt' \\
      --phrases_out=/tmp/zh_phrases.txt --entities_out=/tmp/zh_entities.txt

phrases: adjacent jieba word pairs seen >= --phrase_min_count times with PMI >=
--phrase_min_pmi, the best --max_phrases; entities: words jieba's dictionary tags as
proper nouns (nr, ns, nt, nz) seen >= --entity_min_count times. Both one entry a line,
UTF-8, for --config.ernie.phrase_lexicon / --config.ernie.entity_lexicon. The input is
read with the plain reader (documents separated by blank lines), the first --max_chars
characters of it.
"""
from __future__ import annotations

import argparse
import sys
from typing import Iterator, Optional, Sequence

from plm_jax.data import corpora, ernie_units

def _documents(args) -> Iterator[str]:
  total = 0
  for doc in corpora.iter_documents(args.input, args.reader, config_key="--input"):
    yield doc
    total += len(doc)
    if total >= args.max_chars:
      return


def main(argv: Optional[Sequence[str]] = None) -> int:
  """The command line; returns the exit status (0, or 2 after a one-line error)."""
  args = _parser().parse_args(argv)
  try:
    docs = list(_documents(args))
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if args.phrases_out:
    phrases = ernie_units.learn_phrases(docs, args.phrase_min_count, args.max_phrases,
                                        args.phrase_min_pmi)
    ernie_units.write_lexicon(args.phrases_out, phrases)
    print(f"wrote {args.phrases_out}: {len(phrases):,} phrases")
  if args.entities_out:
    entities = ernie_units.learn_entities(docs, args.entity_min_count, args.max_entities)
    ernie_units.write_lexicon(args.entities_out, entities)
    print(f"wrote {args.entities_out}: {len(entities):,} entities")
  return 0


def stand_in(argv: Sequence[str]) -> None:
  """For `main.py --dry_run` only: writes the lexicons main(argv) would, each with a few
  made-up two-character entries, without reading --input (plm_jax.data.stand_in_vocab)."""
  args = _parser().parse_args(argv)
  for path, first in ((args.phrases_out, 0x4E00), (args.entities_out, 0x5E00)):
    if path:
      ernie_units.write_lexicon(path, [chr(first + 2 * i) + chr(first + 2 * i + 1)
                                       for i in range(16)])


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="python -m plm_jax.data.ernie_lexicon",
                              description=__doc__.split("\n")[0])
  p.add_argument("--input", required=True, help="comma-separated file globs")
  p.add_argument("--reader", default="plain", choices=sorted(corpora.READERS))
  p.add_argument("--phrases_out", default="", help="phrase lexicon to write (empty: none)")
  p.add_argument("--entities_out", default="", help="entity lexicon to write (empty: none)")
  p.add_argument("--max_chars", type=int, default=20_000_000, help="read at most this many")
  p.add_argument("--phrase_min_count", type=int, default=5)
  p.add_argument("--phrase_min_pmi", type=float, default=3.0)
  p.add_argument("--max_phrases", type=int, default=20_000)
  p.add_argument("--entity_min_count", type=int, default=3)
  p.add_argument("--max_entities", type=int, default=20_000)
  return p


if __name__ == "__main__":
  sys.exit(main())
