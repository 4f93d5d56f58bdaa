"""main.py: bad input gives one `error:` line on stderr and exit status 2, no traceback."""
import os

import pytest

import main_runner


def _assert_one_line_error(result, *fragments):
  assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
  lines = main_runner.error_lines(result.stderr)
  assert len(lines) == 1, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  for f in fragments:
    assert f in lines[0], lines[0]
  return lines[0]


@pytest.mark.parametrize("overrides,fragments", [
    (["--config.train.no_such_key=1"], ["--config.train.no_such_key=1", "unknown config key"]),
    (["--config.mlm.mask_rate=1.5"], ["config.mlm.mask_rate=1.5", "must be < 1.0"]),
    (["--config.mlm.mask_rate=abc"], ["--config.mlm.mask_rate=abc"]),
    # Every section's value checks run in-process in test_train_config.py; through main.py
    # one of each kind: a trainer section, a runtime (device count) and a data error.
    (["--config.optimizer.name=sgd"], ["config.optimizer.name='sgd'"]),
    (["--config.mesh.shape=(3,1,1)"], ["config.mesh.shape"]),
    (["--config.data.corpus.type=text", "--config.data.corpus.paths=/nonexistent/*.txt"],
     ["/nonexistent/*.txt"]),
])
def test_bad_config_is_one_line_error(tmp_path, overrides, fragments):
  result = main_runner.run(str(tmp_path / "w"), *overrides, tiny=False, timeout=120)
  _assert_one_line_error(result, *fragments)


def test_empty_corpus_file_is_one_line_error(tmp_path):
  empty = tmp_path / "empty.txt"
  empty.write_text("")
  result = main_runner.run(str(tmp_path / "w"), "--config.data.corpus.type=text",
                           f"--config.data.corpus.paths={empty}", timeout=180)
  _assert_one_line_error(result)


@pytest.mark.slow   # ~75 s (two main.py runs); the check itself: test_train_checkpointing's
#                     test_shape_check_names_param_and_both_shapes
def test_checkpoint_of_another_shape_is_one_line_error(tmp_path):
  workdir = str(tmp_path / "w")
  first = main_runner.run(workdir, "--config.train.num_steps=2",
                          "--config.train.checkpoint_every=2", "--config.train.params_export=False")
  assert first.returncode == 0, first.stderr[-3000:]
  result = main_runner.run(workdir, "--config.train.num_steps=4",
                           "--config.model.hidden_size=48", "--config.model.intermediate_size=96")
  line = _assert_one_line_error(result, "does not match the config", "(32,)", "(48,)")
  assert "params/" in line
  # Nothing was moved or overwritten: the checkpoint is still there.
  assert os.listdir(os.path.join(workdir, "checkpoints")) == ["2"]
