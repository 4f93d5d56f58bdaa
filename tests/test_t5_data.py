"""T5 span corruption: lengths, sentinels, exact reconstruction, noise statistics, and the
seqio task + EncDecFeatureConverter batches (packed and not)."""
import math

import numpy as np
import pytest
import seqio
import tensorflow as tf

from plm_jax.data import builtin, spm_train
from plm_jax.data import t5_pretrain as t5data
from plm_jax.data.config import CorpusConfig, VocabConfig
from plm_jax.objectives.t5_pretrain import T5DataConfig, t5_vocabulary

VOCAB = 1000


def _py_noise(length):
  """The t5 library's length arithmetic (Python floats, as its random_spans_helper)."""
  noise = int(round(length * 0.15))
  return noise, int(round(noise / 3.0))


def test_lengths_fill_the_configured_sizes():
  assert t5data.random_spans_helper(512, 0.15, 3.0) == (568, 114)   # the T5 paper's setting
  for inputs in (64, 100, 128, 333, 512, 1024):
    raw, targets = t5data.random_spans_helper(inputs, 0.15, 3.0)
    noise, spans = _py_noise(raw)
    assert raw - noise + spans + 1 == inputs          # inputs: kept + sentinels + EOS
    assert noise + spans + 1 == targets               # targets: spans + sentinels + EOS
    more_noise, more_spans = _py_noise(raw + 1)
    assert raw + 1 - more_noise + more_spans + 1 > inputs   # raw is the largest that fits


def _corrupt(lengths, seed=0):
  docs = [np.arange(n, dtype=np.int32) + 3 for n in lengths]      # token i -> i + 3, unique
  ds = tf.data.Dataset.from_generator(
      lambda: ({"targets": d} for d in docs),
      output_signature={"targets": tf.TensorSpec([None], tf.int32)})
  with seqio.utils.map_seed_manager(seed):
    out = t5data.denoise(ds, VOCAB, 0.15, 3.0)
  return docs, list(out.as_numpy_iterator())


def _reassemble(inputs, targets):
  """Inputs with each sentinel replaced by the tokens after the same sentinel in targets."""
  spans, current = {}, None
  for t in targets:
    if t >= VOCAB - 100:
      current = int(t)
      spans[current] = []
    else:
      spans[current].append(int(t))
  out = []
  for t in inputs:
    out.extend(spans[int(t)] if t >= VOCAB - 100 else [int(t)])
  return out


def test_span_corruption_reconstructs_and_sentinels_descend():
  lengths = [5 + (7 * i) % 300 for i in range(150)]
  docs, examples = _corrupt(lengths)
  span_lengths, first_is_noise = [], 0
  for doc, ex in zip(docs, examples):
    inputs, targets = ex["inputs"], ex["targets"]
    assert _reassemble(inputs, targets) == doc.tolist()      # every token exactly once
    s_in = [int(t) for t in inputs if t >= VOCAB - 100]
    s_tg = [int(t) for t in targets if t >= VOCAB - 100]
    assert s_in == s_tg == list(range(VOCAB - 1, VOCAB - 1 - len(s_in), -1))
    assert targets[0] == VOCAB - 1                          # targets start with <extra_id_0>
    noise, spans = t5data.expected_noise(len(doc), 0.15, 3.0)
    assert len(s_in) == spans and len(targets) - spans == noise
    assert len(inputs) == len(doc) - noise + spans
    first_is_noise += inputs[0] >= VOCAB - 100
    marks = np.flatnonzero(targets >= VOCAB - 100).tolist() + [len(targets)]
    span_lengths.extend(np.diff(marks) - 1)
  assert first_is_noise == 0                                # spans start with non-noise
  assert min(span_lengths) >= 1
  assert abs(np.mean(span_lengths) - 3.0) < 0.15


def test_noise_span_lengths_follow_random_segmentation():
  """15 noise tokens of a 100-token example in 5 spans: every split into 5 positive parts is
  equally likely, so P(span length 1) = C(13, 3) / C(14, 4) = 2/7 and P(k) = C(14-k, 3) / C(14, 4)."""
  docs, examples = _corrupt([100] * 400, seed=3)
  counts = np.zeros(12)
  for ex in examples:
    t = ex["targets"]
    marks = np.flatnonzero(t >= VOCAB - 100).tolist() + [len(t)]
    for n in np.diff(marks) - 1:
      counts[n] += 1
  total = counts.sum()
  assert total == 400 * 5
  for k in (1, 2, 3, 4, 6):
    p = math.comb(14 - k, 3) / math.comb(14, 4)
    sd = math.sqrt(p * (1 - p) / total)
    assert abs(counts[k] / total - p) < 5 * sd, (k, counts[k] / total, p)
  # Noise positions: no position is favoured beyond chance (except the first, never noise).
  rate = np.zeros(100)
  for doc, ex in zip(docs, examples):
    mask = np.ones(100, bool)
    kept = [int(t) - 3 for t in ex["inputs"] if t < VOCAB - 100]
    mask[kept] = False
    rate += mask
  rate /= len(examples)
  assert rate[0] == 0.0 and abs(rate[1:].mean() - 15 / 99) < 0.01
  assert np.abs(rate[10:90] - 0.15).max() < 5 * math.sqrt(0.15 * 0.85 / 400)


@pytest.fixture(scope="module")
def t5_spm(tmp_path_factory):
  d = tmp_path_factory.mktemp("spm")
  text = d / "builtin.txt"
  text.write_text("\n\n".join(builtin.iter_documents(300, seed=0)))
  spm_train.train(str(text), str(d / "t5"), 120, layout="t5", max_sentences=3000)
  return str(d / "t5.model")


@pytest.mark.parametrize("pack", [False, True], ids=["unpacked", "packed"])
def test_task_batches(t5_spm, pack):
  vocab = t5_vocabulary(VocabConfig(path=t5_spm), extra_ids=100)
  assert (vocab.pad_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2)
  # seqio appends the sentinels to the SentencePiece model: <extra_id_0> is the last id.
  assert vocab.vocab_size == 120 + 100
  assert vocab.id_to_token(vocab.vocab_size - 1).endswith("<extra_id_0>")   # seqio: "▁<extra_id_0>"
  assert vocab.id_to_token(vocab.vocab_size - 100).endswith("<extra_id_99>")
  data = T5DataConfig(inputs_length=64, targets_length=16, pack=pack, shuffle_buffer=100,
                      corpus=CorpusConfig(eval_every_nth=20))
  ds = t5data.get_dataset(data, vocab, "train", batch_size=8, seed=1)
  batch = next(iter(ds.as_numpy_iterator()))
  enc, tgt = batch["encoder_input_tokens"], batch["decoder_target_tokens"]
  assert enc.shape == (8, 64) and tgt.shape == (8, 16)
  v = vocab.vocab_size
  if not pack:
    # Rows fill all 64 input positions and end with EOS (the raw length was chosen for
    # that; only the last piece of 128 concatenated documents is shorter); targets start
    # with <extra_id_0> and end with EOS: 14 tokens (random_spans_helper(64) = (70, 14)).
    full = (enc > 0).all(1)
    assert full.sum() >= 6 and (enc[full, -1] == 1).all()
    assert (tgt[:, 0] == v - 1).all()
    n = (tgt > 0).sum(1)
    assert (tgt[np.arange(8), n - 1] == 1).all() and (n[full] == 14).all()
    np.testing.assert_array_equal(batch["decoder_input_tokens"][:, 1:], tgt[:, :-1])
    assert (batch["decoder_input_tokens"][:, 0] == 0).all()
  else:
    assert {"encoder_segment_ids", "decoder_segment_ids", "encoder_positions",
            "decoder_positions"} <= set(batch)
    seg = batch["decoder_segment_ids"]
    starts = (batch["decoder_positions"] == 0) & (seg > 0)
    assert (batch["decoder_input_tokens"][starts] == 0).all()   # shifted within a segment
    assert (batch["decoder_loss_weights"] == (seg > 0)).all()
  assert int(enc.max()) < v
