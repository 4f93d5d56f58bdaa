"""ERNIE knowledge masking, unit sources and the ERNIE-format reader."""
import gzip
import os

import numpy as np
import pytest
import tensorflow as tf

from plm_jax.data import builtin, ernie_format, ernie_masking, ernie_pretrain, ernie_units
from plm_jax.data import paths
from plm_jax.data import vocab as vocab_lib

L = 48


@pytest.fixture(scope="module")
def vocabulary():
  return vocab_lib.WordPieceVocabulary(builtin.write_vocab(builtin.default_vocab_dir()))


def _random_units(rng, n, max_len):
  """ERNIE labels for n tokens: units of 1..max_len tokens, some tokens in no unit (-1)."""
  seg = []
  while len(seg) < n:
    if rng.random() < 0.1:
      seg.append(-1)
    else:
      seg += [0] + [1] * int(rng.integers(0, max_len))
  return seg[:n]


def _examples(vocabulary, count=240, seed=0):
  """Rows [CLS] x.. [SEP] y.. [SEP] + padding with phrase units (<= 3 tokens) and entity
  units (<= 6 tokens) of their own."""
  pad, cls, sep = vocab_lib.special_ids(vocabulary, ("pad", "cls", "sep"))
  repl = vocab_lib.replacement_ids(vocabulary)
  rng = np.random.default_rng(seed)
  rows = {k: [] for k in ("input_ids", "token_type_ids", "attention_mask", "next_sentence_label",
                          "phrase_seg", "entity_seg")}
  for _ in range(count):
    n = int(rng.integers(20, L - 3))
    a = int(rng.integers(5, n - 5))
    ids = np.full([L], pad, np.int32)
    body = rng.choice(repl, n)
    ids[:n + 3] = [cls, *body[:a], sep, *body[a:], sep]
    rows["input_ids"].append(ids)
    rows["token_type_ids"].append((np.arange(L) > a + 1).astype(np.int32) * (ids != pad))
    rows["attention_mask"].append((ids != pad).astype(np.int32))
    rows["next_sentence_label"].append(np.int32(0))
    for key, max_len in (("phrase_seg", 3), ("entity_seg", 6)):
      seg = np.full([L], -1, np.int32)
      labels = _random_units(rng, n, max_len)
      seg[1:a + 1], seg[a + 2:n + 2] = labels[:a], labels[a:]
      rows[key].append(seg)
  return tf.data.Dataset.from_tensor_slices({k: np.stack(v) for k, v in rows.items()})


def _units(seg, ids, specials):
  """Token index lists of each unit, as mask_units defines them."""
  units, current = [], None
  for i, (s, t) in enumerate(zip(seg, ids)):
    if t in specials or s < 0:
      current = None
      continue
    if s == 0 or current is None:
      current = [i]
      units.append(current)
    else:
      current.append(i)
  return units


def _mask(ds, vocabulary, starts=(0, 0, 0), per_step=1, level=None, max_predictions=12):
  return list(ernie_masking.knowledge_mask(
      ds, vocabulary=vocabulary, max_predictions=max_predictions, mask_rate=0.15,
      mask_token_prob=0.8, random_token_prob=0.1, level_starts=starts,
      examples_per_step=per_step, seed=3, fixed_level=level).as_numpy_iterator())


@pytest.mark.parametrize("level", ["phrase", "entity"])
def test_units_masked_whole_and_fraction_within_bounds(vocabulary, level):
  ds = _examples(vocabulary)
  specials = set(vocab_lib.special_ids(vocabulary, ("pad", "cls", "sep")))
  source = list(ds.as_numpy_iterator())
  out = _mask(ds, vocabulary, level=level)
  mask_id = vocabulary.token_to_id("[MASK]")
  chosen_total = tokens_total = multi = kept = masked = 0
  for src, ex in zip(source, out):
    n_pred = int(ex["masked_lm_weights"].sum())
    chosen = set(ex["masked_lm_positions"][:n_pred].tolist())
    units = _units(src[f"{level}_seg"], src["input_ids"], specials)
    for u in units:
      hit = [i in chosen for i in u]
      assert all(hit) or not any(hit), (u, sorted(chosen))     # never a partial unit
      multi += all(hit) and len(u) > 1
    assert chosen <= {i for u in units for i in u}               # only unit tokens
    n = int((src["input_ids"] != 0).sum())
    target = min(12, max(1, round(n * 0.15)))
    longest = max(len(u) for u in units)
    assert target - (longest - 1) <= n_pred <= target, (n_pred, target)
    np.testing.assert_array_equal(ex["masked_lm_ids"][:n_pred],
                                  src["input_ids"][ex["masked_lm_positions"][:n_pred]])
    for p in chosen:
      masked += ex["input_ids"][p] == mask_id
      kept += ex["input_ids"][p] == src["input_ids"][p]
    chosen_total += n_pred
    tokens_total += n
  assert multi > 50                      # whole multi-token units were masked
  frac = chosen_total / tokens_total
  assert 0.12 < frac <= 0.15, frac       # about 15% (greedy whole units undershoot a little)
  # 80 / 10 / 10 per token: 4-sigma binomial bounds on ~1,700 chosen tokens.
  for observed, p in ((masked, 0.8), (kept, 0.1)):
    sigma = (p * (1 - p) / chosen_total) ** 0.5
    assert abs(observed / chosen_total - p) < 4 * sigma + 0.005, (observed, chosen_total, p)


def test_stage_switches_at_configured_steps(vocabulary):
  ds = _examples(vocabulary, count=24, seed=1)
  source = list(ds.as_numpy_iterator())
  out = _mask(ds, vocabulary, starts=(0, 3, 5), per_step=4)   # steps 1-2 basic, 3-4 phrase
  levels = [int(ex["knowledge_level"]) for ex in out]
  assert levels == [0] * 8 + [1] * 8 + [2] * 8                 # example k is step k // 4 + 1
  specials = set(vocab_lib.special_ids(vocabulary, ("pad", "cls", "sep")))
  split_phrases = 0                   # basic stage: single tokens, so phrases get cut
  for src, ex in zip(source[:8], out[:8]):
    chosen = set(ex["masked_lm_positions"][:int(ex["masked_lm_weights"].sum())].tolist())
    for u in _units(src["phrase_seg"], src["input_ids"], specials):
      split_phrases += len({i in chosen for i in u}) == 2
  assert split_phrases > 0
  # Phrase stage: phrases whole; entity stage: entities whole.
  for src, ex in zip(source[8:16], out[8:16]):
    chosen = set(ex["masked_lm_positions"][:int(ex["masked_lm_weights"].sum())].tolist())
    for u in _units(src["phrase_seg"], src["input_ids"], specials):
      assert len({i in chosen for i in u}) == 1
  for src, ex in zip(source[16:], out[16:]):
    chosen = set(ex["masked_lm_positions"][:int(ex["masked_lm_weights"].sum())].tolist())
    for u in _units(src["entity_seg"], src["input_ids"], specials):
      assert len({i in chosen for i in u}) == 1
  assert ernie_pretrain.level_starts(_Cfg("bert"))[1] > 10**12   # BERT masking: basic only


class _Cfg:
  def __init__(self, masking):
    self.masking, self.phrase_from_step, self.entity_from_step = masking, 1, 2


def _flat(ragged):
  return [int(t) for row in ragged for t in row]


def test_segmenter_entities_longest_first_phrases_and_english(tmp_path, vocabulary):
  seg = ernie_units.Segmenter(phrases=["quiet morning"], entities=["New York", "New York City"])
  words, phrase, entity = seg.segment("the quiet morning in New York City was long")
  text = {w: (p, e) for w, p, e in zip(words, phrase, entity)}
  assert "".join(words) == "the quiet morning in New York City was long"
  i = words.index("New")
  assert entity[i:i + 5] == [0, 1, 1, 1, 1] and entity[i + 5] == -1     # the longer entity won
  assert phrase[i] == 0 and phrase[i + 2] == 0                          # words at phrase level
  j = words.index("quiet")
  assert phrase[j:j + 3] == [0, 1, 1] and text["the"] == (0, 0)
  zh = ernie_units.Segmenter(entities=["贾宝玉"])
  w, _, e = zh.segment("贾宝玉和林黛玉读书")
  assert "".join(w[:e.index(0, 1)]) == "贾宝玉"
  # Through the tf.data step: each word's first token takes its label, the rest 1.
  ds = tf.data.Dataset.from_tensors({"sentences": tf.constant(["a quiet morning in new york"])})
  out = next(ernie_units.segment_sentences(
      ds, segmenter=ernie_units.Segmenter(["quiet morning"], ["new york"]),
      vocabulary=vocabulary).as_numpy_iterator())
  toks = vocabulary.encode("a quiet morning in new york")
  assert _flat(out["tokens"]) == toks
  pieces = [vocabulary.id_to_token(t) for t in toks]
  expect_phrase = [0 if not p.startswith("##") else 1 for p in pieces]
  k = len(vocabulary.encode("a"))
  expect_phrase[k + len(vocabulary.encode("quiet"))] = 1                # "morning" continues
  assert _flat(out["phrase_seg"]) == expect_phrase
  n = len(vocabulary.encode("a quiet morning in"))
  assert _flat(out["entity_seg"])[n:] == [0] + [1] * (len(toks) - n - 1)


def test_unit_labels_travel_with_their_tokens(vocabulary):
  """create_unit_instances (BERT's pairs, truncation) keeps each token's labels."""
  rng = np.random.default_rng(0)
  repl = vocab_lib.replacement_ids(vocabulary)
  label_of = lambda t: (t % 3) - 1                          # a label each token id determines
  docs = []
  for _ in range(6):
    sents = [rng.choice(repl, int(rng.integers(3, 30))) for _ in range(int(rng.integers(2, 6)))]
    docs.append({"tokens": tf.ragged.constant(sents, dtype=tf.int32),
                 "phrase_seg": tf.ragged.constant([[label_of(t) for t in s] for s in sents]),
                 "entity_seg": tf.ragged.constant([[label_of(t + 1) for t in s] for s in sents])})
  ds = tf.data.Dataset.from_generator(
      lambda: iter(docs), output_signature={k: tf.RaggedTensorSpec([None, None], tf.int32, 1)
                                            for k in docs[0]})
  out = list(ernie_pretrain.create_unit_instances(
      ds, vocabulary=vocabulary, seq_length=32, group_size=3,
      short_seq_prob=0.1, nsp=True).as_numpy_iterator())
  specials = set(vocab_lib.special_ids(vocabulary, ("pad", "cls", "sep")))
  assert out
  for ex in out:
    for t, p, e in zip(ex["input_ids"], ex["phrase_seg"], ex["entity_seg"]):
      if t in specials:
        assert p == -1 and e == -1
      else:
        assert (p, e) == (label_of(t), label_of(t + 1))


def test_ernie_format_reproduces_segment_labels(tmp_path):
  lines = ["1 8 24 7 2 33 5 2;0 0 0 0 0 1 1 1;0 1 2 3 4 5 6 7;-1 0 1 0 -1 0 1 -1;1",
           "1 9 9 9 9 2 4 4 2;0 0 0 0 0 0 1 1 1;0 1 2 3 4 5 6 7 8;-1 0 1 1 0 -1 0 0 -1;0",
           "1 " + " ".join(["5"] * 20) + " 2;" + " ".join(["0"] * 22) + ";" +
           " ".join(map(str, range(22))) + ";" + " ".join(["0"] * 22) + ";1"]   # too long: skipped
  path = tmp_path / "part-0.gz"
  with gzip.open(path, "wt") as f:
    f.write("\n".join(lines) + "\n")
  arrays, skipped = ernie_format.load_arrays(str(path), 12)
  assert skipped == 1 and len(arrays["input_ids"]) == 2
  for k, line in enumerate(lines[:2]):
    fields = [list(map(int, x.split())) for x in line.split(";")]
    n = len(fields[0])
    assert arrays["seg"][k, :n].tolist() == fields[3] and (arrays["seg"][k, n:] == -1).all()
    assert arrays["input_ids"][k, :n].tolist() == fields[0]
    assert arrays["token_type_ids"][k, :n].tolist() == fields[1]
    assert arrays["next_sentence_label"][k] == 1 - fields[4][0]


@pytest.mark.parametrize("line,message", [
    ("1 2 3;0 0 0;0 1 2;-1 0 -1", r"x\.txt line 2: 4 ';'-separated field\(s\), expected 5"),
    ("1 2 3;0 0 0;0 1;-1 0 -1;1", r"x\.txt line 2: the fields' lengths disagree: token_ids 3, "
                                  r"sent_ids 3, pos_ids 2, seg_labels 3"),
    ("1 2 3;0 0 0;0 1 2;-1 2 -1;1", r"x\.txt line 2: seg_labels must be -1, 0 or 1"),
])
def test_ernie_format_bad_lines(tmp_path, line, message):
  path = tmp_path / "x.txt"
  path.write_text("1 2;0 0;0 1;-1 -1;1\n" + line + "\n")
  with pytest.raises(ValueError, match=message) as e:
    ernie_format.load_arrays(str(path), 16)
  assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_entity_lexicon_not_utf8(tmp_path):
  path = tmp_path / "entities.txt"
  path.write_bytes("贾宝玉\n".encode() + "林黛玉\n".encode("gbk"))
  with pytest.raises(ValueError, match=r"config.ernie.entity_lexicon: .*entities.txt line 2 "
                                       r"is not UTF-8") as e:
    ernie_units.make_segmenter(entities_path=str(path))
  assert "\n" not in str(e.value)


def test_learnt_phrases_by_pmi():
  docs = ["红楼 梦 的 故事 。 " * 6 + "我 的 书 。 你 的 笔 。 他 的 梦 。"]
  phrases = ernie_units.learn_phrases(docs, min_count=5, min_pmi=0.5)
  assert phrases and all(p.count(" ") <= 1 for p in phrases)
  assert phrases[0] == "红楼 梦"                                 # the highest PMI
  assert "我 的" not in phrases and "他 的" not in phrases        # seen once: under min_count


def _reference_segment(phrases, entities, text):
  """The unit matching written plainly: entities longest first at each character, then
  phrases as the longest run of up to 2 * PHRASE_MAX_WORDS - 1 words whose text is one."""
  words, phrase, entity, pos, i, spans = [], [], [], 0, 0, []
  lengths = sorted({len(e) for e in entities}, reverse=True)
  while i < len(text):
    n = next((n for n in lengths if text[i:i + n] in entities and i + n <= len(text)), 0)
    if n:
      spans.append((i, i + n))
    i += max(n, 1)
  for start, end in spans + [(len(text), len(text))]:
    run = ernie_units.cut(text[pos:start]) if start > pos else []
    labels = [(-1 if w.isspace() else 0) for w in run]
    k = 0
    while k < len(run):
      hit = [j for j in range(min(len(run), k + 2 * ernie_units.PHRASE_MAX_WORDS - 1), k + 1, -1)
             if phrases and ernie_units._is_word(run[k]) and ernie_units._is_word(run[j - 1])
             and "".join(run[k:j]) in phrases]
      if hit:
        labels[k + 1:hit[0]] = [1] * (hit[0] - k - 1)
      k = hit[0] if hit else k + 1
    words, phrase, entity = words + run, phrase + labels, entity + labels
    inner = ernie_units.cut(text[start:end]) if end > start else []
    words += inner
    phrase += [(-1 if w.isspace() else 0) for w in inner]
    entity += [0] + [1] * (len(inner) - 1) if inner else []
    pos = end
  return words, phrase, entity


def test_segmenter_matches_the_plain_matching_on_real_text():
  """The segmenter's look-up filters (start characters, phrase lengths) change nothing:
  real ChnSentiCorp reviews, with lexicons learnt from them, against the plain matching."""
  lines = [line.split("\t", 1)[1] for line in _chnsenticorp_dev(200)]
  phrases = ernie_units.learn_phrases(lines, min_count=2, min_pmi=1.0)
  entities = ernie_units.learn_entities(lines, min_count=1) + ["酒店", "房间很"]
  assert len(phrases) > 20 and len(entities) > 10
  seg = ernie_units.Segmenter(phrases, entities)
  units = 0
  for text in lines:
    got = seg.segment(text)
    assert got == _reference_segment(frozenset(phrases), frozenset(entities), text), text
    units += got[1].count(1) + got[2].count(1)
  assert units > 100        # phrases and entities were found, not only single words


def _chnsenticorp_dev(n):
  path = os.path.join(paths.data_dir(), "chinese", "chnsenticorp", "dev.tsv")
  if not os.path.isfile(path):
    pytest.skip(f"{path} is absent")
  with open(path, encoding="utf-8") as f:
    return f.read().splitlines()[1:n + 1]
