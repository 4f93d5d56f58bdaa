"""The converter registry and the export format: dispatch on model_type, a family registered
from outside the package, save_export/load_export round trips, the old bert_config.json export."""
import dataclasses
import json
import os
from typing import Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import plm_jax
from plm_jax.convert import cli, export, registry
from plm_jax.convert.table import Rule
from plm_jax.models.bert import BertConfig


# ---- a tiny family defined here, outside plm_jax --------------------------------------------

@dataclasses.dataclass(frozen=True)
class ToyConfig:
  size: int = 3
  names: Tuple[str, ...] = ("a", "b")
  dtype: str = "float32"


class ToyModel(nn.Module):
  config: ToyConfig

  @nn.compact
  def __call__(self, input_ids, attention_mask=None, token_type_ids=None):
    scale = self.param("scale", nn.initializers.ones, (self.config.size,))
    return {"last_hidden_state": input_ids[..., None].astype(jnp.float32) * scale}


class ToyConverter(registry.Converter):
  model_type = "toy"
  config_class = ToyConfig
  base_model_class = ToyModel
  rules = (Rule("toy.scale", "scale"),)

  def config_from_hf(self, hf_config, source="config.json"):
    return ToyConfig(size=hf_config["toy_size"], names=tuple(hf_config.get("toy_names", ())))

  def config_to_hf(self, cfg, with_heads=True):
    return {"model_type": "toy", "toy_size": cfg.size, "toy_names": list(cfg.names)}


@pytest.fixture
def toy():
  registry.register(ToyConverter())
  yield
  registry.unregister("toy")


def _write_hf(path, config, tensors):
  from safetensors.numpy import save_file
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(config, f)
  save_file(tensors, os.path.join(path, "model.safetensors"))


def _leaves_equal(a, b):
  la, lb = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
  assert [p for p, _ in la] == [p for p, _ in lb]
  for (path, x), (_, y) in zip(la, lb):
    assert np.array_equal(np.asarray(x), np.asarray(y)), jax.tree_util.keystr(path)


def test_family_registered_from_a_test_file_imports_and_round_trips(tmp_path, toy):
  assert "toy" in registry.registered_types() and "bert" in registry.registered_types()
  scale = np.array([0.5, -2.0, 3.0, 7.0], np.float32)
  _write_hf(str(tmp_path / "hf"), {"model_type": "toy", "toy_size": 4, "toy_names": ["x"]},
            {"toy.scale": scale})
  model, params = plm_jax.load_pretrained(str(tmp_path / "hf"))
  assert isinstance(model, ToyModel) and model.config == ToyConfig(size=4, names=("x",))
  out = model.apply({"params": params}, input_ids=jnp.array([[1, 2]]))
  np.testing.assert_array_equal(np.asarray(out["last_hidden_state"][0, 1]), 2 * scale)

  out_dir = export.save_export(str(tmp_path / "exp"), params, model.config, "toy")
  record = json.loads((tmp_path / "exp" / "plm_config.json").read_text())
  assert out_dir == str(tmp_path / "exp")
  assert record == {"family": "toy", "config_class": f"{ToyConfig.__module__}.ToyConfig",
                    "config": {"size": 4, "names": ["x"], "dtype": "float32"}}
  for where in ("exp", "exp/params"):  # the params/ dir itself is accepted too
    family, cfg, loaded = export.load_export(str(tmp_path / where))
    assert family == "toy" and cfg == model.config  # names back as a tuple
    _leaves_equal(params, loaded)

  # CLI: export dispatches on the family, import writes the new format.
  assert cli.main(["export", "--params", str(tmp_path / "exp"), "--out", str(tmp_path / "hf2")]) == 0
  _, params2 = plm_jax.load_pretrained(str(tmp_path / "hf2"))
  _leaves_equal(params, params2)
  assert cli.main(["import", "--hf_dir", str(tmp_path / "hf2"), "--out", str(tmp_path / "exp2")]) == 0
  assert export.load_export(str(tmp_path / "exp2"))[:2] == ("toy", model.config)
  with pytest.raises(ValueError, match="no field 'scan_layers'"):
    plm_jax.load_pretrained(str(tmp_path / "hf"), scan_layers=True)


def test_register_refuses_a_taken_model_type(toy):
  class Other(ToyConverter):
    pass
  with pytest.raises(ValueError, match="already registered"):
    registry.register(Other())
  with pytest.raises(ValueError, match="not a Converter"):
    registry.register(object())


def test_unknown_model_type_is_one_line_listing_the_registered(tmp_path):
  _write_hf(str(tmp_path), {"model_type": "gpt9", "n_embd": 8}, {"wte.weight": np.zeros((5, 8), np.float32)})
  with pytest.raises(ValueError) as err:
    plm_jax.load_pretrained(str(tmp_path))
  message = str(err.value)
  assert "\n" not in message and "gpt9" in message and "bert" in message, message
  assert str(tmp_path / "config.json") in message, message


def test_architectures_are_used_only_without_model_type():
  conv = registry.converter_for_hf_config({"architectures": ["BertForMaskedLM"]})
  assert conv.model_type == "bert" and conv.config_class is BertConfig
  with pytest.raises(ValueError, match="gpt9"):
    registry.converter_for_hf_config({"model_type": "gpt9", "architectures": ["BertModel"]})
  with pytest.raises(ValueError, match=r"no model_type.*registered: .*bert"):
    registry.converter_for_hf_config({"architectures": ["Gpt9Model"]}, "x/config.json")


# ---- the export format -------------------------------------------------------------------------

TINY = BertConfig(vocab_size=50, hidden_size=8, num_layers=2, num_heads=2, intermediate_size=16,
                  max_position_embeddings=16)


def test_old_bert_config_json_export_still_reads_and_exports(tmp_path):
  import orbax.checkpoint as ocp
  conv = registry.get_converter("bert")
  shapes = jax.eval_shape(lambda: conv.init_params(TINY, True, jax.random.key(0)))
  rng = np.random.RandomState(0)  # random values without paying for a real init
  params = jax.tree_util.tree_map(lambda s: rng.randn(*s.shape).astype(np.float32), shapes)
  ckptr = ocp.StandardCheckpointer()
  ckptr.save(str(tmp_path / "old" / "params"), params)  # what the old trainer/CLI wrote
  ckptr.wait_until_finished()
  ckptr.close()
  (tmp_path / "old" / "bert_config.json").write_text(json.dumps(dataclasses.asdict(TINY)))
  family, cfg, loaded = export.load_export(str(tmp_path / "old"))
  assert family == "bert" and cfg == TINY
  _leaves_equal(params, loaded)
  assert cli.main(["export", "--params", str(tmp_path / "old"), "--out", str(tmp_path / "hf")]) == 0
  model, reimported = plm_jax.load_pretrained(str(tmp_path / "hf"))
  assert type(model).__name__ == "BertForPreTraining"
  _leaves_equal(params, reimported)
  # New format: backbone-only bfloat16 params come back as float32.
  backbone = jax.tree_util.tree_map(lambda x: x.astype(jnp.bfloat16), params["bert"])
  export.save_export(str(tmp_path / "new"), backbone, TINY.replace(dtype="bfloat16"), "bert")
  family, cfg, loaded = export.load_export(str(tmp_path / "new"))
  assert family == "bert" and cfg == TINY.replace(dtype="bfloat16")
  assert {np.asarray(x).dtype for x in jax.tree_util.tree_leaves(loaded)} == {np.dtype("float32")}
  registry.save_pretrained(loaded, cfg, str(tmp_path / "hf_backbone"))  # family from the class
  assert json.loads((tmp_path / "hf_backbone" / "config.json").read_text())["architectures"] == ["BertModel"]


def test_not_an_export_is_a_clear_one_line_error(tmp_path, capsys):
  with pytest.raises(FileNotFoundError, match="no such export directory"):
    export.load_export(str(tmp_path / "absent"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="not a plm_jax params export"):
    export.load_export(str(tmp_path / "empty"))
  (tmp_path / "bad").mkdir()
  (tmp_path / "bad" / "plm_config.json").write_text('{"family": "bert"}')
  with pytest.raises(ValueError, match="needs family, config_class, config"):
    export.load_export(str(tmp_path / "bad"))
  (tmp_path / "bad" / "plm_config.json").write_text(json.dumps(
      {"family": "bert", "config_class": "no_such_module.Config", "config": {}}))
  with pytest.raises(ValueError, match="not an importable dataclass"):
    export.load_export(str(tmp_path / "bad"))
  (tmp_path / "bad" / "plm_config.json").write_text(json.dumps(
      {"family": "bert", "config_class": "plm_jax.models.bert.BertConfig", "config": {"layers": 2}}))
  with pytest.raises(ValueError, match="unknown key"):
    export.load_export(str(tmp_path / "bad"))
  assert cli.main(["export", "--params", str(tmp_path / "empty"), "--out", str(tmp_path / "y")]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "not a plm_jax params export" in err, err


def test_save_export_refuses_a_config_it_could_not_read_back(tmp_path):
  @dataclasses.dataclass(frozen=True)
  class LocalConfig:
    size: int = 1
  with pytest.raises(ValueError, match="cannot be imported back"):
    export.save_export(str(tmp_path), {"w": np.zeros(2)}, LocalConfig(), "toy")
  with pytest.raises(ValueError, match="dataclass instance"):
    export.save_export(str(tmp_path), {"w": np.zeros(2)}, {"size": 1}, "toy")
  assert not os.path.exists(tmp_path / "params")
