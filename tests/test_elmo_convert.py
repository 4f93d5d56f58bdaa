"""bilm-tf's options.json + HDF5 format: the test model written by the original code imports,
exports back to the same arrays, and bad files give one-line errors naming what is wrong."""
import json
import os

import numpy as np
import pytest

from plm_jax.convert import bilm_hdf5
from plm_jax.data import paths
from plm_jax.models.elmo import ElmoConfig

h5py = pytest.importorskip("h5py")
MODEL_DIR = os.path.join(paths.data_dir(), "elmo", "bilm-tf-test-model")
OPTIONS = os.path.join(MODEL_DIR, "options.json")
WEIGHTS = os.path.join(MODEL_DIR, "lm_weights.hdf5")
pytestmark = pytest.mark.skipif(not os.path.isdir(MODEL_DIR),
                                reason=f"no bilm-tf test model at {MODEL_DIR}")


def _datasets(path):
  out = {}
  with h5py.File(path, "r") as f:
    f.visititems(lambda n, o: out.__setitem__(n, o[...]) if isinstance(o, h5py.Dataset) else None)
  return out


def test_import_reads_every_variable_and_exports_them_back_exactly(tmp_path):
  cfg, params = bilm_hdf5.load_bilm(OPTIONS, WEIGHTS)
  assert cfg == ElmoConfig(vocab_size=0, n_characters=262, max_characters_per_token=50,
                           char_embedding_dim=4, filters=((1, 4), (2, 8), (3, 16), (4, 32),
                                                          (5, 64)),
                           activation="relu", n_highway=2, lstm_dim=64, projection_dim=16,
                           n_layers=2, cell_clip=3.0, proj_clip=3.0,
                           use_skip_connections=False)
  enc = params["char_encoder"]
  assert enc["char_embed"].shape == (262, 4) and np.all(enc["char_embed"][0] == 0)
  assert params["backward_1"]["kernel"].shape == (32, 256)
  bilm_hdf5.save_weights(params, cfg, str(tmp_path / "w.hdf5"))
  bilm_hdf5.save_options(cfg, str(tmp_path / "options.json"))
  original, written = _datasets(WEIGHTS), _datasets(str(tmp_path / "w.hdf5"))
  assert sorted(original) == sorted(written) and len(original) == 33
  for name, value in original.items():
    np.testing.assert_array_equal(written[name], value, err_msg=name)
  cfg2, params2 = bilm_hdf5.load_bilm(str(tmp_path / "options.json"), str(tmp_path / "w.hdf5"))
  assert cfg2 == cfg
  flat = lambda p: {f"{a}/{b}": v for a, d in p.items() for b, v in d.items()}  # noqa: E731
  assert sorted(flat(params)) == sorted(flat(params2))
  for k, v in flat(params).items():
    np.testing.assert_array_equal(flat(params2)[k], v)


def _options(tmp_path, edit):
  with open(OPTIONS) as f:
    options = json.load(f)
  edit(options)
  path = tmp_path / "options.json"
  path.write_text(json.dumps(options))
  return str(path)


def test_options_whose_sizes_do_not_match_the_weights(tmp_path):
  def bigger(o):
    o["lstm"]["projection_dim"] = 32
  cfg = bilm_hdf5.load_options(_options(tmp_path, bigger))
  with pytest.raises(ValueError) as e:
    bilm_hdf5.load_weights(WEIGHTS, cfg)
  msg = str(e.value)
  assert "\n" not in msg and "lm_weights.hdf5" in msg
  assert "'CNN_proj/W_proj' has shape (124, 16)" in msg and "lstm.projection_dim" in msg

  def filters(o):
    o["char_cnn"]["filters"][2] = [3, 17]
  with pytest.raises(ValueError, match=r"'CNN/W_cnn_2' has shape \(1, 3, 4, 16\).*"
                                       r"char_cnn.filters\[2\]"):
    bilm_hdf5.load_weights(WEIGHTS, bilm_hdf5.load_options(_options(tmp_path, filters)))


def test_options_missing_a_key(tmp_path):
  def drop(o):
    del o["lstm"]["dim"]
  path = _options(tmp_path, drop)
  with pytest.raises(ValueError, match=r"options.json: missing key 'lstm.dim'$"):
    bilm_hdf5.load_options(path)


def test_weights_missing_a_variable(tmp_path):
  path = str(tmp_path / "w.hdf5")
  with h5py.File(path, "w") as dst:
    for name, value in _datasets(WEIGHTS).items():
      if name != "RNN_1/RNN/MultiRNNCell/Cell1/LSTMCell/W_P_0":
        dst.create_dataset(name, data=value)
  with pytest.raises(ValueError) as e:
    bilm_hdf5.load_bilm(OPTIONS, path)
  assert str(e.value) == (f"{path}: missing variable "
                          "'RNN_1/RNN/MultiRNNCell/Cell1/LSTMCell/W_P_0' (expected shape (64, 16))")
  with pytest.raises(ValueError, match="cannot open as HDF5"):
    bilm_hdf5.load_bilm(OPTIONS, OPTIONS)
