"""ELMo biLM pretraining: character ids (bilm-tf's layout, TF = NumPy), tokens and the word
vocabulary, batches, the forward + backward LM loss against a direct computation, the
sampled softmax, and continuing from a bilm-tf model."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from configs import elmo as elmo_configs
from plm_jax.configlib import ConfigError
from plm_jax.data import elmo_chars, paths
from plm_jax.objectives import elmo_pretrain

MODEL_DIR = os.path.join(paths.data_dir(), "elmo", "bilm-tf-test-model")
WORDS = ["ab", "<S>", "</S>", "Göteborg", "x" * 60, ".", "naïve", "<UNK>"]


def test_char_ids_have_bilm_tfs_layout_in_numpy_and_tensorflow():
  ab = elmo_chars.word_char_ids("ab", 50)
  np.testing.assert_array_equal(ab[:5], [259, 98, 99, 260, 261])   # BOW a b EOW PAD, all +1
  assert np.all(ab[4:] == 261) and ab.shape == (50,)
  np.testing.assert_array_equal(elmo_chars.word_char_ids("<S>")[:4], [259, 257, 260, 261])
  np.testing.assert_array_equal(elmo_chars.word_char_ids("</S>")[:4], [259, 258, 260, 261])
  long = elmo_chars.word_char_ids("x" * 60)
  assert np.all(long[1:49] == ord("x") + 1) and long[49] == 260        # 48 bytes kept
  assert list(elmo_chars.word_char_ids("é")[1:4]) == [0xC3 + 1, 0xA9 + 1, 260]
  got = elmo_chars.tf_word_char_ids(tf.constant(WORDS), 50).numpy()
  np.testing.assert_array_equal(got, np.stack([elmo_chars.word_char_ids(w) for w in WORDS]))
  batch = elmo_chars.batch_to_char_ids([["ab", "."], ["ab"]])
  assert batch.shape == (2, 4, 50) and np.all(batch[1, 3] == 0)        # a padding token
  np.testing.assert_array_equal(batch[0, 0], elmo_chars.word_char_ids("<S>"))


def test_tokens_and_word_vocabulary(tmp_path):
  tokens = elmo_chars.tf_tokenize(tf.constant("Hello, world!\n\n  The world's end.\n"))
  assert [t.decode() for t in tokens.numpy()] == [
      "<S>", "Hello", ",", "world", "!", "</S>", "<S>", "The", "world", "'", "s", "end", ".",
      "</S>"]
  vocab = elmo_chars.build_vocab(["b a b c\nc b", "a b"], size=5)
  assert vocab.words == ("<S>", "</S>", "<UNK>", "b", "a")              # by frequency
  assert vocab.encode(["a", "zzz", "<S>"]) == [4, 2, 0]
  vocab.save(str(tmp_path / "vocab.txt"))
  assert elmo_chars.WordVocab.from_file(str(tmp_path / "vocab.txt")).words == vocab.words
  (tmp_path / "bad.txt").write_text("<S>\n</S>\nthe\n")
  with pytest.raises(ValueError, match=r"bad.txt: missing the special tokens \['<UNK>'\]"):
    elmo_chars.WordVocab.from_file(str(tmp_path / "bad.txt"))


def _config(**data):
  c = elmo_configs.get_config("tiny")
  c.model.update(char_embedding_dim=4, filters=((1, 8), (2, 8), (3, 16)), n_highway=1,
                 lstm_dim=32, projection_dim=16, dropout=0.0)
  c.data.update(seq_length=8, vocab_size=60, vocab_documents=50, shuffle_buffer=10, **data)
  c.data.corpus.eval_every_nth = 200
  return c


def test_batches_hold_word_ids_and_their_characters():
  objective = elmo_pretrain.ElmoBiLMObjective(_config())
  vocab = objective.vocab()
  assert vocab.size == 60 and vocab.words[:3] == ("<S>", "</S>", "<UNK>")
  batch = next(objective.get_dataset("train", 4, seed=0).as_numpy_iterator())
  assert batch["input_ids"].shape == (4, 8) and batch["char_ids"].shape == (4, 8, 50)
  assert batch["input_ids"].max() < 60 and (batch["input_ids"] == 0).any()      # <S> present
  for ids, chars in zip(batch["input_ids"].ravel(), batch["char_ids"].reshape(-1, 50)):
    if ids != vocab.unk:
      np.testing.assert_array_equal(chars, elmo_chars.word_char_ids(vocab.words[ids]))
  assert (batch["input_ids"] == vocab.unk).any()       # a 60-word vocabulary misses words
  again = next(objective.get_dataset("train", 4, seed=0).as_numpy_iterator())
  np.testing.assert_array_equal(again["char_ids"], batch["char_ids"])


def test_loss_is_the_mean_of_the_forward_and_backward_lm_losses():
  objective = elmo_pretrain.ElmoBiLMObjective(_config())
  params = jax.jit(objective.init_params)(jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  ids = rng.integers(0, 60, (3, 8)).astype(np.int32)
  batch = {"input_ids": jnp.asarray(ids), "char_ids": jnp.asarray(np.stack(
      [[elmo_chars.word_char_ids(objective.vocab().words[i]) for i in row] for row in ids]))}

  @jax.jit
  def run(params, batch):
    loss, metrics = objective.loss_fn(params, batch, None, True)
    out = objective.make_model().apply({"params": params}, batch["char_ids"], logits=True)
    return loss, metrics, out["forward_logits"], out["backward_logits"]

  loss, metrics, fl, bl = jax.device_get(run(params, batch))

  def nll(logits, targets):
    logits = logits.astype(np.float64)
    lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    return lse - np.take_along_axis(logits, targets[..., None], -1)[..., 0]
  fwd = nll(fl[:, :-1], ids[:, 1:]).mean()      # position t predicts token t + 1
  bwd = nll(bl[:, 1:], ids[:, :-1]).mean()      # position t predicts token t - 1
  np.testing.assert_allclose(loss, 0.5 * (fwd + bwd), rtol=1e-5)
  np.testing.assert_allclose(metrics["forward_nll"][0] / metrics["forward_nll"][1], fwd,
                             rtol=1e-5)
  np.testing.assert_allclose(metrics["backward_nll"][0] / metrics["backward_nll"][1], bwd,
                             rtol=1e-5)
  assert metrics["loss"][1] == 3 * 7
  assert abs(nll(fl[:, 1:], ids[:, :-1]).mean() - fwd) > 1e-3   # the shift matters


def test_sampled_softmax_is_the_corrected_candidate_softmax():
  rng = np.random.default_rng(1)
  v, p, k = 50, 6, 7
  soft = {"kernel": rng.normal(size=(v, p)), "bias": rng.normal(size=(v,))}
  h = rng.normal(size=(2, 3, p))
  targets = np.array([[0, 5, 9], [3, 3, 49]])
  cands = np.array([5, 1, 0, 7, 20, 5, 2])
  got = elmo_pretrain.sampled_softmax_nll(jnp.asarray(h, jnp.float32), jnp.asarray(targets),
                                          jax.tree_util.tree_map(jnp.float32, soft),
                                          jnp.asarray(cands))
  q = lambda i: k * np.log((i + 2) / (i + 1)) / np.log(v + 1)  # noqa: E731
  for b in range(2):
    for t in range(3):
      y = targets[b, t]
      logit = lambda i: h[b, t] @ soft["kernel"][i] + soft["bias"][i] - np.log(q(i))  # noqa
      others = [logit(c) for c in cands if c != y]          # accidental hits removed
      z = np.array([logit(y)] + others)
      want = np.log(np.exp(z - z.max()).sum()) + z.max() - logit(y)
      np.testing.assert_allclose(got[b, t], want, rtol=1e-4, atol=1e-5)
  draws = np.asarray(elmo_pretrain.log_uniform_samples(jax.random.PRNGKey(0), 20000, v))
  assert draws.min() >= 0 and draws.max() < v
  np.testing.assert_allclose(np.mean(draws == 0), np.log(2) / np.log(v + 1), atol=0.02)


@pytest.mark.skipif(not os.path.isdir(MODEL_DIR), reason=f"no bilm-tf test model at {MODEL_DIR}")
def test_continues_from_a_bilm_tf_model():
  c = _config()
  c.model.update(char_embedding_dim=4, filters=((1, 4), (2, 8), (3, 16), (4, 32), (5, 64)),
                 n_highway=2, lstm_dim=64, projection_dim=16, use_skip_connections=False)
  c.lm.init_from = MODEL_DIR
  params = elmo_pretrain.ElmoBiLMObjective(c).initial_params()
  assert params["forward_0"]["kernel"].shape == (32, 256) and "softmax" not in params
  c.model.lstm_dim = 128
  with pytest.raises(ConfigError, match=r"config.model.lstm_dim=128: .*options.json has 64"):
    elmo_pretrain.ElmoBiLMObjective(c).initial_params()
