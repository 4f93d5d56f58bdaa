"""A newcomer's first hour (issue 7): the findings that need no training run.

Findings 1, 4, 6, 10, 11 and issue 18's smaller-num_steps rerun are checked on the
documented commands themselves in test_readme_commands.py.
"""
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

import main_runner
from plm_jax.configlib import ConfigError
from plm_jax.data import config as data_config
from plm_jax.data import spm_train, vocab as vocab_lib
from plm_jax.objectives.bert_pretrain import BertMlmNsp

REPO = main_runner.REPO
SENTENCES = ["the quick brown fox jumps over the lazy dog.", "a stitch in time saves nine.",
             "all that glitters is not gold.", "where there is smoke there is fire."]


def _main(*args, cwd=REPO, timeout=120):
  """main.py as a new user runs it (no TF_CPP_MIN_LOG_LEVEL, one device)."""
  env = {k: v for k, v in main_runner.env().items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  return subprocess.run([sys.executable, main_runner.MAIN, *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=timeout)


def _tiny_config(**vocab):
  c = BertMlmNsp.default_config()
  c.model.update(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                 max_position_embeddings=64)
  c.data.seq_length = 32
  c.mlm.max_predictions = 5
  c.train.update(batch_size=8, num_steps=2, eval_every=-1)
  c.data.vocab.update(vocab)
  return c


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
  d = tmp_path_factory.mktemp("spm")
  corpus = d / "corpus.txt"
  corpus.write_text("\n\n".join(SENTENCES * 20))
  assert spm_train.main([f"--input={corpus}", f"--model_prefix={d / 'spm'}",
                         "--vocab_size=60"]) == 0
  return str(d / "spm.model")


# ---- 2: the vocabulary type follows from the file -------------------------------------------

def test_vocab_path_alone_selects_its_type(spm_model, tmp_path):
  vocab = BertMlmNsp(_tiny_config(path=spm_model)).vocabulary()
  assert isinstance(vocab, vocab_lib.SentencePieceVocabulary)
  assert vocab.vocab_size == vocab_lib.SentencePieceVocabulary(spm_model).vocab_size
  txt = tmp_path / "my-vocab.txt"
  txt.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "##s"]) + "\n")
  vocab = BertMlmNsp(_tiny_config(path=str(txt))).vocabulary()
  assert isinstance(vocab, vocab_lib.WordPieceVocabulary) and vocab.vocab_size == 7
  assert BertMlmNsp(_tiny_config()).vocabulary().vocab_size > 100   # empty path: builtin


@pytest.mark.parametrize("vocab,fragment", [
    ({"type": "wordpiece", "path": "/x/spm.model"},
     "config.data.vocab.path='/x/spm.model': a SentencePiece model, which contradicts "
     "config.data.vocab.type='wordpiece'"),
    ({"type": "sentencepiece", "path": "/x/vocab.txt"}, "a WordPiece vocab.txt, which contradicts"),
    ({"type": "builtin", "path": "/x/vocab.txt"}, "config.data.vocab.type='builtin' reads no file"),
    ({"path": "/x/vocab.bin"}, "cannot tell the vocabulary type from the file name"),
    ({"type": "wordpiece"}, "config.data.vocab.path='': empty"),
])
def test_vocab_path_that_contradicts_the_type_is_an_error(vocab, fragment):
  with pytest.raises(ConfigError) as e:
    BertMlmNsp(_tiny_config(**vocab))
  assert fragment in str(e.value) and "\n" not in str(e.value)


def test_bpe_files_map_to_bpe(tmp_path):
  """vocab.json + merges.txt name a byte-level BPE vocabulary; until 'bpe' is a vocabulary
  type, one clear line says so."""
  (tmp_path / "vocab.json").write_text("{}")
  (tmp_path / "merges.txt").write_text("#version: 0.2\n")
  for path in (tmp_path, tmp_path / "vocab.json", tmp_path / "merges.txt"):
    assert data_config.vocab_type_of_path(str(path)) == "bpe"
    if "bpe" in data_config.VOCAB_TYPES:
      assert data_config.VocabConfig(path=str(path)).resolved_type() == "bpe"
    else:
      with pytest.raises(ConfigError, match="byte-level BPE .* not supported yet"):
        BertMlmNsp(_tiny_config(path=str(path)))


# ---- 3, 7, 8, 9: main.py's messages, default workdir and help -------------------------------

@pytest.mark.parametrize("override,expected", [
    ("--config.train.num_stepz=5", "error: --config.train.num_stepz=5: unknown config key "
                                   "'num_stepz'; did you mean 'num_steps'?"),
    ("--config.trian.num_steps=5", "error: --config.trian.num_steps=5: unknown config key "
                                   "'trian'; did you mean 'train'?"),
])
def test_mistyped_override_is_a_readable_line(override, expected):
  result = _main(override)
  assert result.returncode == 2
  assert result.stderr.splitlines()[0].startswith(expected), result.stderr
  assert len(result.stderr.splitlines()) == 1 and "\\" not in result.stderr, result.stderr


def test_default_workdir_names_config_and_size():
  """main.py's --workdir default (the default job's own line is checked in
  test_readme_commands: `config configs/bert.py:tiny, workdir ./workdir/bert_tiny`)."""
  code = ("import main; print([main.default_workdir(s) for s in ('configs/bert.py:small', "
          "'/abs/configs/bert_books_wiki.py', 'configs/bert.py:base')])")
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=main_runner.env(),
                          capture_output=True, text=True, timeout=60)
  assert result.stdout.strip() == str(["./workdir/bert_small", "./workdir/bert_books_wiki",
                                       "./workdir/bert_base"]), result.stderr[-2000:]


def test_mesh_hint_in_process():
  from plm_jax import sharding
  from plm_jax.train.config import MeshConfig
  with pytest.raises(ValueError, match="xla_force_host_platform_device_count=16"):
    sharding.mesh_shape(MeshConfig(shape=(16, 1, 1)), 8)
  with pytest.raises(ValueError, match="xla_force_host_platform_device_count=3"):
    sharding.mesh_shape(MeshConfig(shape=(-1, 3, 1)), 2)
  with pytest.raises(ValueError) as e:   # fewer devices needed than there are: no hint
    sharding.mesh_shape(MeshConfig(shape=(2, 1, 1)), 8)
  assert "xla_force" not in str(e.value)


def test_help_keeps_the_docstring_lines_and_points_at_config_help():
  result = _main("--help")   # absl's --help exits with status 1
  lines = result.stdout.splitlines()
  [i] = [i for i, l in enumerate(lines) if "--workdir=/tmp/bert_base" in l]
  assert lines[i].endswith("\\") and lines[i + 1].strip().startswith("--config.train.batch_size")
  assert "--config_help" in result.stdout
  assert "./workdir/<config file>_<size>" in result.stdout


def test_config_help_lists_owner_defaults_for_keys_the_config_leaves_out():
  from plm_jax import config_help
  from configs import bert
  c = bert.get_config("tiny")
  del c.train["log_every"]
  text = config_help.describe(c, os.path.join(REPO, "configs", "bert.py") + ":tiny")
  tail = text.split("Not set by this config")[1].splitlines()
  assert [l.split(" = ")[0].strip() for l in tail[1:]] == ["train.log_every"]
  assert "= 100 " in tail[1] and "# console + TensorBoard scalars" in tail[1], tail


# ---- 5: plm-train-spm -----------------------------------------------------------------------

def test_spm_train_bad_glob_is_one_line(tmp_path, capsys):
  status = spm_train.main(["--input=corpus/*.txt", "--reader=plain",
                           f"--model_prefix={tmp_path}/spm", "--vocab_size=8000"])
  assert status == 2
  err = capsys.readouterr().err
  assert err == "error: --input: glob 'corpus/*.txt' matches no file\n"
  assert not os.listdir(tmp_path)


def test_spm_train_console_script_exits_zero(spm_model):
  """`plm-train-spm` is sys.exit(main()): main returns the status, not the vocabulary."""
  assert os.path.isfile(spm_model)   # the fixture asserted main(...) == 0


# ---- 11, 12: exports and validation before files --------------------------------------------

def test_hf_checkpoint_files_share_one_mode(tmp_path):
  from plm_jax.convert import hf_io
  hf_io.write_checkpoint(str(tmp_path), {"model_type": "bert"}, {"w": np.zeros((2, 2))})
  modes = {n: stat.S_IMODE(os.stat(tmp_path / n).st_mode) for n in os.listdir(tmp_path)}
  umask = os.umask(0)
  os.umask(umask)
  assert set(modes.values()) == {0o666 & ~umask}, modes


def test_sentencepiece_run_exports_its_model(spm_model, tmp_path):
  from plm_jax.convert import export
  vocab = vocab_lib.SentencePieceVocabulary(spm_model)
  assert export.save_tokenizer(str(tmp_path), vocab, 64) == ("spiece.model",)
  with open(spm_model, "rb") as a, open(tmp_path / "spiece.model", "rb") as b:
    assert a.read() == b.read()
  hf = tmp_path / "hf"
  hf.mkdir()
  (tmp_path / "plm_config.json").write_text(json.dumps({"family": "bert"}))
  assert export.copy_tokenizer_files(str(tmp_path), str(hf)) == ("spiece.model",)


@pytest.mark.parametrize("data", [
    {"corpus": {"type": "text", "paths": "/nonexistent/*.txt"}},
    {"vocab": {"path": "/nonexistent/vocab.txt"}},
])
def test_failed_validation_creates_nothing(tmp_path, data):
  from plm_jax.train import trainer
  c = _tiny_config()
  for section, values in data.items():
    c.data[section].update(values)
  workdir = tmp_path / "run"
  with pytest.raises(ValueError, match="/nonexistent"):
    trainer.train_and_evaluate(c, str(workdir))
  assert not workdir.exists()
