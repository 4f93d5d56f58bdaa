"""Byte-level BPE: ids equal Hugging Face's RobertaTokenizer / GPT2Tokenizer on real text."""
import json
import os

import ml_collections
import pytest
import tensorflow as tf

from plm_jax.data import bpe, bpe_train, paths
from plm_jax.data import vocab as vocab_lib

from test_data_vocab import _real_lines

DATA = paths.data_dir()
needs_data = pytest.mark.skipif(not os.path.isdir(DATA), reason=f"{DATA} is absent")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A 3,000-token byte-level BPE learnt from one Wikipedia file of the corpus."""
  if not os.path.isdir(DATA):
    pytest.skip(f"{DATA} is absent")
  pytest.importorskip("tokenizers")
  out = tmp_path_factory.mktemp("bpe")
  globs = f"{DATA}/pretrain/wiki/enwiki/AA/wiki_00.txt"
  bpe_train.train(globs, str(out / "en"), 3000, reader="wikiextractor")
  return str(out / "en" / "vocab.json")


def _lines():
  lines = _real_lines()
  with open(f"{DATA}/pretrain/zh/xiyouji.txt", encoding="utf-8") as f:
    lines += [l for l in f.read().split("\n") if l.strip()][100:150]
  # Control characters and other bytes the byte map must carry unchanged.
  lines += ["bell\x07 form\x0cfeed \x1b[0m escape", "  leading and  double   spaces  ",
            "don't we'll they're I'M 1234567 3.14 $5", "\r\n\r\n", "tab\tsep\x00nul"]
  return lines


@needs_data
def test_ids_equal_hugging_face(trained):
  transformers = pytest.importorskip("transformers")
  merges = bpe.merges_path_for(trained)
  ours = bpe.ByteLevelBPEVocabulary(trained)
  lines = _lines()
  assert len(lines) >= 1000
  tokenizers = {"roberta": transformers.RobertaTokenizer(trained, merges),
                "gpt2": transformers.GPT2Tokenizer(trained, merges)}
  for name, hf in tokenizers.items():
    bad = [l for l in lines if ours.encode(l) != hf.encode(l, add_special_tokens=False)]
    assert not bad, f"{name}: {len(bad)} of {len(lines)} lines differ, e.g. {bad[0]!r}"
  # The tf.data path gives the same ids, and decoding gives the text back.
  ragged = ours.encode_tf(tf.constant(lines[:50]))
  assert ragged.to_list() == [ours.encode(l) for l in lines[:50]]
  assert all(ours.decode(ours.encode(l)) == l for l in lines[:200])
  assert vocab_lib.special_ids(ours, ("pad", "cls", "sep", "mask")) == (1, 0, 2, 4)


@needs_data
def test_selected_by_config_type_and_mismatched_merges_fail(trained, tmp_path):
  v = vocab_lib.get_vocabulary(ml_collections.ConfigDict({"type": "bpe", "path": trained}))
  assert isinstance(v, bpe.ByteLevelBPEVocabulary) and v.vocab_size == 3000
  # merges.txt from another vocabulary: a merge whose result vocab.json lacks.
  vocab = json.load(open(trained, encoding="utf-8"))
  (tmp_path / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
  lines = open(bpe.merges_path_for(trained), encoding="utf-8").read().split("\n")
  lines.insert(5, "Ġzq xv")
  (tmp_path / "merges.txt").write_text("\n".join(lines), encoding="utf-8")
  with pytest.raises(ValueError, match=r"merges.txt:6: merge 'Ġzq xv' does not match .*vocab.json"):
    bpe.ByteLevelBPEVocabulary(str(tmp_path / "vocab.json"))
