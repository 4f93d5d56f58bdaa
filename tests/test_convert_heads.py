"""Common BERT checkpoint shapes beyond BertForPreTraining: BertForMaskedLM (no NSP head, no
pooler) and BertModel without a pooler; only floating-point tensors become parameters."""
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import plm_jax  # noqa: E402
from plm_jax.convert.table import ConversionError  # noqa: E402
from plm_jax.models.bert import BertForPreTraining, BertModel  # noqa: E402
from test_convert_bert import ODD, TOL, _hf_model, _inputs  # noqa: E402


def _apply(model, params, ids, types, mask):
  return model.apply({"params": params}, input_ids=jnp.asarray(ids),
                     token_type_ids=jnp.asarray(types), attention_mask=jnp.asarray(mask))


def test_bert_for_masked_lm_loads_with_heads_dropped_or_fresh(tmp_path, caplog):
  hf = _hf_model(transformers.BertForMaskedLM, ODD, seed=5)
  hf.save_pretrained(tmp_path)
  ids, types, mask = _inputs(ODD["vocab_size"], seed=1)
  with torch.no_grad():
    ref = hf(torch.tensor(ids), attention_mask=torch.tensor(mask),
             token_type_ids=torch.tensor(types), output_hidden_states=True)
  hidden, logits = ref.hidden_states[-1].numpy(), ref.logits.numpy()
  # Backbone only: the MLM head dropped, the pooler (not in the checkpoint) fresh.
  model, params = plm_jax.load_pretrained(str(tmp_path), with_heads=False)
  assert isinstance(model, BertModel) and "pooler" in params
  out = _apply(model, params, ids, types, mask)
  assert np.abs(np.asarray(out["last_hidden_state"]) - hidden).max() < TOL
  # With heads: the MLM head from the checkpoint, NSP head + pooler fresh (default and "init").
  for with_heads in (None, "init"):
    caplog.clear()
    model, params = plm_jax.load_pretrained(str(tmp_path), with_heads=with_heads)
    assert isinstance(model, BertForPreTraining)
    out = _apply(model, params, ids, types, mask)
    assert np.abs(np.asarray(out["prediction_logits"]) - logits).max() < TOL
    fresh = " ".join(r.getMessage() for r in caplog.records)
    assert "nsp_head/kernel" in fresh and "bert/pooler/dense/kernel" in fresh
  with pytest.raises(ConversionError, match="nsp_head/kernel"):   # every head required
    plm_jax.load_pretrained(str(tmp_path), with_heads=True)


def test_bert_model_without_pooler_loads(tmp_path):
  torch.manual_seed(0)
  hf = transformers.BertModel(transformers.BertConfig(**ODD, attn_implementation="eager"),
                              add_pooling_layer=False).eval()
  hf.save_pretrained(tmp_path)
  ids, types, mask = _inputs(ODD["vocab_size"], seed=2)
  with torch.no_grad():
    hidden = hf(torch.tensor(ids), attention_mask=torch.tensor(mask),
                token_type_ids=torch.tensor(types)).last_hidden_state.numpy()
  model, params = plm_jax.load_pretrained(str(tmp_path))
  assert isinstance(model, BertModel)
  out = _apply(model, params, ids, types, mask)
  assert np.abs(np.asarray(out["last_hidden_state"]) - hidden).max() < TOL
  assert out["pooler_output"].shape == (ids.shape[0], ODD["hidden_size"])


def test_integer_tensor_is_an_error_naming_it(tmp_path):
  from safetensors.torch import load_file, save_file
  _hf_model(transformers.BertModel, ODD).save_pretrained(tmp_path)
  tensors = load_file(str(tmp_path / "model.safetensors"))
  name = "encoder.layer.1.attention.self.query.weight"
  tensors[name] = (tensors[name] * 100).to(torch.int8)
  save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
  with pytest.raises(ConversionError, match=rf"tensor bert\.{name} has dtype int8; parameters "
                                            r"must be floating point"):
    plm_jax.load_pretrained(str(tmp_path))
