"""Config validation: one-line ValueErrors naming the key."""
import ml_collections
import pytest

import train_fakes
from plm_jax.train.config import reference_config, validate_config


def _bert():
  return reference_config("bert")


def test_defaults_are_valid():
  validate_config(_bert(), num_devices=8)
  for size in ("tiny", "small", "base", "large"):
    import importlib.util, os  # noqa: E401
    from plm_jax.train import config as cfg
    spec = importlib.util.spec_from_file_location("b", os.path.join(cfg.REPO_CONFIG_DIR, "bert.py"))
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    validate_config(m.get_config(size), num_devices=1)


@pytest.mark.parametrize("path,value,message", [
    ("mlm.mask_rate", 1.5, "config.mlm.mask_rate=1.5: must be in (0, 1)"),
    ("mlm.mask_rate", "x", "config.mlm.mask_rate='x': must be a number"),
    ("mlm.nsp", 1, "config.mlm.nsp=1: must be a bool"),
    ("train.num_steps", 0, "config.train.num_steps=0: must be > 0"),
    ("model.dtype", "float16", "config.model.dtype='float16': unknown dtype"),
    ("model.num_heads", 5, "config.model.hidden_size=64: must be divisible by model.num_heads=5"),
    ("data.seq_length", 4096, "config.data.seq_length=4096: must be <= model.max_position"),
    ("optimizer.learning_rate", float("inf"), "config.optimizer.learning_rate=inf"),
    ("optimizer.decay", "step", "config.optimizer.decay='step': unknown"),
])
def test_bad_values_name_the_key(path, value, message):
  # A dict-built config (no ConfigDict type safety) exercises the type checks too.
  c = ml_collections.ConfigDict(_bert().to_dict(), type_safe=False)
  section, key = path.split(".")
  with c.unlocked():
    c[section][key] = value
  with pytest.raises(ValueError) as e:
    validate_config(c, num_devices=1)
  assert message in str(e.value) and "\n" not in str(e.value)


def test_unknown_and_missing_keys():
  c = _bert()
  with c.unlocked():
    c.train.bogus = 1
  with pytest.raises(ValueError, match=r"config.train.bogus: unknown key"):
    validate_config(c)
  c = _bert()
  with c.unlocked():
    del c.optimizer["b2"]
  with pytest.raises(ValueError, match=r"config.optimizer.b2: missing key"):
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
  validate_config(train_fakes.fake_config(), num_devices=8)  # no configs/fake.py: ranges only
