"""BERT MLM + NSP pipeline: shapes, masking statistics, NSP, determinism."""
import numpy as np
import pytest
import tensorflow as tf

import mlm_batches
from configs import bert
from plm_jax.data import builtin
from plm_jax.data import feature_converters
from plm_jax.data import stats
from plm_jax.data import vocab as vocab_lib

L, P = 64, 10
NAMES = set(builtin.NAMES)


def _config(**mlm):
  c = bert.get_config("tiny")
  c.data.seq_length = L
  c.mlm.max_predictions = P
  c.data.shuffle_buffer = 500
  for k, v in mlm.items():
    c.mlm[k] = v
  return c


_take, _originals = mlm_batches.take, mlm_batches.originals


@pytest.fixture(scope="module")
def vocab():
  return mlm_batches.vocabulary(_config())


@pytest.fixture(scope="module")
def batches():
  return _take(mlm_batches.dataset(_config(), "train", 32, seed=0), 100)   # 3,200 examples


def test_shapes_and_dtypes():
  ds = mlm_batches.dataset(_config(), "train", 8, seed=0)
  spec = ds.element_spec
  # Validation keeps its last partial batch (the trainer pads it): batch dim unknown.
  assert mlm_batches.dataset(_config(), "validation", 8, seed=0).element_spec[
      "input_ids"].shape.as_list() == [None, L]
  assert spec["input_ids"].shape == (8, L) and spec["input_ids"].dtype == tf.int32
  assert spec["token_type_ids"].shape == (8, L) and spec["attention_mask"].shape == (8, L)
  for k in ("masked_lm_positions", "masked_lm_ids"):
    assert spec[k].shape == (8, P) and spec[k].dtype == tf.int32
  assert spec["masked_lm_weights"].dtype == tf.float32
  assert spec["next_sentence_label"].shape == (8,) and spec["next_sentence_label"].dtype == tf.int32


def test_structure_cls_a_sep_b_sep(batches, vocab):
  pad, _, cls, sep, _ = vocab_lib.special_ids(vocab)
  ids = _originals(batches)
  for i in range(200):
    n = batches["attention_mask"][i].sum()
    assert (batches["attention_mask"][i][:n] == 1).all() and (ids[i][n:] == pad).all()
    assert ids[i][0] == cls and ids[i][n - 1] == sep
    seps = np.flatnonzero(ids[i][:n] == sep)
    assert len(seps) == 2
    types = batches["token_type_ids"][i]
    assert (types[:seps[0] + 1] == 0).all() and (types[seps[0] + 1:n] == 1).all()
    assert (types[n:] == 0).all()


def test_masking_statistics(batches, vocab):
  pad, _, cls, sep, mask = vocab_lib.special_ids(vocab)
  w = batches["masked_lm_weights"] > 0
  real = batches["attention_mask"].sum()
  assert 0.13 < w.sum() / real < 0.17
  targets = batches["masked_lm_ids"][w]
  assert not np.isin(targets, [pad, cls, sep]).any()           # specials/padding never chosen
  assert (batches["masked_lm_ids"][~w] == 0).all() and (batches["masked_lm_positions"][~w] == 0).all()
  for i in range(len(w)):
    pos = batches["masked_lm_positions"][i][w[i]]
    assert (np.diff(pos) > 0).all()                            # sorted and unique
    assert (batches["attention_mask"][i][pos] == 1).all()
  rows = np.repeat(np.arange(len(w)), w.sum(1))
  shown = batches["input_ids"][rows, batches["masked_lm_positions"][w]]
  frac_mask = (shown == mask).mean()
  frac_same = (shown == targets).mean()
  assert 0.77 < frac_mask < 0.83
  assert 0.08 < frac_same < 0.13         # 10% kept + random draws that hit the original
  assert 0.07 < 1 - frac_mask - frac_same < 0.12
  # Random replacements are never special tokens.
  assert not np.isin(shown[shown != mask], [pad, cls, sep, mask]).any()
  assert 0 < stats.unigram_baseline_accuracy([batches]) < 0.5


def test_nsp_labels(batches, vocab):
  labels = batches["next_sentence_label"]
  assert 0.42 < labels.mean() < 0.6
  ids = _originals(batches)
  _, _, _, sep, _ = vocab_lib.special_ids(vocab)
  two_names = {0: 0, 1: 0}
  for i in range(len(ids)):
    s = np.flatnonzero(ids[i] == sep)
    a = {vocab.tokens[t] for t in ids[i][1:s[0]]} & NAMES
    b = {vocab.tokens[t] for t in ids[i][s[0] + 1:s[1]]} & NAMES
    if a and b:
      two_names[int(labels[i])] += int(a != b)
      if labels[i] == 0:     # the actual continuation: same story, same protagonist
        assert a == b, (vocab.decode(ids[i]), a, b)
  assert two_names[1] > 300   # random segments mostly come from another story


def test_determinism_across_calls_and_seeds():
  a = _take(mlm_batches.dataset(_config(), "train", 16, seed=3), 3)
  b = _take(mlm_batches.dataset(_config(), "train", 16, seed=3), 3)
  c = _take(mlm_batches.dataset(_config(), "train", 16, seed=4), 3)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  assert not np.array_equal(a["input_ids"], c["input_ids"])
  s0 = _take(mlm_batches.dataset(_config(), "train", 16, seed=3, shard_index=0,
                                       num_shards=2), 2)
  s1 = _take(mlm_batches.dataset(_config(), "train", 16, seed=3, shard_index=1,
                                       num_shards=2), 2)
  assert not np.array_equal(s0["input_ids"], s1["input_ids"])
  v1 = _take(mlm_batches.dataset(_config(), "validation", 16, seed=1), 2)
  v2 = _take(mlm_batches.dataset(_config(), "validation", 16, seed=2), 2)
  np.testing.assert_array_equal(v1["input_ids"], v2["input_ids"])   # fixed eval seed


def _tiny_text_config(tmp_path, **mlm):
  f = tmp_path / "tiny.txt"
  f.write_text("\n\n".join(builtin.generate_document(i, seed=7) for i in range(12)))
  c = _config(**mlm)
  c.data.corpus.type = "text"
  c.data.corpus.paths = str(f)
  c.data.corpus.eval_every_nth = 6
  c.data.shuffle_buffer = 0
  return c


def test_dynamic_masking_across_epochs(tmp_path):
  c = _tiny_text_config(tmp_path, nsp=False, short_seq_prob=0.0)
  one = _take(mlm_batches.dataset(c, "train", 1, seed=0, num_epochs=1), 10_000)
  n = len(one["input_ids"])
  two = _take(mlm_batches.dataset(c, "train", 1, seed=0, num_epochs=2), 2 * n)
  assert (two["next_sentence_label"] == 0).all() and (two["token_type_ids"] == 0).all()
  e1, e2 = _originals({k: v[:n] for k, v in two.items()}), _originals({k: v[n:] for k, v in two.items()})
  np.testing.assert_array_equal(e1, e2)                   # same text every epoch ...
  np.testing.assert_array_equal(e1, _originals(one))
  same = (two["masked_lm_positions"][:n] == two["masked_lm_positions"][n:]).all(1)
  assert same.mean() < 0.2                                # ... masked differently


def test_whole_word_masking(tmp_path, vocab):
  b = _take(mlm_batches.dataset(_config(whole_word_masking=True), "train", 32, seed=0), 20)
  cont = vocab_lib.continuation_mask(vocab)
  ids = _originals(b)
  w = b["masked_lm_weights"] > 0
  checked = 0
  for i in range(len(ids)):
    chosen = np.zeros(L, bool)
    chosen[b["masked_lm_positions"][i][w[i]]] = True
    for p in np.flatnonzero(chosen):
      if cont[ids[i][p]] and ids[i][p - 1] not in (2, 3):     # a '##' piece: its word start too
        assert chosen[p - 1], "'##' piece masked without the rest of its word"
      if p + 1 < L and cont[ids[i][p + 1]]:
        assert chosen[p + 1], "word start masked without its '##' piece"
        checked += 1
  assert checked > 50
  assert 0.12 < w.sum() / b["attention_mask"].sum() < 0.17


def test_corpus_errors(tmp_path):
  c = _config()
  c.data.corpus.type = "text"
  c.data.corpus.paths = str(tmp_path / "missing_*.txt")
  with pytest.raises(ValueError, match=r"config\.data\.corpus\.paths.*missing_\*\.txt"):
    mlm_batches.dataset(c, "train", 4, seed=0)
  c = _tiny_text_config(tmp_path)
  c.data.corpus.eval_every_nth = 100
  with pytest.raises(ValueError, match="eval_every_nth"):
    mlm_batches.dataset(c, "validation", 4, seed=0)


def test_feature_converter_rejects_bad_features():
  ds = tf.data.Dataset.from_tensors({"input_ids": tf.zeros([L], tf.int64)})
  with pytest.raises(ValueError):
    feature_converters.BertPretrainFeatureConverter()(ds, {"inputs": L, "masked_lm": P})


def test_greedy_take_skips_words_that_overflow_and_tries_later_ones():
  from plm_jax.data import preprocessors  # pylint: disable=import-outside-toplevel
  def take(lengths, valid, budget, unit=False):
    return preprocessors.greedy_take(tf.constant(lengths, tf.int32), tf.constant(valid),
                                     tf.constant(budget, tf.int32), unit_lengths=unit).numpy().tolist()
  # 2 fits (2), the next 2 would make 4 > 3 and is skipped, 1 still fits (3).
  assert take([2, 2, 1, 1], [True] * 4, 3) == [True, False, True, False]
  assert take([3, 1, 2, 1], [True] * 4, 3) == [True, False, False, False]
  assert take([4, 1, 1], [True] * 3, 3) == [False, True, True]
  assert take([1, 1, 1], [True, False, True], 2) == [True, False, True]   # invalid never taken
  assert take([1, 1, 1, 1], [True] * 4, 2, unit=True) == [True, True, False, False]
