"""T5 vs Hugging Face T5ForConditionalGeneration: parity with random weights (v1.0 and v1.1
layouts, padded batches), export / import round trip, relative position buckets."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import plm_jax  # noqa: E402
from plm_jax.convert import hf_io, registry  # noqa: E402
from plm_jax.convert.table import flatten  # noqa: E402
from plm_jax.layers.relative_position import relative_position_bucket  # noqa: E402
from plm_jax.models.t5 import T5ForConditionalGeneration  # noqa: E402
from t5_hf import hf_t5, save_hf  # noqa: E402

torch.set_num_threads(2)
TOL = 1e-4

# v1.0: ReLU, tied + rescaled output. v1.1: gated-GELU, untied lm_head, odd sizes,
# heads * head_dim != d_model, 3 decoder layers over 2 encoder layers, few buckets and a
# short max_distance so that the inputs reach the logarithmic and the last buckets.
V10 = dict(vocab_size=99, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
           feed_forward_proj="relu", tie_word_embeddings=True,
           relative_attention_num_buckets=32, relative_attention_max_distance=128)
V11 = dict(vocab_size=101, d_model=36, d_kv=7, d_ff=50, num_layers=2, num_decoder_layers=3,
           num_heads=3, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
           relative_attention_num_buckets=10, relative_attention_max_distance=12)


def inputs(vocab, seed=0):
  rng = np.random.RandomState(seed)
  ids = rng.randint(2, vocab, size=(3, 23))
  mask = np.ones_like(ids)
  mask[1, 15:] = 0
  mask[2, 6:] = 0
  dec = rng.randint(2, vocab, size=(3, 17))
  dec[:, 0] = 0
  dec_mask = np.ones_like(dec)
  dec_mask[2, 9:] = 0
  return np.where(mask > 0, ids, 0), mask, np.where(dec_mask > 0, dec, 0), dec_mask


def jax_forward(model, params, ids, mask, dec, dec_mask):
  fn = lambda p, *a: model.apply({"params": p}, input_ids=a[0], attention_mask=a[1],
                                 decoder_input_ids=a[2], decoder_attention_mask=a[3])
  return jax.jit(fn)(params, ids, mask, dec, dec_mask)


@pytest.mark.parametrize("kw", [V10, V11], ids=["v1.0", "v1.1"])
def test_parity_export_import(tmp_path, kw):
  hf = hf_t5(kw)
  tensors = save_hf(hf, tmp_path / "hf")
  model, params = plm_jax.load_pretrained(str(tmp_path / "hf"))
  assert isinstance(model, T5ForConditionalGeneration)
  cfg = model.config
  assert cfg.tie_word_embeddings == kw["tie_word_embeddings"]
  assert cfg.num_decoder_layers == kw.get("num_decoder_layers", kw["num_layers"])
  ids, mask, dec, dec_mask = inputs(kw["vocab_size"])
  with torch.no_grad():
    ref = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
             decoder_input_ids=torch.tensor(dec), decoder_attention_mask=torch.tensor(dec_mask))
  out = jax_forward(model, params, ids, mask, dec, dec_mask)
  enc_err = np.abs(np.asarray(out["encoder_last_hidden_state"])
                   - ref.encoder_last_hidden_state.numpy())[mask > 0].max()
  logit_err = np.abs(np.asarray(out["logits"]) - ref.logits.numpy())[dec_mask > 0].max()
  print(f"max abs error: encoder {enc_err:.2e}, logits {logit_err:.2e}")
  assert enc_err < TOL and logit_err < TOL
  assert float(np.abs(ref.logits.numpy()).max()) > 0.5   # not a trivially small output

  # Export -> the same tensors (bit-exact); import of the export -> the same params.
  registry.save_pretrained(params, cfg, str(tmp_path / "out"))
  written = hf_io.read_weights(str(tmp_path / "out"))
  expected = {k: v for k, v in tensors.items()
              if not k.endswith("embed_tokens.weight")
              and not (kw["tie_word_embeddings"] and k == "lm_head.weight")}
  assert sorted(written) == sorted(expected)
  for k, v in expected.items():
    np.testing.assert_array_equal(written[k], v, err_msg=k)
  _, again = plm_jax.load_pretrained(str(tmp_path / "out"))
  a, b = flatten(params), flatten(again)
  assert sorted(a) == sorted(b)
  for k in a:
    np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)
  # transformers reads the export back with the same outputs.
  hf2 = transformers.T5ForConditionalGeneration.from_pretrained(
      str(tmp_path / "out"), attn_implementation="eager").eval()
  with torch.no_grad():
    ref2 = hf2(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
               decoder_input_ids=torch.tensor(dec), decoder_attention_mask=torch.tensor(dec_mask))
  np.testing.assert_allclose(ref2.logits.numpy(), ref.logits.numpy(), atol=1e-5)


def _bucket_reference(rel, bidirectional, num_buckets, max_distance):
  """The mesh-tensorflow formula, one scalar at a time in Python floats."""
  ret, n = 0, -rel
  if bidirectional:
    num_buckets //= 2
    ret += num_buckets if n < 0 else 0
    n = abs(n)
  else:
    n = max(n, 0)
  max_exact = num_buckets // 2
  if n < max_exact:
    return ret + n
  large = max_exact + int(math.log(n / max_exact) / math.log(max_distance / max_exact)
                          * (num_buckets - max_exact))
  return ret + min(large, num_buckets - 1)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_relative_position_buckets(bidirectional):
  rel = np.arange(-300, 301)
  got = np.asarray(relative_position_bucket(jnp.asarray(rel), bidirectional, 32, 128))
  want = [_bucket_reference(int(r), bidirectional, 32, 128) for r in rel]
  np.testing.assert_array_equal(got, want)
  if not bidirectional:
    assert (got[rel > 0] == 0).all()       # keys after the query share bucket 0
  # Every bucket is reached (bidirectional: all but 16, which would be distance 0 after).
  assert len(set(got.tolist())) == (31 if bidirectional else 32)


@pytest.mark.slow   # ~30 s: two more compilations
def test_scan_layers_same_outputs(tmp_path):
  hf = hf_t5(V11, seed=1)
  save_hf(hf, tmp_path / "hf")
  model, params = plm_jax.load_pretrained(str(tmp_path / "hf"))
  scanned, sparams = plm_jax.load_pretrained(str(tmp_path / "hf"), scan_layers=True)
  assert flatten(sparams)["decoder/layers/mlp/wo/kernel"].shape[0] == 3
  args = inputs(V11["vocab_size"], seed=1)
  a = jax_forward(model, params, *args)["logits"]
  b = jax_forward(scanned, sparams, *args)["logits"]
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
