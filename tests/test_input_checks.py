"""Out-of-range token ids and token types: caught on the data path (every training batch) and,
in checked mode, in direct model.apply calls, with the id and its position."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import train_fakes
from plm_jax.models.bert import BertConfig, BertModel
from plm_jax.objectives import base
from plm_jax.train import evaluation, trainer

CFG = BertConfig(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                 max_position_embeddings=16, type_vocab_size=2, check_inputs=True)


@pytest.fixture(scope="module")
def bert():
  model = BertModel(CFG)
  ids = jnp.ones((2, 8), jnp.int32)
  return model, model.init(jax.random.key(0), ids)["params"]


@pytest.mark.parametrize("field,value,match", [
    ("input_ids", -1, r"input_ids\[1, 5\] = -1 at example 1, position 5 is out of range \[0, 50\)"),
    ("input_ids", 50, r"input_ids\[1, 5\] = 50 at example 1, position 5 is out of range \[0, 50\)"),
    ("token_type_ids", 2, r"token_type_ids\[1, 5\] = 2 at example 1, position 5 is out of range "
                          r"\[0, 2\) \(type_vocab_size\)"),
], ids=["id_-1", "id_vocab_size", "token_type_2"])
def test_checked_apply_names_the_id_and_its_position(bert, field, value, match):
  model, params = bert
  inputs = {"input_ids": np.ones((2, 8), np.int32), "token_type_ids": np.zeros((2, 8), np.int32)}
  inputs[field][1, 5] = value
  with pytest.raises(ValueError, match=match):
    model.apply({"params": params}, **inputs)
  if field != "input_ids" or value != -1:
    return
  # Under jit the check runs as a host callback; the run stops with the same message.
  with pytest.raises(Exception, match=match):
    jax.block_until_ready(jax.jit(lambda p, i: model.apply({"params": p}, **i))(params, inputs))
  # Unchecked (the default), the same call returns numbers: what the check is there for.
  plain = BertModel(CFG.replace(check_inputs=False))
  out = plain.apply({"params": params}, **inputs)
  assert out["last_hidden_state"].shape == (2, 8, 16)


@base.register("fake_tiny_lm_narrow_vocab")
class _NarrowVocab(train_fakes.FakeObjective):
  """The fake data's ids reach 63; this objective declares a vocabulary of 8."""

  def input_ranges(self):
    return {"ids": 8}


def test_data_path_batch_with_out_of_range_id_stops_the_run(tmp_path):
  c = train_fakes.fake_config(num_steps=2, eval_every=-1, params_export=False)
  c.objective = "fake_tiny_lm_narrow_vocab"
  with pytest.raises(ValueError, match=r"data \(train, step 1\): ids\[\d+, \d+\] = \d+ at "
                                       r"example \d+, position \d+ is out of range \[0, 8\)"):
    trainer.train_and_evaluate(c, str(tmp_path), devices=jax.devices()[:1])


def test_check_ranges_accepts_in_range_batches():
  batch = {"input_ids": np.arange(12).reshape(3, 4), "other": np.full((3,), 99)}
  evaluation.check_ranges(batch, {"input_ids": 12}, "train", 1)
  with pytest.raises(ValueError, match=r"input_ids\[2, 3\] = 11 at example 2, position 3"):
    evaluation.check_ranges(batch, {"input_ids": 11}, "train", 1)
