"""Generation with the key/value cache: equals uncached decoding and HF generate; sampling."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import plm_jax  # noqa: E402
from plm_jax.models import gpt_generate  # noqa: E402
from test_gpt_convert import GPT1_ODD, GPT2_REGULAR, hf_model  # noqa: E402

PROMPTS = [[5, 17, 3], [9, 2, 44, 61, 7, 30, 8], [11], [4, 4, 90, 12, 6]]
MAX_LENGTH = 14


def _import(kind, kw, tmp_path_factory):
  hf = hf_model(kind, kw, seed=1)
  path = tmp_path_factory.mktemp(kind)
  hf.save_pretrained(path)
  model, params = plm_jax.load_pretrained(str(path))
  return hf, model, params


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
  return _import("gpt2", GPT2_REGULAR, tmp_path_factory)


@pytest.fixture(scope="module", params=["gpt2", "gpt1"])
def imported(request, tmp_path_factory, gpt2):
  return gpt2 if request.param == "gpt2" else _import("gpt1", GPT1_ODD, tmp_path_factory)


def uncached_greedy(model, params, prompts, max_length):
  """Reference: at every step a full forward pass over the whole sequence, no cache."""
  forward = jax.jit(lambda p, ids: model.apply({"params": p}, ids)["logits"])
  rows = [list(p) for p in prompts]
  for _ in range(max_length):
    ids = np.zeros((len(rows), max_length), np.int32)
    for i, r in enumerate(rows):
      ids[i, :len(r)] = r
    logits = np.asarray(forward(params, ids))
    for i, r in enumerate(rows):
      if len(r) < max_length:
        r.append(int(np.argmax(logits[i, len(r) - 1])))
  return rows


def test_cached_greedy_equals_uncached_and_hf_generate(imported):
  hf, model, params = imported
  out = gpt_generate.generate(model, params, PROMPTS, MAX_LENGTH)
  assert out.lengths.tolist() == [MAX_LENGTH] * len(PROMPTS)
  for i, p in enumerate(PROMPTS):
    assert out.tokens[i, :len(p)].tolist() == p
  ref = uncached_greedy(model, params, PROMPTS, MAX_LENGTH)
  assert out.tokens.tolist() == ref

  # Hugging Face generate, left-padded batch (positions from the attention mask).
  width = max(len(p) for p in PROMPTS)
  ids = np.zeros((len(PROMPTS), width), np.int64)
  mask = np.zeros_like(ids)
  for i, p in enumerate(PROMPTS):
    ids[i, width - len(p):] = p
    mask[i, width - len(p):] = 1
  with torch.no_grad():
    hf_out = hf.generate(torch.tensor(ids), attention_mask=torch.tensor(mask), do_sample=False,
                         max_new_tokens=MAX_LENGTH - min(len(p) for p in PROMPTS),
                         pad_token_id=0, eos_token_id=None).numpy()
  for i, p in enumerate(PROMPTS):
    hf_row = hf_out[i, width - len(p):][:MAX_LENGTH].tolist()
    assert out.tokens[i].tolist() == hf_row, i


@pytest.mark.parametrize("lengths,max_length", [((10, 10), 11), ((9, 13), 16)])
def test_chunked_prefill_equals_uncached(gpt2, lengths, max_length):
  # Chunks of 4 over a shared prompt part of 9-10 tokens: several passes, and with
  # (10, 10) in 11 slots the last chunk is moved back to end at the buffer's end.
  _, model, params = gpt2
  rng = np.random.default_rng(len(lengths) + max_length)
  prompts = [rng.integers(1, 90, size=n).tolist() for n in lengths]
  out = gpt_generate.generate(model, params, prompts, max_length, prefill_chunk=4)
  assert out.tokens.tolist() == uncached_greedy(model, params, prompts, max_length)


@pytest.mark.slow   # two more generate compiles; 537 s on the loaded 2-core machine (quiet: unmeasured)
def test_scanned_layers_generate_the_same(gpt2):
  # The decoding step reads the layers from nn.scan's stacked 'layers' subtree (params and
  # cache with a leading [num_layers] axis) as well as from layers_{i}.
  import dataclasses
  _, model, params = gpt2
  scanned = type(model)(dataclasses.replace(model.config, scan_layers=True))
  h = params["transformer"]["h"]
  stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs),
                                   *[h[f"layers_{i}"] for i in range(model.config.num_layers)])
  scanned_params = dict(params, transformer=dict(params["transformer"], h={"layers": stacked}))
  want = gpt_generate.generate(model, params, PROMPTS, MAX_LENGTH)
  got = gpt_generate.generate(scanned, scanned_params, PROMPTS, MAX_LENGTH)
  np.testing.assert_array_equal(got.tokens, want.tokens)


def test_stop_on_eos_pads_the_rest(gpt2):
  _, model, params = gpt2
  free = gpt_generate.generate(model, params, PROMPTS, MAX_LENGTH)
  eos = int(free.tokens[0, len(PROMPTS[0]) + 1])     # row 0's second generated token
  out = gpt_generate.generate(model, params, PROMPTS, MAX_LENGTH, eos_id=eos, pad_id=0)
  for i, p in enumerate(PROMPTS):
    row = free.tokens[i].tolist()
    cont = row[len(p):]
    stop = len(p) + (cont.index(eos) + 1 if eos in cont else len(cont))
    assert out.lengths[i] == stop
    assert out.tokens[i].tolist() == row[:stop] + [0] * (MAX_LENGTH - stop)
  assert out.lengths[0] <= len(PROMPTS[0]) + 2 and min(out.lengths) < MAX_LENGTH


def test_sampling_is_reproducible_with_a_key(gpt2):
  _, model, params = gpt2
  kw = dict(temperature=1.5, top_k=20, top_p=0.95)
  a = gpt_generate.generate(model, params, PROMPTS, MAX_LENGTH, rng=jax.random.key(3), **kw)
  b = gpt_generate.generate(model, params, PROMPTS, MAX_LENGTH, rng=jax.random.key(3), **kw)
  c = gpt_generate.generate(model, params, PROMPTS, MAX_LENGTH, rng=jax.random.key(4), **kw)
  np.testing.assert_array_equal(a.tokens, b.tokens)
  assert not np.array_equal(a.tokens, c.tokens)


def _allowed(logits, top_k, top_p):
  """Reference top-k then top-p set (numpy): the smallest prefix of sorted tokens whose
  probability mass reaches top_p, among the top_k."""
  order = np.argsort(-logits, kind="stable")
  if top_k:
    order = order[:top_k]
  probs = np.exp(logits[order] - logits[order].max())
  probs /= probs.sum()
  n = int(np.searchsorted(np.cumsum(probs), top_p) + 1)
  return set(order[:n].tolist())


@pytest.mark.parametrize("top_k,top_p", [(5, 1.0), (0, 0.6), (8, 0.5)])
def test_top_k_top_p_never_leave_the_allowed_set(top_k, top_p):
  logits = np.random.RandomState(0).normal(0, 2.0, size=(50,)).astype(np.float32)
  allowed = _allowed(logits, top_k, top_p)
  keys = jax.random.split(jax.random.key(0), 2000)
  draw = jax.jit(jax.vmap(lambda k: gpt_generate.next_token(
      jnp.asarray(logits)[None], k, 1.0, top_k, top_p, greedy=False)[0]))
  seen = set(np.asarray(draw(keys)).tolist())
  assert seen <= allowed, sorted(seen - allowed)
  assert len(seen) > 1 and len(allowed) < 50


def test_bad_prompts_are_one_line_errors(gpt2):
  _, model, params = gpt2
  with pytest.raises(ValueError, match="prompt 1 is empty"):
    gpt_generate.generate(model, params, [[1], []], 8)
  with pytest.raises(ValueError, match="prompt 0 has 8 tokens, leaving no room"):
    gpt_generate.generate(model, params, [list(range(1, 9))], 8)
  context = model.config.max_position_embeddings
  with pytest.raises(ValueError, match=f"exceeds the model's context of {context} positions"):
    gpt_generate.generate(model, params, [[1]], context + 1)
  with pytest.raises(ValueError, match=f"prompt 1 has {context + 3} tokens, but the model's "
                                       f"context is {context} positions"):
    gpt_generate.generate(model, params, [[1], [1] * (context + 3)], context)


def _byte_vocab(path):
  """vocab.json with the 256 byte symbols and <|endoftext|> (257 tokens), no merges."""
  import json
  from plm_jax.data import bpe
  vocab = {c: i for i, c in enumerate(bpe.bytes_to_unicode().values())}
  vocab["<|endoftext|>"] = 256
  (path / "vocab.json").write_text(json.dumps(vocab))
  (path / "merges.txt").write_text("#version: 0.2\n")


def test_generate_command_prints_text_and_refuses_a_mismatched_vocabulary(tmp_path, capsys):
  ok, small = tmp_path / "ok", tmp_path / "small"
  hf_model("gpt2", dict(GPT2_REGULAR, vocab_size=257)).save_pretrained(ok)
  _byte_vocab(ok)
  capsys.readouterr()          # transformers' warnings while building the checkpoints
  assert gpt_generate.main([f"--model_dir={ok}", "--prompt=Hi", "--prompt=a b",
                            "--max_length=8"]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert len(lines) == 2 and lines[0].startswith("'Hi") and lines[1].startswith("'a b")
  hf_model("gpt2", GPT2_REGULAR).save_pretrained(small)     # 128 rows for 257 tokens
  _byte_vocab(small)
  capsys.readouterr()
  assert gpt_generate.main([f"--model_dir={small}", "--prompt=Hi"]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: ") and "do not match" in err and "\n" not in err
