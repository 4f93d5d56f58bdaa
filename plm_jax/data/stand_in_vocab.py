"""Stand-in vocabularies for planning: files in a prepare step's exact layout and size whose
tokens are made up, so `main.py --dry_run` can size a model before its vocabulary is learnt.

A comparison config learns its vocabularies in prepare steps (plm_jax.data.spm_train,
bpe_train, zh_vocab) that read the whole corpus; a paper-size one takes hours. The dry run
reads no data, but a model's embedding tables and an objective's special ids come from its
vocabulary. Each prepare module's `stand_in(argv)` takes the same arguments as its `main`
and writes, in place of the real file, one with the same special tokens at the same ids and
the same number of entries (synthetic pieces fill the rest). Nothing should train on it: the
tokens do not come from text.
"""
from __future__ import annotations

import json
import os
from typing import List, Sequence

# Letters the synthetic tokens are made of: CJK ideographs (no case, so no normaliser folds
# two of them together, and BERT's basic tokenizer keeps each one whole).
_FIRST_CHAR = 0x4E00


def _chars(n: int) -> List[str]:
  return [chr(_FIRST_CHAR + i) for i in range(n)]


def _check_size(size: int, specials: Sequence[str], what: str) -> None:
  if size <= len(specials):
    raise ValueError(f"--vocab_size: a {what} needs more than its {len(specials)} special "
                     f"tokens, got {size}")


def sentencepiece(path: str, size: int, layout: str) -> str:
  """Writes a SentencePiece model of `size` pieces with spm_train's `layout` (bert | t5):
  a real model trained by SentencePiece on a few synthetic sentences (so its normaliser and
  special pieces are what spm_train writes), then synthetic pieces appended up to `size`."""
  import io  # pylint: disable=import-outside-toplevel
  import sentencepiece as spm  # pylint: disable=import-outside-toplevel
  from sentencepiece import sentencepiece_model_pb2  # pylint: disable=import-outside-toplevel
  from plm_jax.data import spm_train  # pylint: disable=import-outside-toplevel
  layout_args = spm_train.LAYOUTS[layout]
  if size < 64:
    raise ValueError(f"--vocab_size: a stand-in SentencePiece model needs at least 64 pieces, "
                     f"got {size}")
  words = [f"w{i}x{i % 7}" for i in range(200)]
  sentences = [" ".join(words[(j * 7 + k) % 200] for k in range(8)) for j in range(400)]
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(sentences), model_writer=model, vocab_size=60,
      model_type="unigram", normalization_rule_name="nmt_nfkc_cf", hard_vocab_limit=False,
      minloglevel=2, **layout_args)
  proto = sentencepiece_model_pb2.ModelProto()
  proto.ParseFromString(model.getvalue())
  have = {p.piece for p in proto.pieces}
  lowest = min(p.score for p in proto.pieces if p.type == p.NORMAL)
  needed = size - len(proto.pieces)
  for i, ch in enumerate(c for c in _chars(needed + len(have)) if "\u2581" + c not in have):
    if i >= needed:
      break
    piece = proto.pieces.add()
    piece.piece = "\u2581" + ch
    piece.score = lowest - 1.0 - i * 1e-3
    piece.type = piece.NORMAL
  proto.trainer_spec.vocab_size = len(proto.pieces)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "wb") as f:
    f.write(proto.SerializeToString())
  return path


def byte_level_bpe(out_dir: str, size: int, specials: Sequence[str]) -> str:
  """Writes vocab.json + merges.txt in bpe_train's byte-level layout (`specials` first, the
  256 byte symbols, then merges of two byte symbols) with `size` tokens."""
  from plm_jax.data import bpe  # pylint: disable=import-outside-toplevel
  _check_size(size, specials, "byte-level BPE")
  base = list(bpe.bytes_to_unicode().values())
  tokens, merges = list(specials) + base, []
  for a in base:
    for b in base:
      if len(tokens) >= size:
        break
      tokens.append(a + b)
      merges.append(f"{a} {b}")
  if len(tokens) < size:
    raise ValueError(f"--vocab_size: a stand-in byte-level BPE holds at most {len(tokens)} "
                     f"tokens, got {size}")
  return _write_bpe(out_dir, tokens[:size], merges)


def gpt1_bpe(out_dir: str, size: int, specials: Sequence[str]) -> str:
  """Writes vocab.json + merges.txt in GPT-1's layout (`specials` first, symbols with and
  without the word end '</w>', then merges that end words) with `size` tokens."""
  from plm_jax.data import gpt1_bpe as gpt1  # pylint: disable=import-outside-toplevel
  _check_size(size, specials, "GPT-1 BPE")
  n = 1
  while len(specials) + 2 * n + n * n < size:
    n += 1
  chars = _chars(n)
  tokens = list(specials) + chars + [c + gpt1.WORD_END for c in chars]
  merges = []
  for a in chars:
    for b in chars:
      if len(tokens) >= size:
        break
      tokens.append(a + b + gpt1.WORD_END)
      merges.append(f"{a} {b}{gpt1.WORD_END}")
  return _write_bpe(out_dir, tokens[:size], merges)


def _write_bpe(out_dir: str, tokens: Sequence[str], merges: Sequence[str]) -> str:
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, "vocab.json")
  with open(path, "w", encoding="utf-8") as f:
    json.dump({t: i for i, t in enumerate(tokens)}, f, ensure_ascii=False)
  with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
    f.write("#version: stand-in for planning\n" + "".join(m + "\n" for m in merges))
  return path


def wordpiece(path: str, size: int, specials: Sequence[str]) -> str:
  """Writes a vocab.txt of `specials` then single characters, `size` lines."""
  _check_size(size, specials, "WordPiece vocabulary")
  tokens = list(specials) + _chars(size - len(specials))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write("".join(t + "\n" for t in tokens))
  return path
