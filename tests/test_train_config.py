"""Config validation: the trainer checks train / optimizer / mesh, the objective its own
sections; every problem is a one-line ValueError naming the key."""
import importlib.util
import os

import ml_collections
import pytest

import train_fakes
from plm_jax.objectives.bert_pretrain import BertMlmNsp
from plm_jax.train.config import validate_config

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def _bert(size="tiny"):
  spec = importlib.util.spec_from_file_location("bert_configs", os.path.join(CONFIGS, "bert.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(size)


@pytest.mark.parametrize("size", ["tiny", "small", "base", "large"])
def test_config_files_are_valid(size):
  run, objective = validate_config(_bert(size), num_devices=1)
  assert run.train.batch_size > 0 and objective.name == "bert_mlm_nsp"


def test_objective_defaults_make_a_complete_config():
  """The objective owns its sections' defaults: default_config() alone validates."""
  c = BertMlmNsp.default_config()
  assert sorted(c.keys()) == ["data", "mesh", "mlm", "model", "objective", "optimizer", "seed",
                              "train"]
  run, objective = validate_config(c, num_devices=1)
  assert objective.mlm.mask_rate == 0.15 and run.optimizer.name == "adamw"
  # A section left out of the ConfigDict takes the objective's defaults key by key.
  with c.unlocked():
    del c.mlm["whole_word_masking"]
  assert validate_config(c)[1].mlm.whole_word_masking is False


@pytest.mark.parametrize("path,value,message", [
    ("mlm.mask_rate", 1.5, "config.mlm.mask_rate=1.5: must be < 1.0"),
    ("mlm.mask_rate", "x", "config.mlm.mask_rate='x': must be a number"),
    ("mlm.nsp", 1, "config.mlm.nsp=1: must be a bool"),
    ("mlm.random_token_prob", 0.5, "mask_token_prob + random_token_prob = 1.3 must be <= 1"),
    ("train.num_steps", 0, "config.train.num_steps=0: must be > 0"),
    ("model.dtype", "float16", "config.model.dtype='float16': unknown dtype"),
    ("model.num_heads", 5, "config.model.hidden_size=64: must be divisible by config.model."
                           "num_heads=5"),
    ("data.seq_length", 4096, "config.data.seq_length=4096: must be <= model.max_position"),
    ("data.corpus.type", "web", "config.data.corpus.type='web': unknown; choose one of"),
    ("optimizer.learning_rate", float("inf"), "config.optimizer.learning_rate=inf"),
    ("optimizer.decay", "step", "config.optimizer.decay='step': unknown"),
])
def test_bad_values_name_the_key(path, value, message):
  # A dict-built config (no ConfigDict type safety) exercises the type checks too.
  c = ml_collections.ConfigDict(_bert().to_dict(), type_safe=False)
  *parents, key = path.split(".")
  node = c
  for p in parents:
    node = node[p]
  with c.unlocked():
    node[key] = value
  with pytest.raises(ValueError) as e:
    validate_config(c, num_devices=1)
  assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_unknown_keys():
  for section in ("train", "mlm", "data.corpus"):
    c = _bert()
    node = c
    for p in section.split("."):
      node = node[p]
    with c.unlocked():
      node.bogus = 1
    with pytest.raises(ValueError, match=rf"config.{section}.bogus: unknown key"):
      validate_config(c)
  c = _bert()
  with c.unlocked():
    c.trian = ml_collections.ConfigDict()
  with pytest.raises(ValueError, match=r"config.trian: unknown key; known top-level keys"):
    validate_config(c)
  c.objective = "bert_mlm_nsp2"
  with pytest.raises(ValueError, match=r"config.objective='bert_mlm_nsp2': unknown objective"):
    validate_config(c)


def test_batch_divisibility():
  c = _bert()
  c.train.update(batch_size=30, grad_accum_steps=4)
  with pytest.raises(ValueError, match=r"^config.train.batch_size=30: must be divisible by "
                                       r"grad_accum_steps=4$"):
    validate_config(c, num_devices=1)
  c.train.update(batch_size=36, grad_accum_steps=3)
  with pytest.raises(ValueError, match=r"data-parallel size \(data\*fsdp=8\)"):
    validate_config(c, num_devices=8)
  validate_config(train_fakes.fake_config(), num_devices=8)  # an objective with no sections
