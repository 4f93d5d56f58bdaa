"""ELECTRA vs Hugging Face: parity with random weights (discriminator and generator), export /
import round trips, and the pretraining model rebuilt from the two directories."""
import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import plm_jax  # noqa: E402
from plm_jax.convert import registry  # noqa: E402
from plm_jax.convert.table import flatten  # noqa: E402
from plm_jax.models import electra  # noqa: E402
import hf_random

torch.set_num_threads(2)
TOL = 1e-4

# Factorised (E != H, odd sizes) and unfactorised (E == H: no embeddings_project).
FACTORISED = dict(vocab_size=97, embedding_size=20, hidden_size=36, num_hidden_layers=2,
                  num_attention_heads=3, intermediate_size=50, max_position_embeddings=40)
SQUARE = dict(vocab_size=80, embedding_size=32, hidden_size=32, num_hidden_layers=2,
              num_attention_heads=4, intermediate_size=64, max_position_embeddings=24)


def _hf_model(cls, kw, seed=0):
  """A transformers model with random, non-trivial weights (eval mode, eager attention)."""
  torch.manual_seed(seed)
  model = cls(transformers.ElectraConfig(**kw, attn_implementation="eager")).eval()
  hf_random.randomize_(model)
  return model


def _inputs(vocab, batch=3, length=16, seed=0):
  rng = np.random.RandomState(seed)
  ids = rng.randint(3, vocab, size=(batch, length))
  mask = np.ones((batch, length), np.int64)
  mask[1, 11:] = 0
  mask[2, 5:] = 0
  types = np.zeros((batch, length), np.int64)
  types[:, 7:] = 1
  return np.where(mask > 0, ids, 0), types, mask


def _torch(model, ids, types, mask):
  with torch.no_grad():
    return model(torch.tensor(ids), attention_mask=torch.tensor(mask),
                 token_type_ids=torch.tensor(types), output_hidden_states=True)


def _apply(model, params, ids, mask, types, **kw):
  fn = lambda p, i, m, t: model.apply({"params": p}, input_ids=i, attention_mask=m,
                                      token_type_ids=t, **kw)
  return jax.jit(fn)(params, ids, mask, types)


def _err(a, b, mask=None):
  d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
  if mask is not None:
    d = d[mask > 0]
  return float(d.max())


def _same(p, q):
  a, b = flatten(p), flatten(q)
  return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("kw", [FACTORISED, SQUARE], ids=["factorised", "square"])
def test_discriminator_and_generator_parity_and_round_trip(tmp_path, kw):
  ids, types, mask = _inputs(kw["vocab_size"])
  for cls, head in ((transformers.ElectraForPreTraining, electra.ElectraForPreTraining),
                    (transformers.ElectraForMaskedLM, electra.ElectraForMaskedLM)):
    hf = _hf_model(cls, kw)
    hf.save_pretrained(tmp_path / cls.__name__)
    model, params = plm_jax.load_pretrained(str(tmp_path / cls.__name__))
    assert type(model) is head
    assert ("embeddings_project" in params["electra"]) == (kw["embedding_size"] != kw["hidden_size"])
    ref = _torch(hf, ids, types, mask)
    out = _apply(model, params, ids, mask, types)
    errors = {"logits": _err(ref.logits.numpy(), out["logits"], mask),
              "hidden": _err(ref.hidden_states[-1].numpy(), out["last_hidden_state"], mask)}
    assert max(errors.values()) < TOL, (cls.__name__, errors)

    export = tmp_path / f"export_{cls.__name__}"
    registry.save_pretrained(params, model.config, str(export))
    back = cls.from_pretrained(str(export), attn_implementation="eager").eval()
    assert _err(_torch(back, ids, types, mask).logits.numpy(), ref.logits.numpy()) == 0.0
    model2, again = plm_jax.load_pretrained(str(export))
    assert type(model2) is head and _same(params, again)


def test_pretraining_model_rebuilt_from_two_directories(tmp_path):
  """HF discriminator + generator (1/4 hidden, sharing the embeddings) -> one
  ElectraPretrainingModel whose two halves compute what the HF models compute."""
  gen_kw = dict(FACTORISED, hidden_size=12, num_attention_heads=1, intermediate_size=48)
  disc = _hf_model(transformers.ElectraForPreTraining, FACTORISED, seed=0)
  gen = _hf_model(transformers.ElectraForMaskedLM, gen_kw, seed=1)
  gen.electra.embeddings.load_state_dict(disc.electra.embeddings.state_dict())
  disc.save_pretrained(tmp_path / "disc")
  gen.save_pretrained(tmp_path / "gen")
  dmodel, dparams = plm_jax.load_pretrained(str(tmp_path / "disc"))
  gmodel, gparams = plm_jax.load_pretrained(str(tmp_path / "gen"))
  params = electra.join_pretraining_params(dparams, gparams)
  model = electra.ElectraPretrainingModel(dmodel.config, gmodel.config)
  ids, types, mask = _inputs(FACTORISED["vocab_size"])
  positions = np.array([[1, 4, 9], [2, 3, 10], [1, 2, 4]])
  mlm, rtd = jax.jit(lambda p: model.apply({"params": p}, ids, mask, types, positions))(params)
  ref_rtd = _torch(disc, ids, types, mask).logits.numpy()
  ref_mlm = np.take_along_axis(_torch(gen, ids, types, mask).logits.numpy(),
                               positions[..., None], axis=1)
  assert _err(ref_rtd, rtd, mask) < TOL and _err(ref_mlm, mlm) < TOL
  d2, g2 = electra.split_pretraining_params(params)
  assert _same(d2, dparams) and _same(g2, gparams)
  # Embeddings that differ cannot be one pretraining checkpoint.
  gparams["electra"]["embeddings"]["layer_norm"]["bias"] = np.ones_like(
      gparams["electra"]["embeddings"]["layer_norm"]["bias"])
  with pytest.raises(ValueError, match="embeddings/layer_norm/bias differs") as e:
    electra.join_pretraining_params(dparams, gparams)
  assert "\n" not in str(e.value)
