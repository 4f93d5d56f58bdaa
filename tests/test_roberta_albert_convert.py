"""RoBERTa and ALBERT vs Hugging Face: parity with random weights, export/import, bad inputs."""
import json

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import plm_jax  # noqa: E402
from plm_jax.convert import registry  # noqa: E402
from plm_jax.convert.table import flatten  # noqa: E402
from plm_jax.models.albert import AlbertConfig, AlbertForPreTraining  # noqa: E402
from plm_jax.models.roberta import RobertaForMaskedLM  # noqa: E402
import hf_random

torch.set_num_threads(2)
TOL = 1e-4

ROBERTA_ODD = dict(vocab_size=97, hidden_size=36, num_hidden_layers=3, num_attention_heads=3,
                   intermediate_size=50, max_position_embeddings=40, type_vocab_size=1,
                   pad_token_id=1, layer_norm_eps=1e-5)
ROBERTA_REGULAR = dict(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=128, max_position_embeddings=34, type_vocab_size=1,
                       pad_token_id=1, layer_norm_eps=1e-5)
# Factorised (E != H) with odd sizes, all layers sharing one group of 2 inner layers; then
# 4 layers in 2 groups (layers 0-1 use group 0, layers 2-3 group 1).
ALBERT_SHARED = dict(vocab_size=89, embedding_size=12, hidden_size=36, num_hidden_layers=2,
                     num_attention_heads=3, intermediate_size=50, max_position_embeddings=32,
                     num_hidden_groups=1, inner_group_num=2, hidden_act="gelu_new")
ALBERT_GROUPS = dict(vocab_size=100, embedding_size=16, hidden_size=32, num_hidden_layers=4,
                     num_attention_heads=4, intermediate_size=40, max_position_embeddings=32,
                     num_hidden_groups=2, inner_group_num=1, hidden_act="gelu_new")


def _hf_model(cls, config_cls, kw, seed=0):
  """A transformers model with random, non-trivial weights (eval mode, eager attention)."""
  torch.manual_seed(seed)
  model = cls(config_cls(**kw, attn_implementation="eager")).eval()
  hf_random.randomize_(model)
  return model


def _inputs(vocab, pad_id, batch=4, length=16, seed=0):
  rng = np.random.RandomState(seed)
  ids = rng.randint(3, vocab, size=(batch, length))
  mask = np.ones((batch, length), np.int64)
  mask[1, 11:] = 0
  mask[3, 5:] = 0
  types = np.zeros((batch, length), np.int64)
  return np.where(mask > 0, ids, pad_id), types, mask


def _torch_out(model, ids, types, mask):
  with torch.no_grad():
    return model(torch.tensor(ids), attention_mask=torch.tensor(mask),
                 token_type_ids=torch.tensor(types), output_hidden_states=True)


def _apply(model, params, ids, mask, types):
  """One compiled forward pass (op-by-op dispatch compiles every op on its own: slower)."""
  fn = lambda p, i, m, t: model.apply({"params": p}, input_ids=i, attention_mask=m,
                                      token_type_ids=t)
  return jax.jit(fn)(params, ids, mask, types)


def _err(a, b, mask=None):
  d = np.abs(np.asarray(a) - np.asarray(b))
  if mask is not None:
    d = d[mask > 0]
  return float(d.max())


@pytest.mark.parametrize("kw", [ROBERTA_ODD, ROBERTA_REGULAR], ids=["odd", "regular"])
def test_roberta_parity_export_import(tmp_path, kw):
  hf = _hf_model(transformers.RobertaForMaskedLM, transformers.RobertaConfig, kw)
  hf.save_pretrained(tmp_path / "hf")
  model, params = plm_jax.load_pretrained(str(tmp_path / "hf"))
  assert isinstance(model, RobertaForMaskedLM)
  ids, types, mask = _inputs(kw["vocab_size"], kw["pad_token_id"])
  ref = _torch_out(hf, ids, types, mask)
  out = _apply(model, params, ids, mask, types)
  # Every position, padding included (RoBERTa's padding positions are well defined).
  errors = {"logits": _err(ref.logits.numpy(), out["logits"]),
            "hidden": _err(ref.hidden_states[-1].numpy(), out["last_hidden_state"])}
  assert max(errors.values()) < TOL, errors

  registry.save_pretrained(params, model.config, str(tmp_path / "export"))
  back = transformers.RobertaForMaskedLM.from_pretrained(str(tmp_path / "export"), attn_implementation="eager").eval()
  assert _err(_torch_out(back, ids, types, mask).logits.numpy(), ref.logits.numpy()) == 0.0
  _, again = plm_jax.load_pretrained(str(tmp_path / "export"))
  a, b = flatten(params), flatten(again)
  assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_roberta_checkpoint_without_pooler_gets_a_fresh_one_and_backbone_keeps_it(tmp_path):
  hf = _hf_model(transformers.RobertaModel, transformers.RobertaConfig, ROBERTA_ODD)
  hf.save_pretrained(tmp_path)
  model, params = plm_jax.load_pretrained(str(tmp_path))
  ids, types, mask = _inputs(ROBERTA_ODD["vocab_size"], 1)
  ref = _torch_out(hf, ids, types, mask)
  out = _apply(model, params, ids, mask, types)
  assert _err(ref.pooler_output.numpy(), out["pooler_output"]) < TOL


@pytest.mark.parametrize("kw", [ALBERT_SHARED, ALBERT_GROUPS], ids=["shared", "groups"])
def test_albert_parity_export_import(tmp_path, kw):
  hf = _hf_model(transformers.AlbertForPreTraining, transformers.AlbertConfig, kw)
  hf.save_pretrained(tmp_path / "hf")
  model, params = plm_jax.load_pretrained(str(tmp_path / "hf"))
  assert isinstance(model, AlbertForPreTraining)
  assert model.config.num_hidden_groups == kw["num_hidden_groups"]
  ids, types, mask = _inputs(kw["vocab_size"], 0)
  types[:, 6:] = 1
  ref = _torch_out(hf, ids, types, mask)
  out = _apply(model, params, ids, mask, types)
  errors = {"mlm": _err(ref.prediction_logits.numpy(), out["prediction_logits"], mask),
            "sop": _err(ref.sop_logits.numpy(), out["sop_logits"]),
            "hidden": _err(ref.hidden_states[-1].numpy(), out["last_hidden_state"], mask)}
  assert max(errors.values()) < TOL, errors

  registry.save_pretrained(params, model.config, str(tmp_path / "export"))
  back = transformers.AlbertForPreTraining.from_pretrained(str(tmp_path / "export"), attn_implementation="eager").eval()
  assert _err(_torch_out(back, ids, types, mask).sop_logits.numpy(), ref.sop_logits.numpy()) == 0.0
  _, again = plm_jax.load_pretrained(str(tmp_path / "export"))
  a, b = flatten(params), flatten(again)
  assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_albert_partial_sharing_cannot_be_exported(tmp_path):
  cfg = AlbertConfig(vocab_size=30, embedding_size=8, hidden_size=16, num_layers=2, num_heads=2,
                     intermediate_size=20, share_mode="attention", max_position_embeddings=16)
  shapes = jax.eval_shape(AlbertForPreTraining(cfg).init, jax.random.key(0), np.ones((1, 4), np.int32))
  params = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes["params"])
  with pytest.raises(ValueError, match="share_mode='attention'.*whole layers only"):
    registry.save_pretrained(params, cfg, str(tmp_path))


def test_bad_inputs_are_one_line_errors(tmp_path):
  hf = _hf_model(transformers.AlbertForPreTraining, transformers.AlbertConfig, ALBERT_SHARED)
  hf.save_pretrained(tmp_path / "albert")
  # An HF directory of the other family.
  with pytest.raises(ValueError, match="a 'albert' checkpoint, not 'roberta'") as e:
    registry.get_converter("roberta").load_pretrained(str(tmp_path / "albert"))
  assert "\n" not in str(e.value)
  # Sharing groups that do not divide the layers.
  path = tmp_path / "albert" / "config.json"
  config = json.loads(path.read_text())
  config["num_hidden_groups"], config["num_hidden_layers"] = 2, 3
  path.write_text(json.dumps(config))
  with pytest.raises(ValueError, match=r"num_hidden_groups=2 must divide num_hidden_layers=3") as e:
    plm_jax.load_pretrained(str(tmp_path / "albert"))
  assert "\n" not in str(e.value)
