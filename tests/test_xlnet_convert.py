"""XLNet vs Hugging Face XLNetLMHeadModel: parity with random weights over two consecutive
segments (memory, perm_mask, target_mapping, padding, token types), export / import."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import plm_jax  # noqa: E402
from plm_jax.convert import registry  # noqa: E402
from plm_jax.convert.table import flatten  # noqa: E402
from plm_jax.models.xlnet import XLNetConfig, XLNetLMHeadModel  # noqa: E402
import hf_random

torch.set_num_threads(2)
TOL = 1e-4
B, L, P = 3, 12, 4
# bi with clamping, memory and reuse; uni (Transformer-XL causal) with same_length.
BI = dict(vocab_size=61, d_model=32, n_layer=2, n_head=2, d_inner=48, mem_len=8, reuse_len=6,
          clamp_len=5, attn_type="bi", ff_activation="gelu")
UNI = dict(vocab_size=53, d_model=24, n_layer=2, n_head=3, d_inner=40, mem_len=10,
           reuse_len=None, attn_type="uni", same_length=True, ff_activation="relu")


def hf_model(kw, seed=0):
  torch.manual_seed(seed)
  model = transformers.XLNetLMHeadModel(transformers.XLNetConfig(**kw)).eval()
  hf_random.randomize_(model)
  return model


def segment(vocab, seed):
  """ids, token types (A, B, then one CLS of type 2), attention mask (row 1 padded),
  a perm_mask from a random order, and a one-hot target_mapping of P positions."""
  rng = np.random.RandomState(seed)
  ids = rng.randint(0, vocab, size=(B, L))
  types = np.zeros((B, L), np.int64)
  types[:, L // 2:] = 1
  types[:, -1] = 2
  mask = np.ones((B, L), np.float32)
  mask[1, 9:] = 0
  perm = np.zeros((B, L, L), np.float32)
  tm = np.zeros((B, P, L), np.float32)
  for b in range(B):
    rank = rng.permutation(L)
    perm[b] = rank[None, :] >= rank[:, None]       # i may not see j later in the order, nor i
    targets = rng.choice(9, P, replace=False)       # real positions in every row
    tm[b, np.arange(P), targets] = 1
  return ids, types, mask, perm, tm


def torch_run(model, seg, mems):
  ids, types, mask, perm, tm = (None if x is None else torch.tensor(x) for x in seg)
  if model.config.attn_type == "uni":   # HF's uni path cannot add a data mask (in-place
    mask = perm = None                  # broadcast error): the causal mask alone there
  with torch.no_grad():
    out = model(ids, token_type_ids=types, attention_mask=mask, perm_mask=perm,
                target_mapping=tm, mems=mems, use_mems=True)
  return out.logits.numpy(), out.mems


@pytest.mark.parametrize("kw", [BI, pytest.param(UNI, marks=pytest.mark.slow)], ids=["bi", "uni"])
def test_parity_two_segments_export_import(tmp_path, kw):
  hf = hf_model(kw)
  hf.save_pretrained(tmp_path / "hf")
  model, params = plm_jax.load_pretrained(str(tmp_path / "hf"))
  assert isinstance(model, XLNetLMHeadModel) and isinstance(model.config, XLNetConfig)
  run = jax.jit(lambda p, s, m: model.apply(
      {"params": p}, s[0], token_type_ids=s[1], attention_mask=s[2], perm_mask=s[3],
      target_mapping=s[4], mems=m))
  seg1, seg2 = segment(kw["vocab_size"], 1), segment(kw["vocab_size"], 2)
  if kw["attn_type"] == "uni":
    seg1, seg2 = [s[:2] + (None, None) + s[4:] for s in (seg1, seg2)]
  ref1, hf_mems = torch_run(hf, seg1, None)
  ref2, hf_mems2 = torch_run(hf, seg2, hf_mems)
  out1 = run(params, seg1, None)
  out2 = run(params, seg2, out1["new_mems"])      # our own memory carried forward
  errors = {"logits1": np.abs(ref1 - out1["logits"]).max(),
            "logits2": np.abs(ref2 - out2["logits"]).max(),
            "mems2": max(np.abs(m.numpy().transpose(1, 0, 2) - out2["new_mems"][i]).max()
                         for i, m in enumerate(hf_mems2))}
  assert max(errors.values()) < TOL, errors
  assert out2["new_mems"].shape == (2, B, kw["mem_len"], kw["d_model"])
  # The memory matters: the second segment without it differs from HF's.
  assert np.abs(ref2 - run(params, seg2, jnp.zeros_like(out1["new_mems"]))["logits"]).max() > 1e-2

  registry.save_pretrained(params, model.config, str(tmp_path / "export"))
  back = transformers.XLNetLMHeadModel.from_pretrained(str(tmp_path / "export")).eval()
  assert np.abs(torch_run(back, seg1, None)[0] - ref1).max() < TOL
  _, again = plm_jax.load_pretrained(str(tmp_path / "export"))
  a, b = flatten(params), flatten(again)
  assert a.keys() == b.keys()
  assert all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


def test_bad_config_is_one_line(tmp_path):
  hf = transformers.XLNetConfig(vocab_size=20, d_model=16, n_layer=1, n_head=2, d_inner=8,
                                ff_activation="tanh")
  transformers.XLNetLMHeadModel(hf).save_pretrained(tmp_path)
  with pytest.raises(ValueError, match=r"config.json: ff_activation 'tanh'"):
    plm_jax.load_pretrained(str(tmp_path))
