"""Chinese text for ERNIE: a character vocabulary learnt from a corpus, BERT-Chinese's
vocab.txt layout, ids equal to transformers' BertTokenizer (full-width punctuation too)."""
import os

import pytest

from plm_jax.data import paths, zh_vocab
from plm_jax.data import vocab as vocab_lib

transformers = pytest.importorskip("transformers")

LINES = [
    "选择珠江花园的原因就是方便，有电动扶梯直接到达海边。",
    "“你好！”他说：（这本书）《红楼梦》真好看？是的；好。",
    "15.4寸笔记本的键盘确实爽，ＡＢＣ１２３ Full-Width Ｌetters, café naïve",
    "价格￥1,299——很贵…… 【推荐】「不错」『很好』",
]


def _chnsenticorp_lines(n=300):
  path = os.path.join(paths.data_dir(), "chinese", "chnsenticorp", "dev.tsv")
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    rows = [line.rstrip("\n").split("\t", 1) for line in f][1:n + 1]
  return [r[1] for r in rows if len(r) == 2]


def test_learnt_vocab_is_characters_and_matches_hf_ids(tmp_path):
  texts = LINES * 3 + _chnsenticorp_lines()
  tokens = zh_vocab.build_vocab(texts, vocab_size=3000, min_count=1)
  assert tokens[:5] == list(zh_vocab.SPECIALS)
  assert "，" in tokens and "。" in tokens and "“" in tokens and "《" in tokens   # full-width P*
  assert all(len(t) == 1 or t.startswith("##") or t in zh_vocab.SPECIALS for t in tokens)
  assert "##e" in tokens and "f" in tokens                     # Latin words: c + ##c
  path = tmp_path / "vocab.txt"
  path.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
  ours = vocab_lib.WordPieceVocabulary(str(path), lowercase=True)
  hf = transformers.BertTokenizer(str(path), do_lower_case=True, tokenize_chinese_chars=True)
  lines = LINES + _chnsenticorp_lines()
  got = ours.encode_tf(lines).to_list()            # one graph call for every line
  for line, ids in zip(lines, got):
    assert ids == hf.encode(line, add_special_tokens=False), line
  ids = ours.encode(LINES[1])
  assert len(ids) == len([c for c in LINES[1] if not c.isspace()])   # one token a character
  assert ours.unk_id not in ours.encode(LINES[0])


def test_bert_chinese_vocab_layout_loads(tmp_path):
  """A vocab.txt laid out as bert-base-chinese's ([PAD], [unused1..99], [UNK], [CLS], [SEP],
  [MASK], <S>, <T>, characters, ##characters) serves the special roles by name."""
  chars = sorted(set("".join(LINES)) - {" "})
  tokens = (["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)] +
            ["[UNK]", "[CLS]", "[SEP]", "[MASK]", "<S>", "<T>"] + chars + ["##" + c for c in chars])
  path = tmp_path / "vocab.txt"
  path.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
  ours = vocab_lib.WordPieceVocabulary(str(path), lowercase=True)
  assert vocab_lib.special_ids(ours) == (0, 100, 101, 102, 103)
  hf = transformers.BertTokenizer(str(path), do_lower_case=True)
  assert ours.encode(LINES[1]) == hf.encode(LINES[1], add_special_tokens=False)
  repl = set(vocab_lib.replacement_ids(ours).tolist())
  assert 1 not in repl and 104 not in repl and 106 in repl     # no [unused1], no <S>


@pytest.mark.slow
def test_documented_ernie_zh_commands(tmp_path, monkeypatch):
  """The documented vocabulary / lexicon commands (the lexicon's input capped) and the
  configs/ernie_zh.py runs that read their files: both maskings resolve the vocabulary."""
  import shlex

  from plm_jax.data import ernie_lexicon
  from plm_jax.train.config import validate_config
  import doc_commands as docs
  if not os.path.isdir(os.path.join(paths.data_dir(), "pretrain", "zh")):
    pytest.skip("shared data bundle not mounted")
  monkeypatch.chdir(docs.REPO)
  fix = lambda c: [a.replace("/tmp/", f"{tmp_path}/") for a in shlex.split(c)]
  commands = [c for _, c in docs.all_commands()]
  for c in commands:
    if c.startswith("python -m plm_jax.data.zh_vocab"):
      assert zh_vocab.main(fix(c)[3:]) == 0
    elif c.startswith("python -m plm_jax.data.ernie_lexicon"):
      assert ernie_lexicon.main(fix(c)[3:] + ["--max_chars=100000"]) == 0
  runs = [c for c in commands if "configs/ernie_zh.py" in c and c.startswith("python main.py")]
  assert any("masking=bert" in c for c in runs) and len(runs) >= 2
  for c in runs:
    config, _ = docs.config_of(fix(c)[2:])
    _, objective = validate_config(config)
    assert objective.vocabulary().vocab_size > 3000, c
