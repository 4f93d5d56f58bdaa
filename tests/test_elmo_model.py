"""ELMo's biLM: the LSTM cell against float64 NumPy, the bilm-tf test model (written by the
original code) against a float64 NumPy forward that reads its HDF5 file directly, causality,
reversal, stateful reading, and the scalar mix."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from plm_jax.convert import bilm_hdf5
from plm_jax.data import elmo_chars, paths
from plm_jax.layers import lstm
from plm_jax.models.elmo import ElmoBiLM, ElmoConfig, ScalarMix, elmo_layers, init_state

MODEL_DIR = os.path.join(paths.data_dir(), "elmo", "bilm-tf-test-model")
needs_model = pytest.mark.skipif(not os.path.isdir(MODEL_DIR),
                                 reason=f"no bilm-tf test model at {MODEL_DIR}")
SENTENCES = [["The", "quick", "brown", "fox", "jumped", "over", "the", "lazy", "dog", "."],
             ["Göteborg", "is", "a", "city", "in", "Sweden", "."],
             ["Pistons", "confirmed", "the", "report"]]
TINY = ElmoConfig(vocab_size=40, char_embedding_dim=4, filters=((1, 8), (2, 8), (3, 16)),
                  n_highway=1, lstm_dim=24, projection_dim=8, n_layers=2, cell_clip=1.0,
                  proj_clip=0.5, use_skip_connections=True, dropout=0.0)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def np_cell(w, b, wp, x, c, h, cell_clip, proj_clip):
  """TensorFlow 1 LSTMCell(num_proj, cell_clip, proj_clip), float64: gates i, j, f, o."""
  z = np.concatenate([x, h], -1) @ w + b
  n = z.shape[-1] // 4
  i, j, f, o = z[:, :n], z[:, n:2 * n], z[:, 2 * n:3 * n], z[:, 3 * n:]
  c = _sigmoid(f + 1.0) * c + _sigmoid(i) * np.tanh(j)
  c = np.clip(c, -cell_clip, cell_clip) if cell_clip else c
  m = _sigmoid(o) * np.tanh(c)
  h = m @ wp if wp is not None else m
  return c, (np.clip(h, -proj_clip, proj_clip) if proj_clip else h)


def test_lstm_cell_matches_float64_numpy():
  rng = np.random.default_rng(0)
  bsz, n_in, hid, proj, steps = 3, 5, 7, 4, 6
  w = rng.normal(0, 0.8, (n_in + proj, 4 * hid))
  b = rng.normal(0, 0.5, (4 * hid,))
  wp = rng.normal(0, 0.8, (hid, proj))
  xs = rng.normal(0, 1.5, (bsz, steps, n_in))
  mask = np.arange(steps)[None] < np.array([6, 4, 1])[:, None]
  c, h = np.zeros((bsz, hid)), np.zeros((bsz, proj))
  want, clipped = np.zeros((bsz, steps, proj)), 0
  for t in range(steps):
    c2, h2 = np_cell(w, b, wp, xs[:, t], c, h, 0.6, 0.4)
    clipped += int((np.abs(c2) >= 0.6).sum() + (np.abs(h2) >= 0.4).sum())
    # one step of the JAX cell from the same state
    jc, jh = lstm.lstm_cell_step(*(jnp.asarray(a, jnp.float32) for a in (w, b, wp, xs[:, t])),
                                 (jnp.asarray(c, jnp.float32), jnp.asarray(h, jnp.float32)),
                                 0.6, 0.4)
    np.testing.assert_allclose(jc, c2, atol=1e-5)
    np.testing.assert_allclose(jh, h2, atol=1e-5)
    keep = mask[:, t][:, None]
    c, h = np.where(keep, c2, c), np.where(keep, h2, h)
    want[:, t] = np.where(keep, h2, 0.0)
  assert clipped > 0, "the clipping was never exercised"
  f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
  out, (fc, fh) = lstm.run_lstm(f32(w), f32(b), f32(wp), f32(xs), jnp.asarray(mask),
                                lstm.zero_state(bsz, hid, proj), 0.6, 0.4)
  np.testing.assert_allclose(out, want, atol=1e-5)
  np.testing.assert_allclose(fc, c, atol=1e-5)   # final state: after each row's last token
  np.testing.assert_allclose(fh, h, atol=1e-5)


def np_bilm(model_dir, char_ids):
  """An independent float64 forward of a bilm-tf model, from options.json and the HDF5 file
  (bilm-tf's BidirectionalLanguageModelGraph): returns token [B,T,P], forward/backward lists."""
  import h5py  # pylint: disable=import-outside-toplevel
  with open(os.path.join(model_dir, "options.json")) as f:
    opt = json.load(f)
  with h5py.File(os.path.join(model_dir, "lm_weights.hdf5"), "r") as fin:
    arrays = {}
    fin.visititems(lambda name, obj: arrays.__setitem__(name, np.asarray(obj[...], np.float64))
                   if isinstance(obj, h5py.Dataset) else None)
  g = arrays.__getitem__
  embed = np.concatenate([np.zeros((1, opt["char_cnn"]["embedding"]["dim"])), g("char_embed")])
  x = embed[char_ids]                                   # [B, T, C, D]
  feats = []
  for k, (width, _) in enumerate(opt["char_cnn"]["filters"]):
    w = g(f"CNN/W_cnn_{k}")[0]                          # [w, D, n]
    c = x.shape[2]
    conv = np.stack([np.einsum("btwd,wdn->btn", x[:, :, s:s + width], w)
                     for s in range(c - width + 1)], 2) + g(f"CNN/b_cnn_{k}")
    feats.append(np.maximum(conv.max(2), 0.0))          # max over time, then relu
  e = np.concatenate(feats, -1)
  for k in range(opt["char_cnn"]["n_highway"]):
    carry = _sigmoid(e @ g(f"CNN_high_{k}/W_carry") + g(f"CNN_high_{k}/b_carry"))
    tr = np.maximum(e @ g(f"CNN_high_{k}/W_transform") + g(f"CNN_high_{k}/b_transform"), 0)
    e = carry * tr + (1 - carry) * e
  token = e @ g("CNN_proj/W_proj") + g("CNN_proj/b_proj")
  lengths = (char_ids > 0).any(-1).sum(1)
  lo = opt["lstm"]
  outs = {}
  for d in (0, 1):
    layers = []
    seq = [token[b, :n] if d == 0 else token[b, :n][::-1] for b, n in enumerate(lengths)]
    for k in range(lo["n_layers"]):
      root = f"RNN_{d}/RNN/MultiRNNCell/Cell{k}/LSTMCell/"
      new_seq = []
      for s in seq:
        c, h, ys = np.zeros((1, lo["dim"])), np.zeros((1, lo["projection_dim"])), []
        for t in range(len(s)):
          c, h = np_cell(g(root + "W_0"), g(root + "B"), g(root + "W_P_0"), s[t][None], c, h,
                         lo["cell_clip"], lo["proj_clip"])
          ys.append(h[0] + (s[t] if lo["use_skip_connections"] and k > 0 else 0))
        new_seq.append(np.array(ys))
      seq = new_seq
      full = np.zeros(token.shape)
      for b, s in enumerate(seq):
        full[b, :len(s)] = s if d == 0 else s[::-1]
      layers.append(full)
    outs[d] = layers
  return token, outs[0], outs[1], lengths


@pytest.fixture(scope="module")
def bilm_tf_model():
  cfg, params = bilm_hdf5.load_bilm(os.path.join(MODEL_DIR, "options.json"),
                                    os.path.join(MODEL_DIR, "lm_weights.hdf5"))
  return cfg, jax.tree_util.tree_map(jnp.asarray, params)


@needs_model
def test_bilm_tf_test_model_matches_float64_reference(bilm_tf_model):
  cfg, params = bilm_tf_model
  ids = elmo_chars.batch_to_char_ids(SENTENCES, cfg.max_characters_per_token)
  apply = jax.jit(ElmoBiLM(cfg).apply)
  out = apply({"params": params}, jnp.asarray(ids))
  token, fwd, bwd, lengths = np_bilm(MODEL_DIR, ids)
  np.testing.assert_array_equal(out["lengths"], [12, 9, 6])
  np.testing.assert_array_equal(out["lengths"], lengths)
  mask = np.asarray(out["mask"])[..., None]
  np.testing.assert_allclose(np.asarray(out["token"]) * mask, token * mask, atol=1e-5)
  for k in range(cfg.n_layers):
    np.testing.assert_allclose(out["forward"][k], fwd[k], atol=1e-5)
    np.testing.assert_allclose(out["backward"][k], bwd[k], atol=1e-5)
    assert np.abs(fwd[k]).max() > 0.1 and np.abs(bwd[k]).max() > 0.1
  layers = elmo_layers(out)
  assert layers.shape == (3, 3, 12, 32)
  assert np.all(np.asarray(layers)[:, 2, 6:] == 0)          # padding tokens
  # Deterministic: a second call gives the same bits.
  again = apply({"params": params}, jnp.asarray(ids))
  np.testing.assert_array_equal(again["forward"][1], out["forward"][1])


def _swap_directions(params, n_layers):
  p = dict(params)
  for k in range(n_layers):
    p[f"forward_{k}"], p[f"backward_{k}"] = params[f"backward_{k}"], params[f"forward_{k}"]
  return p


@needs_model
def test_reversing_a_sentence_swaps_the_directions(bilm_tf_model):
  """The backward LM reads a sentence as the forward LM reads it reversed: with the two
  stacks' weights swapped, the forward outputs on the reversed sentence are the backward
  outputs on the sentence, position for position reversed."""
  cfg, params = bilm_tf_model
  sent = SENTENCES[0]
  model = ElmoBiLM(cfg)
  ids = jnp.asarray(elmo_chars.batch_to_char_ids([sent]))
  rev = jnp.asarray(elmo_chars.batch_to_char_ids([sent[::-1]], add_boundaries=False))
  rev = jnp.concatenate([ids[:, -1:], rev, ids[:, :1]], axis=1)           # </S> rev <S>
  apply = jax.jit(lambda p, x: model.apply({"params": p}, x))
  out = apply(params, ids)
  swapped = apply(_swap_directions(params, cfg.n_layers), rev)
  for k in range(cfg.n_layers):
    np.testing.assert_allclose(swapped["forward"][k][:, ::-1], out["backward"][k], atol=1e-6)
    np.testing.assert_allclose(swapped["backward"][k][:, ::-1], out["forward"][k], atol=1e-6)
  assert not np.allclose(out["forward"][1], out["backward"][1], atol=1e-3)


@needs_model
def test_stateful_reading_carries_each_rows_state(bilm_tf_model):
  """The first batch read with a zero state equals the stateless call; a second batch read
  from the first's final state continues each row: the forward LM's outputs equal those of
  the two batches read as one sequence."""
  cfg, params = bilm_tf_model
  model = ElmoBiLM(cfg)
  apply = jax.jit(lambda x, state: model.apply({"params": params}, x, state=state))
  ids = jnp.asarray(elmo_chars.batch_to_char_ids([SENTENCES[0], SENTENCES[0][:7]]))
  first, second = ids[:, :6], ids[:, 6:]
  zero = init_state(cfg, 2)
  a = apply(first, zero)
  a_stateless = jax.jit(lambda x: model.apply({"params": params}, x))(first)
  for k in range(cfg.n_layers):
    np.testing.assert_array_equal(a["forward"][k], a_stateless["forward"][k])
    np.testing.assert_array_equal(a["backward"][k], a_stateless["backward"][k])
  b = apply(second, a["state"])
  whole = jax.jit(lambda x: model.apply({"params": params}, x))(ids)
  for k in range(cfg.n_layers):
    np.testing.assert_allclose(b["forward"][k], whole["forward"][k][:, 6:], atol=1e-6)
  fresh = apply(second, zero)
  assert not np.allclose(fresh["forward"][1], whole["forward"][1][:, 6:], atol=1e-4)
  # Row 1 ends inside `second` (3 real tokens there): padding does not move its state.
  assert int(b["lengths"][1]) == 3
  np.testing.assert_array_equal(b["forward"][1][1, 3:], 0.0)


def test_forward_and_backward_lms_are_causal():
  model = ElmoBiLM(TINY)
  ids = elmo_chars.batch_to_char_ids([["a", "b", "c", "d", "e", "f", "g", "h"]])
  params = jax.jit(model.init)(jax.random.PRNGKey(1), jnp.asarray(ids))["params"]
  changed = elmo_chars.batch_to_char_ids([["a", "b", "c", "d", "X", "Y", "Z", "h"]])
  run = jax.jit(lambda x: model.apply({"params": params}, x, logits=True))
  o1, o2 = run(jnp.asarray(ids)), run(jnp.asarray(changed))
  t = 5      # tokens 5..7 changed (<S> is token 0)
  np.testing.assert_array_equal(o1["forward_logits"][:, :t], o2["forward_logits"][:, :t])
  assert not np.allclose(o1["forward_logits"][:, t:], o2["forward_logits"][:, t:])
  # The backward LM at t sees tokens t..end: positions after the change are untouched.
  np.testing.assert_array_equal(o1["backward_logits"][:, 8:], o2["backward_logits"][:, 8:])
  assert not np.allclose(o1["backward_logits"][:, :8], o2["backward_logits"][:, :8])
  for k in range(TINY.n_layers):
    np.testing.assert_array_equal(o1["forward"][k][:, :t], o2["forward"][k][:, :t])
    np.testing.assert_array_equal(o1["backward"][k][:, 8:], o2["backward"][k][:, 8:])


def test_scalar_mix_is_the_papers_formula_and_trains():
  rng = np.random.default_rng(3)
  layers = jnp.asarray(rng.normal(1.0, 2.0, (3, 2, 5, 6)), jnp.float32)
  mask = jnp.asarray(np.arange(5)[None] < np.array([5, 3])[:, None])
  w, gamma = np.array([0.3, -1.0, 2.0]), 1.7
  s = np.exp(w) / np.exp(w).sum()
  params = {"weights": jnp.asarray(w, jnp.float32), "gamma": jnp.asarray(gamma, jnp.float32)}
  got = ScalarMix(3).apply({"params": params}, layers)
  want = gamma * sum(s[k] * np.asarray(layers[k], np.float64) for k in range(3))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  # Layer norm: each layer by the mean/variance of its entries at real tokens.
  got = ScalarMix(3, layer_norm=True).apply({"params": params}, layers, mask)
  want = 0.0
  for k in range(3):
    real = np.asarray(layers[k])[np.asarray(mask)]
    want = want + s[k] * (np.asarray(layers[k], np.float64) - real.mean()) / np.sqrt(
        real.var() + 1e-12)
  np.testing.assert_allclose(got, gamma * want, rtol=1e-4, atol=1e-4)
  # The weights and gamma train: fitting the mix to layer 2 moves s towards it.
  target = layers[2] * 0.5
  mix = ScalarMix(3)
  p = mix.init(jax.random.PRNGKey(0), layers)["params"]
  assert np.all(p["weights"] == 0) and p["gamma"] == 1.0
  opt = optax.adam(0.1)
  state = opt.init(p)

  @jax.jit
  def step(p, state):
    loss, g = jax.value_and_grad(lambda q: jnp.mean((mix.apply({"params": q}, layers)
                                                     - target) ** 2))(p)
    upd, state = opt.update(g, state)
    return optax.apply_updates(p, upd), state, loss

  losses = []
  for _ in range(60):
    p, state, loss = step(p, state)
    losses.append(float(loss))
  assert losses[-1] < 0.05 * losses[0]
  assert int(np.argmax(p["weights"])) == 2 and abs(float(p["gamma"]) - 0.5) < 0.2
