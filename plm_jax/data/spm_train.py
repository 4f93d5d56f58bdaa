r"""Trains a SentencePiece model for BERT-style pretraining from a local corpus.

  python -m plm_jax.data.spm_train --input='../shared/data/pretrain/books/*.txt' \
      --reader=gutenberg --model_prefix=/tmp/spm --vocab_size=8000

(also installed as `plm-train-spm`). Documents come from the same readers as the
pretraining pipeline and are split into sentences (one training sentence per
line). Ids: [PAD]=0 (seqio's pad id), [UNK]=1, then the user-defined symbols
[CLS] [SEP] [MASK]; no BOS/EOS (--layout=t5: T5's <pad>=0, </s>=1 (EOS), <unk>=2 and
no other symbols; the T5 objective adds the sentinels <extra_id_N> on top). With
--lowercase (the default) the model's normalizer case-folds (nmt_nfkc_cf), so encoding lower-cases inside the tf.data
graph as well. Then point the config at it (the type follows from '.model'):
  python main.py --workdir=/tmp/bert_spm --config.data.vocab.path=/tmp/spm.model
A bad argument or input prints one line `error: <message>` and exits with status 2.
"""
from __future__ import annotations

import argparse
import io
import sys
from typing import Iterator, Optional, Sequence

import sentencepiece as spm

# plm_jax.data modules import TensorFlow: main() quiets its start-up first, then imports them.

USER_SYMBOLS = ("[CLS]", "[SEP]", "[MASK]")
LAYOUTS = {   # special pieces and their ids
    "bert": dict(pad_id=0, unk_id=1, bos_id=-1, eos_id=-1, pad_piece="[PAD]",
                 unk_piece="[UNK]", user_defined_symbols=list(USER_SYMBOLS)),
    "t5": dict(pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>",
               unk_piece="<unk>"),
}


def _training_sentences(paths: str, reader: str, doc_separator: str,
                        max_sentences: int) -> Iterator[str]:
  from plm_jax.data import corpora  # pylint: disable=import-outside-toplevel
  from plm_jax.data.sentences import split_sentences  # pylint: disable=import-outside-toplevel
  n = 0
  for doc in corpora.iter_documents(paths, reader, doc_separator=doc_separator,
                                    config_key="--input"):
    for line in doc.split("\n"):
      for s in split_sentences(line):
        yield s
        n += 1
        if max_sentences and n >= max_sentences:
          return


def train(input_globs: str, model_prefix: str, vocab_size: int, *, reader: str = "plain",
          model_type: str = "unigram", lowercase: bool = True,
          doc_separator: str = "blank_line", max_sentences: int = 2_000_000,
          character_coverage: float = 0.9995, num_threads: int = 1,
          seed_sentencepiece_size: int = 200_000, layout: str = "bert"):
  """Trains `<model_prefix>.model`; returns it as a seqio vocabulary."""
  from plm_jax.data import corpora, vocab as vocab_lib  # pylint: disable=import-outside-toplevel
  if model_type not in ("unigram", "bpe"):
    raise ValueError(f"--model_type: expected unigram or bpe, got {model_type!r}")
  if layout not in LAYOUTS:
    raise ValueError(f"--layout: expected one of {sorted(LAYOUTS)}, got {layout!r}")
  corpora.get_reader(reader)
  for _, pattern in corpora.reader_globs(input_globs, reader):   # before SentencePiece starts
    corpora.expand_globs(pattern, "--input")
  if not corpora.reader_globs(input_globs, reader):
    corpora.expand_globs(input_globs, "--input")
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=_training_sentences(input_globs, reader, doc_separator, max_sentences),
      model_writer=model, vocab_size=vocab_size, model_type=model_type,
      **LAYOUTS[layout],
      normalization_rule_name="nmt_nfkc_cf" if lowercase else "nmt_nfkc",
      character_coverage=character_coverage, num_threads=num_threads,
      seed_sentencepiece_size=seed_sentencepiece_size,
      hard_vocab_limit=False, minloglevel=2)
  path = model_prefix + ".model"
  with open(path, "wb") as f:
    f.write(model.getvalue())
  return vocab_lib.SentencePieceVocabulary(path)


def main(argv: Optional[Sequence[str]] = None) -> int:
  """The command line; returns the exit status (0, or 2 after a one-line error)."""
  from plm_jax import startup  # pylint: disable=import-outside-toplevel
  startup.quiet_tensorflow()
  args = _parser().parse_args(argv)
  try:
    vocab = train(args.input, args.model_prefix, args.vocab_size, reader=args.reader,
                  model_type=args.model_type, lowercase=args.lowercase,
                  doc_separator=args.doc_separator, max_sentences=args.max_sentences,
                  num_threads=args.num_threads, layout=args.layout)
  except (ValueError, OSError, RuntimeError) as e:
    message = " ".join(str(e).split()) or type(e).__name__
    print(f"error: {message}", file=sys.stderr)
    return 2
  print(f"wrote {args.model_prefix}.model ({vocab.vocab_size} pieces)")
  return 0


def stand_in(argv: Sequence[str]) -> str:
  """For `main.py --dry_run` only: writes <model_prefix>.model with main(argv)'s layout and
  size but made-up pieces, without reading --input (plm_jax.data.stand_in_vocab)."""
  from plm_jax.data import stand_in_vocab  # pylint: disable=import-outside-toplevel
  args = _parser().parse_args(argv)
  return stand_in_vocab.sentencepiece(args.model_prefix + ".model", args.vocab_size,
                                      args.layout)


def _parser() -> argparse.ArgumentParser:
  from plm_jax.data import corpora  # pylint: disable=import-outside-toplevel
  p = argparse.ArgumentParser(prog="python -m plm_jax.data.spm_train",
                              description=__doc__.split("\n")[0])
  p.add_argument("--input", required=True, help="comma-separated file globs (reader=glob mixes)")
  p.add_argument("--reader", default="plain", choices=sorted(corpora.READERS))
  p.add_argument("--doc_separator", default="blank_line", choices=["blank_line", "line"])
  p.add_argument("--model_prefix", required=True, help="writes <prefix>.model")
  p.add_argument("--vocab_size", type=int, default=8000)
  p.add_argument("--model_type", default="unigram", choices=["unigram", "bpe"])
  p.add_argument("--lowercase", action=argparse.BooleanOptionalAction, default=True)
  p.add_argument("--max_sentences", type=int, default=2_000_000,
                 help="train on at most this many sentences (0: all)")
  p.add_argument("--num_threads", type=int, default=1)
  p.add_argument("--layout", default="bert", choices=sorted(LAYOUTS),
                 help="special pieces: bert ([PAD] [UNK] [CLS] [SEP] [MASK]) or t5 "
                 "(<pad> </s> <unk>)")
  return p


if __name__ == "__main__":
  sys.exit(main())
