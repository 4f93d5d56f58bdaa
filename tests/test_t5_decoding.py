"""T5 decoding: cached greedy decoding equals the uncached forward pass token for token, and
greedy and beam search equal transformers' `generate` on the same random-weight model."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import plm_jax  # noqa: E402
from plm_jax.models.t5_decoding import beam_search, greedy_decode  # noqa: E402
from t5_hf import hf_generate, hf_t5, save_hf  # noqa: E402

torch.set_num_threads(2)
# v1.1 layout, 3 decoder layers over 2 encoder layers.
KW = dict(vocab_size=61, d_model=32, d_kv=8, d_ff=40, num_layers=2, num_decoder_layers=3,
          num_heads=4, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
          relative_attention_num_buckets=8, relative_attention_max_distance=10)
MAX_LENGTH = 12


def _uncached(model, params, ids, mask, max_length):
  """Greedy decoding by re-running the whole decoder on the prefix at every step."""
  cfg = model.config
  forward = jax.jit(lambda p, dec: model.apply({"params": p}, input_ids=ids,
                                               attention_mask=mask,
                                               decoder_input_ids=dec)["logits"])
  dec = np.zeros((ids.shape[0], max_length), np.int32)     # start token, then the output
  out = np.zeros((ids.shape[0], max_length), np.int32)
  done = np.zeros(ids.shape[0], bool)
  for t in range(max_length):
    nxt = np.asarray(jnp.argmax(forward(params, jnp.asarray(dec))[:, t], -1))
    nxt = np.where(done, cfg.pad_token_id, nxt)
    done |= nxt == cfg.eos_token_id
    out[:, t] = nxt
    if t + 1 < max_length:
      dec[:, t + 1] = nxt
  return out


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
  """(hf model, plm_jax model, params, ids, mask): a random v1.1 model with large weights
  (varied outputs) imported from its HF files, and 4 inputs of 9, 6, 3 and 1 real tokens."""
  hf = hf_t5(KW, seed=4)
  with torch.no_grad():
    for name, p in hf.named_parameters():
      if "layer_norm" not in name:
        p.mul_(5.0)
    hf.lm_head.weight[1] -= 3.0     # EOS now ends some beams early and others not at all
  path = tmp_path_factory.mktemp("t5_decoding")
  save_hf(hf, path)
  model, params = plm_jax.load_pretrained(str(path))
  rng = np.random.RandomState(0)
  ids = rng.randint(2, KW["vocab_size"], size=(4, 9)).astype(np.int32)
  mask = np.zeros_like(ids)
  for row, n in enumerate([9, 6, 3, 1]):
    mask[row, :n] = 1
  return hf, model, params, ids * mask, mask


@pytest.fixture(scope="module")
def greedy(imported):
  _, model, params, ids, mask = imported
  cached = np.asarray(jax.jit(
      lambda p, i, m: greedy_decode(model, p, i, m, MAX_LENGTH))(params, ids, mask))
  assert cached.shape == (4, MAX_LENGTH)
  return cached


def assert_same_tokens(ours, ref, hf_fill):
  """ours [N, MAX_LENGTH] (pad after EOS) vs transformers' [N, 1 + n] (start token, then
  hf_fill after EOS, cropped to the longest output): equal up to and including EOS."""
  assert (ref[:, 0] == 0).all()                           # the decoder start token
  ref = ref[:, 1:]
  for row, (a, b) in enumerate(zip(ours, ref)):
    end = np.flatnonzero(b == 1)
    n = end[0] + 1 if end.size else len(b)
    np.testing.assert_array_equal(a[:n], b[:n], err_msg=f"row {row}")
    assert (a[n:] == 0).all() and (b[n:] == hf_fill).all(), (row, a, b)


@pytest.mark.slow   # ~30-110 s on the loaded 2-core machine (compiles the full decoder too)
def test_greedy_cached_equals_uncached(imported, greedy):
  _, model, params, ids, mask = imported
  np.testing.assert_array_equal(greedy, _uncached(model, params, ids, mask, MAX_LENGTH))


def test_greedy_equals_hf_generate(imported, greedy):
  hf, _, _, ids, mask = imported
  ref = hf_generate(hf, ids, mask, MAX_LENGTH, num_beams=1)
  assert_same_tokens(greedy, ref, hf_fill=0)
  assert (greedy[:, -1] != 0).sum() == 3 and (greedy == 1).sum() == 1   # 3 run on, 1 ends
  assert len(set(greedy.ravel().tolist())) > 15             # not one repeated token


def test_beam_search_equals_hf_generate(imported):
  """All 3 finished beams of every row, in order, and their scores, for two length
  penalties (which pick different beams here), from one compilation."""
  hf, model, params, ids, mask = imported
  search = jax.jit(lambda p, i, m, lp: beam_search(model, p, i, m, MAX_LENGTH, 3, lp))
  picked = []
  for penalty in (0.6, 2.0):
    out = search(params, ids, mask, penalty)
    tokens, scores = np.asarray(out.tokens), np.asarray(out.scores)
    ref = hf_generate(hf, ids, mask, MAX_LENGTH, num_beams=3, length_penalty=penalty,
                      num_return_sequences=3, return_dict_in_generate=True, output_scores=True)
    assert_same_tokens(tokens.reshape(12, MAX_LENGTH), ref.sequences.numpy(), hf_fill=1)
    np.testing.assert_allclose(scores.ravel(), ref.sequences_scores.numpy(), rtol=1e-4)
    assert (np.diff(scores, axis=1) <= 0).all()              # best first
    picked.append(tokens)
  assert (picked[0] != picked[1]).any()                      # the penalty matters here
  assert search._cache_size() == 1
