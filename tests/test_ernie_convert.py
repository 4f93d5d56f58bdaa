"""ERNIE vs Hugging Face ErnieForPreTraining: parity with random weights with and without the
task-type table, export then import exact, the export loads in from_pretrained."""
import json

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import plm_jax  # noqa: E402
from plm_jax.convert import registry  # noqa: E402
from plm_jax.models.ernie import ErnieForPreTraining  # noqa: E402
import hf_random

torch.set_num_threads(2)
TOL = 1e-4

ODD = dict(vocab_size=97, hidden_size=36, num_hidden_layers=2, num_attention_heads=3,
           intermediate_size=50, max_position_embeddings=40, hidden_act="relu")
TASK = dict(vocab_size=80, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=24, use_task_id=True,
            task_type_vocab_size=3)


def _hf_model(kw, seed=0):
  """ErnieForPreTraining with random, non-trivial weights (eval mode, eager attention)."""
  torch.manual_seed(seed)
  model = transformers.ErnieForPreTraining(
      transformers.ErnieConfig(**kw, attn_implementation="eager")).eval()
  hf_random.randomize_(model)
  return model


def _inputs(vocab, batch=3, length=16, seed=0):
  rng = np.random.RandomState(seed)
  ids = rng.randint(1, vocab, size=(batch, length))
  mask = np.ones((batch, length), np.int64)
  mask[1, 11:] = 0
  mask[2, 5:] = 0
  types = np.zeros((batch, length), np.int64)
  types[:, 7:] = 1
  tasks = rng.randint(0, 3, size=(batch, length))
  return np.where(mask > 0, ids, 0), types, mask, tasks


def _compare(hf, model, params, ids, types, mask, tasks=None):
  kw = {} if tasks is None else {"task_type_ids": tasks}
  with torch.no_grad():
    ref = hf(torch.tensor(ids), attention_mask=torch.tensor(mask),
             token_type_ids=torch.tensor(types), output_hidden_states=True,
             **{k: torch.tensor(v) for k, v in kw.items()})
  out = model.apply({"params": params}, input_ids=ids, attention_mask=mask, token_type_ids=types,
                    **kw)
  pairs = {"last_hidden_state": ref.hidden_states[-1], "prediction_logits": ref.prediction_logits,
           "seq_relationship_logits": ref.seq_relationship_logits}
  assert float(ref.prediction_logits.std()) > 0.5    # non-trivial values
  return {k: float(np.abs(v.numpy() - np.asarray(out[k])).max()) for k, v in pairs.items()}


def test_parity_without_task_ids(tmp_path):
  hf = _hf_model(ODD)
  hf.save_pretrained(tmp_path)
  model, params = plm_jax.load_pretrained(str(tmp_path))
  assert isinstance(model, ErnieForPreTraining) and not model.config.use_task_id
  assert "task_type_embeddings" not in params["bert"]["embeddings"]
  errors = _compare(hf, model, params, *_inputs(ODD["vocab_size"])[:3])
  print(f"ernie parity, no task-type table: {errors}")
  assert all(e < TOL for e in errors.values()), errors


def test_task_ids_parity_export_import_exact_and_hf_loads_it(tmp_path):
  hf = _hf_model(TASK, seed=1)
  hf.save_pretrained(tmp_path / "hf")
  model, params = plm_jax.load_pretrained(str(tmp_path / "hf"))
  assert model.config.use_task_id and model.config.task_type_vocab_size == 3
  assert "task_type_embeddings" in params["bert"]["embeddings"]
  ids, types, mask, tasks = _inputs(TASK["vocab_size"])
  errors = _compare(hf, model, params, ids, types, mask)                  # task ids default 0
  errors.update({k + "+task_ids": v
                 for k, v in _compare(hf, model, params, ids, types, mask, tasks).items()})
  print(f"ernie parity, task-type table: {errors}")
  assert all(e < TOL for e in errors.values()), errors
  # The task ids matter: other task ids give other logits.
  moved = model.apply({"params": params}, input_ids=ids, attention_mask=mask,
                      token_type_ids=types, task_type_ids=(tasks + 1) % 3)
  base = model.apply({"params": params}, input_ids=ids, attention_mask=mask,
                     token_type_ids=types, task_type_ids=tasks)
  assert np.abs(np.asarray(moved["prediction_logits"] - base["prediction_logits"])).max() > 0.1

  registry.save_pretrained(params, model.config, str(tmp_path / "export"))
  config = json.loads((tmp_path / "export" / "config.json").read_text())
  assert config["model_type"] == "ernie" and config["architectures"] == ["ErnieForPreTraining"]
  assert config["use_task_id"] is True and config["task_type_vocab_size"] == 3
  _, params2 = plm_jax.load_pretrained(str(tmp_path / "export"))
  flat1 = jax.tree_util.tree_leaves_with_path(params)
  flat2 = jax.tree_util.tree_leaves_with_path(params2)
  assert [p for p, _ in flat1] == [p for p, _ in flat2]
  for (path, a), (_, b) in zip(flat1, flat2):
    assert np.array_equal(np.asarray(a), np.asarray(b)), jax.tree_util.keystr(path)
  reloaded, info = transformers.ErnieForPreTraining.from_pretrained(
      str(tmp_path / "export"), output_loading_info=True, attn_implementation="eager")
  assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
  reloaded.eval()
  with torch.no_grad():
    t = {k: torch.tensor(v) for k, v in
         dict(input_ids=ids, attention_mask=mask, token_type_ids=types, task_type_ids=tasks).items()}
    a, b = hf(**t), reloaded(**t)
  np.testing.assert_array_equal(a.prediction_logits.numpy(), b.prediction_logits.numpy())
  np.testing.assert_array_equal(a.seq_relationship_logits.numpy(),
                                b.seq_relationship_logits.numpy())


def test_task_type_table_only_with_use_task_id(tmp_path):
  """A checkpoint whose config says use_task_id=False but holds the table is an error naming it."""
  hf = _hf_model(TASK, seed=2)
  hf.save_pretrained(tmp_path)
  config = json.loads((tmp_path / "config.json").read_text())
  config["use_task_id"] = False
  (tmp_path / "config.json").write_text(json.dumps(config))
  with pytest.raises(Exception, match="task_type_embeddings"):
    plm_jax.load_pretrained(str(tmp_path))
