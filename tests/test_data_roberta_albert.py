"""RoBERTa and ALBERT inputs: FULL-/DOC-SENTENCES packing, dynamic masking, sentence-order
pairs and n-gram masking, each checked against what it must produce (statistical bounds)."""
import itertools

import numpy as np
import pytest

from configs import albert, roberta
from plm_jax.configlib import ConfigError
from plm_jax.data import albert_pretrain, preprocessors
from plm_jax.objectives.base import get_objective

CLS, SEP, PAD, MASK = 2, 3, 0, 4
SPECIALS = np.asarray([PAD, CLS, SEP])


def _documents(num_docs, rng):
  """Sentences whose tokens name them: token = 1000 * (doc + 1) + 10 * sentence + k."""
  docs = []
  for d in range(num_docs):
    docs.append([[1000 * (d + 1) + 10 * s + k for k in range(int(rng.integers(1, 9)))]
                 for s in range(int(rng.integers(1, 12)))])
  return docs


def _ragged(docs):
  flat = [t for doc in docs for sent in doc for t in sent]
  doc_splits = np.cumsum([0] + [len(doc) for doc in docs])
  sent_splits = np.cumsum([0] + [len(sent) for doc in docs for sent in doc])
  return np.asarray(flat, np.int32), doc_splits, sent_splits


@pytest.mark.parametrize("cross", [True, False], ids=["full_sentences", "doc_sentences"])
def test_sentence_packing_fills_rows_and_crosses_documents_only_at_separators(cross):
  rng = np.random.default_rng(0)
  length, budget = 32, 30
  for trial in range(20):
    docs = _documents(12, rng)
    ids = preprocessors._full_sentences_np(*_ragged(docs), seq_length=length, cls_id=CLS,  # pylint: disable=protected-access
                                           sep_id=SEP, pad_id=PAD, cross_documents=cross)
    # Every sentence appears once, in order, whole (sentences here fit the budget).
    body = [r[1:list(r).index(SEP, len(r) - list(r[::-1]).index(SEP) - 1)] for r in ids.tolist()]
    flat = [t for row in body for t in row if t != SEP]
    assert flat == [t for doc in docs for sent in doc for t in sent]
    for r, row in enumerate(body):
      real = [t for t in row if t != SEP]
      owners = [t // 1000 for t in real]
      # Within a row, a change of document is always preceded by a separator.
      for i in range(1, len(row)):
        if row[i] != SEP and row[i - 1] != SEP:
          assert row[i] // 1000 == row[i - 1] // 1000
      if not cross:
        assert len(set(owners)) == 1
      if r + 1 < len(body):   # full: the next row's first sentence would not have fitted
        nxt = body[r + 1]
        first_len = sum(1 for t in itertools.takewhile(
            lambda t, s=nxt[0] // 10: t // 10 == s, nxt))
        same_doc = nxt[0] // 1000 == real[-1] // 1000
        if cross or same_doc:
          assert len(row) + first_len > budget, (trial, r)


def test_sop_pairs_are_consecutive_segments_balanced_and_labelled():
  rng = np.random.default_rng(1)
  labels = []
  for trial in range(40):
    docs = _documents(16, rng)
    ids, types, label = albert_pretrain._sop_instances_np(  # pylint: disable=protected-access
        *_ragged(docs), [trial, 3], seq_length=48, short_seq_prob=0.1, cls_id=CLS, sep_id=SEP,
        pad_id=PAD)
    for row, tt, lab in zip(ids.tolist(), types.tolist(), label.tolist()):
      first_sep = row.index(SEP)
      a, b = row[1:first_sep], [t for t in row[first_sep + 1:] if t not in (SEP, PAD)]
      assert a and b and row[0] == CLS and tt[first_sep + 1] == 1 and tt[first_sep] == 0
      assert len({t // 1000 for t in a + b}) == 1            # one document
      first, second = (b, a) if lab else (a, b)
      # In text order, `first` ends right where `second` begins (possibly trimmed ends).
      assert max(first) < min(second)
      labels.append(lab)
  n, swapped = len(labels), sum(labels)
  assert n > 300 and abs(swapped - n / 2) < 3.5 * np.sqrt(n / 4), (swapped, n)


def _mask(ids, seed, **kw):
  args = dict(max_predictions=128, mask_rate=0.15, mask_token_prob=0.8, random_token_prob=0.1,
              max_ngram=3, special_ids=SPECIALS, pad_id=PAD, mask_id=MASK,
              replacement_ids=np.arange(10, 1000), return_spans=True)
  args.update(kw)
  return albert_pretrain.ngram_mask_np(ids, seed, **args)


def _rows(rng, n):
  for _ in range(n):
    length = int(rng.integers(60, 128))
    ids = np.full(128, PAD)
    ids[:length] = rng.integers(10, 1000, length)
    ids[0], ids[length - 1] = CLS, SEP
    yield ids, length


def test_ngram_masking_units_budget_replacements_and_one_over_n():
  rng = np.random.default_rng(2)
  used, kinds = [], np.zeros(3)
  for e, (ids, length) in enumerate(_rows(rng, 800)):
    out, pos, lab, w, spans, units = _mask(ids, [e, 5])
    k = int(w.sum())
    assert k == round(length * 0.15)                       # the budget, exactly
    chosen = sorted(p for s, _, n in spans for u in units[s:s + n] for p in u)
    assert pos[:k].tolist() == chosen and (lab[:k] == ids[pos[:k]]).all()
    assert not np.isin(ids[pos[:k]], SPECIALS).any()
    for s, drawn, n in spans:                              # contiguous, whole, n <= drawn <= 3
      assert 1 <= n <= drawn <= 3
      span = [p for u in units[s:s + n] for p in u]
      assert span == list(range(span[0], span[0] + len(span)))
    used += [n for _, _, n in spans]
    new = out[pos[:k]]
    kinds += [(new == MASK).sum(), ((new != MASK) & (new != ids[pos[:k]])).sum(),
              (new == ids[pos[:k]]).sum()]
    assert (np.delete(out, pos[:k]) == np.delete(ids, pos[:k])).all()   # the rest unchanged
  total = kinds.sum()
  for observed, p in zip(kinds / total, (0.8, 0.1 * 999 / 990, 0.1)):
    assert abs(observed - p) < 4 * np.sqrt(p * (1 - p) / total) + 0.002, (kinds / total)
  # The drawn n follow p(n) = (1/n) / H_3 exactly; the n-grams actually masked lean shorter
  # (ALBERT's algorithm skips n-grams that overlap and shortens the last one), measured
  # here at 15% masking: about 0.60 / 0.26 / 0.14.
  draws = albert_pretrain.draw_ngram_lengths(200_000, 3, np.random.default_rng(3))
  expected = albert_pretrain.ngram_probabilities(3)
  counts = np.bincount(draws[:-2], minlength=4)[1:]
  chi2 = (((counts - expected * counts.sum()) ** 2) / (expected * counts.sum())).sum()
  assert chi2 < 13.8, (counts / counts.sum())              # p = 0.001 at 2 dof
  realised = np.bincount(used, minlength=4)[1:] / len(used)
  assert 0.55 < realised[0] < 0.65 and 0.22 < realised[1] < 0.30 and 0.11 < realised[2] < 0.18, realised


def test_ngram_whole_word_units_are_never_split():
  rng = np.random.default_rng(4)
  is_cont = np.zeros(1000, bool)
  is_cont[500:] = True                                     # ids >= 500 continue a word
  for e, (ids, _) in enumerate(_rows(rng, 100)):
    out, pos, lab, w, spans, units = _mask(ids, [e, 9], is_continuation=is_cont)
    masked = set(pos[:int(w.sum())].tolist())
    for u in units:
      assert set(u) <= masked or not set(u) & masked
      assert all(is_cont[ids[p]] for p in u[1:])


def test_roberta_dynamic_masking_over_the_pipeline():
  c = roberta.get_config("tiny")
  c.data.shuffle_buffer = 0
  objective = get_objective(c)
  ds = objective.get_dataset("train", 16, seed=0)
  batches = list(ds.take(6).as_numpy_iterator())
  assert "next_sentence_label" not in batches[0]
  ids = np.concatenate([b["input_ids"] for b in batches])
  w = np.concatenate([b["masked_lm_weights"] for b in batches])
  pos = np.concatenate([b["masked_lm_positions"] for b in batches])
  real = np.concatenate([b["attention_mask"] for b in batches]).sum(1)
  expect = np.minimum(c.mlm.max_predictions, np.maximum(1, np.round(real * 0.15)))
  assert (w.sum(1) == expect).all()
  v = objective.vocabulary()
  cls, sep = v.token_to_id("[CLS]"), v.token_to_id("[SEP]")
  chosen = np.take_along_axis(ids, pos, 1)[w > 0]
  assert not np.isin(chosen, [cls, sep]).any()
  # Rows are full (tokens up to seq_length minus at most one sentence) and the masks are
  # drawn anew each time: the first rows of a second pass (a new seed) mask other positions.
  assert np.median(real) > 0.8 * c.data.seq_length
  again = next(objective.get_dataset("train", 16, seed=1).as_numpy_iterator())
  assert not np.array_equal(again["masked_lm_positions"], batches[0]["masked_lm_positions"])


def test_albert_groups_that_do_not_divide_the_layers_are_a_config_error():
  c = albert.get_config("tiny")
  c.model.num_hidden_groups = 3
  with pytest.raises(ConfigError, match=r"config.model.num_hidden_groups=3: the sharing groups "
                                        r"must divide num_layers=4") as e:
    get_objective(c)
  assert "\n" not in str(e.value)
