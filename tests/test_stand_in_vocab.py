"""Stand-in vocabularies (plm_jax.data.stand_in_vocab): a prepare step's layout and size, for
the dry run of a comparison whose vocabularies are not learnt yet."""
import json

import pytest

from plm_jax.data import bpe_train, gpt1_bpe, spm_train, vocab, zh_vocab


@pytest.mark.parametrize("layout", ["bert", "t5"])
def test_sentencepiece_stand_in_has_the_layout_and_size(tmp_path, layout):
  path = spm_train.stand_in(["--input", "/no/such/corpus", "--model_prefix",
                             str(tmp_path / "spm"), "--vocab_size", "3000",
                             "--layout", layout])
  v = vocab.SentencePieceVocabulary(path)
  assert v.vocab_size == 3000
  if layout == "bert":
    assert vocab.special_ids(v) == (0, 1, 2, 3, 4)     # [PAD] [UNK] [CLS] [SEP] [MASK]
  else:
    assert (v.pad_id, v.eos_id, v.unk_id) == (0, 1, 2)  # <pad> </s> <unk>
    assert [v.id_to_token(i) for i in range(3)] == ["<pad>", "</s>", "<unk>"]
  pieces = [v.id_to_token(i) for i in range(v.vocab_size)]
  assert len(set(pieces)) == 3000


def test_byte_level_bpe_stand_in_loads_as_byte_level(tmp_path):
  path = bpe_train.stand_in(["--input", "/no/such/corpus", "--out_dir", str(tmp_path),
                             "--vocab_size", "50265"])
  v = gpt1_bpe.load_bpe(path)
  assert type(v).__name__ == "ByteLevelBPEVocabulary" and v.vocab_size == 50265
  with open(path, encoding="utf-8") as f:
    tokens = json.load(f)
  assert [tokens[t] for t in bpe_train.SPECIALS] == [0, 1, 2, 3, 4]
  assert v.decode(v.encode("any text, bytes and all")) == "any text, bytes and all"


def test_gpt1_bpe_stand_in_loads_as_gpt1(tmp_path):
  path = bpe_train.stand_in(["--input", "/no/such/corpus", "--out_dir", str(tmp_path),
                             "--vocab_size", "40478", "--kind", "gpt1"])
  v = gpt1_bpe.load_bpe(path)
  assert isinstance(v, gpt1_bpe.OpenAIGPTBPEVocabulary) and v.vocab_size == 40478
  assert v.eos_id == 1 and v.unk_id == 0


def test_wordpiece_stand_in_and_bad_sizes(tmp_path):
  path = zh_vocab.stand_in(["--input", "/no/such", "--out", str(tmp_path / "v.txt"),
                            "--vocab_size", "18000"])
  v = vocab.WordPieceVocabulary(path)
  assert v.vocab_size == 18000 and vocab.special_ids(v) == (0, 1, 2, 3, 4)
  with pytest.raises(ValueError, match=r"--vocab_size: a WordPiece vocabulary needs more "
                     r"than its 5 special tokens, got 5"):
    zh_vocab.stand_in(["--input", "x", "--out", str(tmp_path / "w.txt"), "--vocab_size", "5"])
  with pytest.raises(ValueError, match=r"--vocab_size: a stand-in byte-level BPE holds at "
                     r"most 65797 tokens, got 70000"):
    bpe_train.stand_in(["--input", "x", "--out_dir", str(tmp_path), "--vocab_size", "70000"])
