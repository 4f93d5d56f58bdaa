"""Trains a BPE vocabulary (vocab.json + merges.txt) from a local corpus: byte-level
(GPT-2, RoBERTa; the default) or GPT-1's (--kind=gpt1).

  python -m plm_jax.data.bpe_train --input='/data/books/*.txt' --reader=gutenberg \
      --out_dir=/tmp/bpe_books --vocab_size=8000

Documents come from the pretraining pipeline's readers. The merges are learnt
with the `tokenizers` package (ByteLevelBPETokenizer: GPT-2's byte map and
pre-tokenization), written in the GPT-2 / RoBERTa file format; encoding then
uses plm_jax.data.bpe. Ids 0-4 are RoBERTa's special tokens <s> <pad> </s>
<unk> <mask>. Then point the config at it:
  --config.data.vocab.type=bpe --config.data.vocab.path=<out_dir>/vocab.json

--kind=gpt1 learns GPT-1's format instead (lower-cased BERT-style words, symbols ending a
word marked '</w>'; plm_jax.data.gpt1_bpe reads it, as transformers' OpenAIGPTTokenizer
does), with ids 0-1 <unk> and <|endoftext|>; config.data.vocab.type=bpe loads either kind.
"""
from __future__ import annotations

import argparse
import os
from typing import Iterator, Optional, Sequence

from plm_jax.data import bpe, corpora

SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
GPT1_SPECIALS = ("<unk>", "<|endoftext|>")
KINDS = ("byte_level", "gpt1")


def _documents(paths: str, reader: str, doc_separator: str, max_documents: int) -> Iterator[str]:
  for n, doc in enumerate(corpora.iter_documents(paths, reader, doc_separator=doc_separator,
                                                 config_key="--input")):
    if max_documents and n >= max_documents:
      return
    yield doc


def train(input_globs: str, out_dir: str, vocab_size: int, *, reader: str = "plain",
          doc_separator: str = "blank_line", max_documents: int = 0,
          min_frequency: int = 2) -> bpe.ByteLevelBPEVocabulary:
  """Writes out_dir/vocab.json and out_dir/merges.txt; returns the vocabulary."""
  try:
    from tokenizers import ByteLevelBPETokenizer  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise ValueError("training a byte-level BPE needs the `tokenizers` package "
                     "(pip install tokenizers)") from None
  tokenizer = ByteLevelBPETokenizer(add_prefix_space=False)
  tokenizer.train_from_iterator(
      _documents(input_globs, reader, doc_separator, max_documents), vocab_size=vocab_size,
      min_frequency=min_frequency, special_tokens=list(SPECIALS), show_progress=False)
  os.makedirs(out_dir, exist_ok=True)
  tokenizer.save_model(out_dir)
  return bpe.ByteLevelBPEVocabulary(os.path.join(out_dir, "vocab.json"))


def train_gpt1(input_globs: str, out_dir: str, vocab_size: int, *, reader: str = "plain",
               doc_separator: str = "blank_line", max_documents: int = 0,
               min_frequency: int = 2):
  """GPT-1's BPE: writes out_dir/vocab.json and out_dir/merges.txt; returns the vocabulary
  (plm_jax.data.gpt1_bpe.OpenAIGPTBPEVocabulary)."""
  try:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise ValueError("training a BPE needs the `tokenizers` package (pip install tokenizers)"
                     ) from None
  from plm_jax.data import gpt1_bpe  # pylint: disable=import-outside-toplevel
  tokenizer = Tokenizer(models.BPE(unk_token="<unk>", end_of_word_suffix=gpt1_bpe.WORD_END))
  tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
  tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                special_tokens=list(GPT1_SPECIALS), show_progress=False,
                                end_of_word_suffix=gpt1_bpe.WORD_END)
  tokenizer.train_from_iterator(_documents(input_globs, reader, doc_separator, max_documents),
                                trainer=trainer)
  os.makedirs(out_dir, exist_ok=True)
  tokenizer.model.save(out_dir)
  return gpt1_bpe.OpenAIGPTBPEVocabulary(os.path.join(out_dir, "vocab.json"))


def main(argv: Optional[Sequence[str]] = None) -> bpe.ByteLevelBPEVocabulary:
  args = _parser().parse_args(argv)
  learn = train_gpt1 if args.kind == "gpt1" else train
  vocab = learn(args.input, args.out_dir, args.vocab_size, reader=args.reader,
                doc_separator=args.doc_separator, max_documents=args.max_documents)
  print(f"wrote {args.out_dir}/vocab.json and merges.txt ({vocab.vocab_size} tokens)")
  return vocab


def stand_in(argv: Sequence[str]) -> str:
  """For `main.py --dry_run` only: writes <out_dir>/vocab.json + merges.txt of main(argv)'s
  kind and size but made-up merges, without reading --input (plm_jax.data.stand_in_vocab)."""
  from plm_jax.data import stand_in_vocab  # pylint: disable=import-outside-toplevel
  args = _parser().parse_args(argv)
  if args.kind == "gpt1":
    return stand_in_vocab.gpt1_bpe(args.out_dir, args.vocab_size, GPT1_SPECIALS)
  return stand_in_vocab.byte_level_bpe(args.out_dir, args.vocab_size, SPECIALS)


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--input", required=True, help="comma-separated file globs")
  p.add_argument("--reader", default="plain", choices=sorted(corpora.READERS))
  p.add_argument("--doc_separator", default="blank_line", choices=["blank_line", "line"])
  p.add_argument("--out_dir", required=True, help="writes vocab.json and merges.txt here")
  p.add_argument("--vocab_size", type=int, default=8000)
  p.add_argument("--max_documents", type=int, default=0, help="at most this many (0: all)")
  p.add_argument("--kind", default="byte_level", choices=KINDS,
                 help="byte_level (GPT-2 / RoBERTa) or gpt1 (GPT-1's </w> BPE, lower-cased)")
  return p


if __name__ == "__main__":
  main()
