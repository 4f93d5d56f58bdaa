"""GPT-1's BPE (</w> word ends, lower-cased): ids equal transformers' OpenAIGPTTokenizer on
real text, loaded by config type bpe, a mismatched pair fails, and GPT-1 checkpoints carry
the files through import and export."""
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from plm_jax.data import bpe, bpe_train, gpt1_bpe, paths
from plm_jax.data import vocab as vocab_lib
from plm_jax.data.config import VocabConfig

from test_data_vocab import _real_lines

DATA = paths.data_dir()


@pytest.fixture(scope="module")
def gpt1_vocab(tmp_path_factory):
  """A 1,000-token GPT-1 BPE learnt from 50 documents of one Wikipedia file."""
  wiki = f"{DATA}/pretrain/wiki/enwiki/AA/wiki_00.txt"
  if not os.path.isfile(wiki):
    pytest.skip(f"{wiki} is absent")
  pytest.importorskip("tokenizers")
  out = tmp_path_factory.mktemp("gpt1_bpe")
  vocab = bpe_train.train_gpt1(wiki, str(out), 1000, reader="wikiextractor", max_documents=50)
  return vocab


def _lines():
  lines = _real_lines()
  with open(f"{DATA}/wikitext-2/test.txt", encoding="utf-8") as f:   # holds '<unk>' words
    lines += [l.strip() for l in f if l.strip()][:300]
  lines += ["a<|endoftext|>b <unk><unk>x <UNK>", "emoji \U0001F642 and \u00e9t\u00e9 CAF\u00c9",
            "don't stop-believing... 3.14 $5", "   ", ""]
  return lines


def test_ids_equal_openai_gpt_tokenizer(gpt1_vocab, tmp_path):
  transformers = pytest.importorskip("transformers")
  from plm_jax.convert import export
  assert export.save_tokenizer(str(tmp_path), gpt1_vocab, 512) == (
      "vocab.json", "merges.txt", "tokenizer_config.json")
  hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
  assert type(hf).__name__ == "OpenAIGPTTokenizer"
  lines = _lines()
  ours = gpt1_vocab.encode_tf(tf.constant(lines)).to_list()
  theirs = hf(lines, add_special_tokens=False)["input_ids"]
  bad = [i for i in range(len(lines)) if ours[i] != theirs[i]]
  assert not bad, (f"{len(bad)} of {len(lines)} lines differ, e.g. {lines[bad[0]][:60]!r}: "
                   f"{ours[bad[0]][:12]} vs {theirs[bad[0]][:12]}")
  assert len(lines) > 1300 and sum(map(len, ours)) > 100_000
  assert gpt1_vocab.unk_id in ours[-5] and gpt1_vocab.eos_id in ours[-5]
  for line in lines[:3] + lines[-5:-3]:   # the Python path
    assert gpt1_vocab.encode_ids(line) == hf(line, add_special_tokens=False)["input_ids"]
  for line in lines[:3] + lines[-4:-3]:   # decoding (seqio's decode stops at end-of-text)
    ids = gpt1_vocab.encode_ids(line)
    assert gpt1_vocab.decode(ids) == hf.decode(ids)


def test_config_type_bpe_loads_either_kind_and_a_mismatched_pair_fails(gpt1_vocab, tmp_path):
  path = gpt1_vocab.vocab_path
  loaded = vocab_lib.get_vocabulary(VocabConfig(type="bpe", path=path))
  assert isinstance(loaded, gpt1_bpe.OpenAIGPTBPEVocabulary) and loaded == gpt1_vocab
  assert vocab_lib.special_ids(loaded, ("eos", "unk")) == (1, 0)
  byte_level = tmp_path / "byte"
  byte_level.mkdir()
  symbols = {c: i for i, c in enumerate(bpe.bytes_to_unicode().values())}
  (byte_level / "vocab.json").write_text(json.dumps(dict(symbols, **{"\u0120t": 256})))
  (byte_level / "merges.txt").write_text("#version: 0.2\n\u0120 t\n")
  assert isinstance(gpt1_bpe.load_bpe(str(byte_level / "vocab.json")),
                    bpe.ByteLevelBPEVocabulary)
  mixed = tmp_path / "mixed"     # GPT-1's vocab.json with a byte-level merges.txt
  mixed.mkdir()
  shutil.copy(path, mixed / "vocab.json")
  shutil.copy(byte_level / "merges.txt", mixed / "merges.txt")
  with pytest.raises(ValueError, match=r"merges.txt:2: merge '\u0120 t' does not match "
                                       r".*vocab.json \(no token '\u0120' there\)"):
    vocab_lib.get_vocabulary(VocabConfig(type="bpe", path=str(mixed / "vocab.json")))
  with pytest.raises(ValueError, match="not a GPT-1 BPE vocabulary"):
    gpt1_bpe.OpenAIGPTBPEVocabulary(str(byte_level / "vocab.json"))


def test_openai_gpt_import_and_export_carry_the_vocabulary(gpt1_vocab, tmp_path):
  """HF OpenAIGPTLMHeadModel + tokenizer files -> import (export dir holds vocab.json +
  merges.txt, which the generate command reads as GPT-1's BPE) -> export (OpenAIGPTTokenizer
  loads them, same ids; the model's logits are unchanged)."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  from plm_jax.convert import cli, export
  from plm_jax.models import gpt_generate
  torch.manual_seed(0)
  hf_dir, ours, back = tmp_path / "hf", tmp_path / "export", tmp_path / "back"
  model = transformers.OpenAIGPTLMHeadModel(transformers.OpenAIGPTConfig(
      vocab_size=gpt1_vocab.vocab_size, n_positions=32, n_embd=32, n_layer=1, n_head=2)).eval()
  model.save_pretrained(hf_dir)
  export.save_tokenizer(str(hf_dir), gpt1_vocab)
  assert cli.main(["import", "--hf_dir", str(hf_dir), "--out", str(ours)]) == 0
  assert {"vocab.json", "merges.txt", "tokenizer_config.json"} <= set(os.listdir(ours))
  _, _, vocab = gpt_generate.load_model_and_vocab(str(ours))
  assert isinstance(vocab, gpt1_bpe.OpenAIGPTBPEVocabulary) and vocab == gpt1_vocab
  assert cli.main(["export", "--params", str(ours), "--out", str(back)]) == 0
  tok = transformers.AutoTokenizer.from_pretrained(str(back))
  text = "The river's mouth, 1,204 km away, froze in 1893."
  assert type(tok).__name__ == "OpenAIGPTTokenizer"
  ids = tok(text, add_special_tokens=False)["input_ids"]
  assert ids == gpt1_vocab.encode_ids(text)
  again = transformers.AutoModelForCausalLM.from_pretrained(str(back)).eval()
  with torch.no_grad():
    x = torch.tensor([ids])
    np.testing.assert_array_equal(again(x).logits.numpy(), model(x).logits.numpy())
