"""GPT-1 and GPT-2 vs Hugging Face: parity with random weights, export/import, bad configs."""
import json

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import plm_jax  # noqa: E402
from plm_jax.convert import registry  # noqa: E402
from plm_jax.convert.table import flatten  # noqa: E402
from plm_jax.models.gpt import GPT2Config, GPTLMHeadModel, OpenAIGPTConfig  # noqa: E402
import hf_random

torch.set_num_threads(2)
TOL = 1e-4

GPT1_ODD = dict(vocab_size=97, n_positions=40, n_embd=36, n_layer=3, n_head=3)
GPT1_REGULAR = dict(vocab_size=120, n_positions=32, n_embd=64, n_layer=2, n_head=4)
GPT2_ODD = dict(vocab_size=89, n_positions=40, n_embd=36, n_layer=3, n_head=3, n_inner=50)
GPT2_REGULAR = dict(vocab_size=128, n_positions=32, n_embd=64, n_layer=2, n_head=4)
KINDS = {"gpt1": (transformers.OpenAIGPTLMHeadModel, transformers.OpenAIGPTConfig),
         "gpt2": (transformers.GPT2LMHeadModel, transformers.GPT2Config)}


def hf_model(kind, kw, seed=0):
  """A transformers LM with random, non-trivial weights (eval mode, eager attention)."""
  cls, config_cls = KINDS[kind]
  torch.manual_seed(seed)
  model = cls(config_cls(**kw, attn_implementation="eager")).eval()
  hf_random.randomize_(model)
  return model


def padded_inputs(vocab, batch=4, length=16, seed=0):
  """Right-padded ids (pad id 0) and the attention mask."""
  rng = np.random.RandomState(seed)
  ids = rng.randint(1, vocab, size=(batch, length))
  mask = np.ones((batch, length), np.int64)
  mask[1, 11:] = 0
  mask[3, 5:] = 0
  return np.where(mask > 0, ids, 0), mask


def torch_logits(model, ids, mask):
  with torch.no_grad():
    out = model(torch.tensor(ids), attention_mask=torch.tensor(mask), output_hidden_states=True)
  return out.logits.numpy(), out.hidden_states[-1].numpy()


def max_err(a, b, mask):
  return float(np.abs(np.asarray(a) - np.asarray(b))[mask > 0].max())


@pytest.mark.parametrize("kind,kw", [("gpt1", GPT1_ODD), ("gpt1", GPT1_REGULAR),
                                     ("gpt2", GPT2_ODD), ("gpt2", GPT2_REGULAR)],
                         ids=["gpt1-odd", "gpt1-regular", "gpt2-odd", "gpt2-regular"])
def test_parity_export_import(tmp_path, kind, kw):
  hf = hf_model(kind, kw)
  hf.save_pretrained(tmp_path / "hf")
  model, params = plm_jax.load_pretrained(str(tmp_path / "hf"))
  assert isinstance(model, GPTLMHeadModel)
  assert type(model.config) is (OpenAIGPTConfig if kind == "gpt1" else GPT2Config)
  ids, mask = padded_inputs(kw["vocab_size"])
  ref_logits, ref_hidden = torch_logits(hf, ids, mask)
  out = jax.jit(lambda p, i, m: model.apply({"params": p}, i, attention_mask=m))(params, ids, mask)
  # Real tokens (padding's states are never read; HF's GPT-1 gives them no finite meaning).
  errors = {"logits": max_err(ref_logits, out["logits"], mask),
            "hidden": max_err(ref_hidden, out["last_hidden_state"], mask)}
  assert max(errors.values()) < TOL, errors

  registry.save_pretrained(params, model.config, str(tmp_path / "export"))
  cls = KINDS[kind][0]
  back = cls.from_pretrained(str(tmp_path / "export"), attn_implementation="eager").eval()
  assert max_err(torch_logits(back, ids, mask)[0], ref_logits, mask) == 0.0
  _, again = plm_jax.load_pretrained(str(tmp_path / "export"))
  a, b = flatten(params), flatten(again)
  assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_backbone_checkpoint_loads_with_the_tied_head(tmp_path):
  torch.manual_seed(0)
  hf = transformers.GPT2Model(transformers.GPT2Config(**GPT2_REGULAR)).eval()
  hf.save_pretrained(tmp_path)
  model, params = plm_jax.load_pretrained(str(tmp_path))
  assert isinstance(model, GPTLMHeadModel)
  np.testing.assert_array_equal(np.asarray(params["transformer"]["wte"]["embedding"]),
                                hf.wte.weight.detach().numpy())


def test_untied_head_and_unsupported_config_are_one_line_errors(tmp_path):
  hf = hf_model("gpt2", GPT2_REGULAR)
  hf.save_pretrained(tmp_path / "ok")
  from safetensors.numpy import load_file, save_file
  tensors = load_file(str(tmp_path / "ok" / "model.safetensors"))
  tensors["lm_head.weight"] = tensors["transformer.wte.weight"] + 1.0
  (tmp_path / "untied").mkdir()
  save_file(tensors, str(tmp_path / "untied" / "model.safetensors"))
  config = json.loads((tmp_path / "ok" / "config.json").read_text())
  (tmp_path / "untied" / "config.json").write_text(json.dumps(config))
  with pytest.raises(ValueError, match="lm_head.weight should be tied"):
    plm_jax.load_pretrained(str(tmp_path / "untied"))
  (tmp_path / "ok" / "config.json").write_text(json.dumps(dict(config,
                                                              scale_attn_by_inverse_layer_idx=True)))
  with pytest.raises(ValueError, match="config.json: scale_attn_by_inverse_layer_idx"):
    plm_jax.load_pretrained(str(tmp_path / "ok"))
