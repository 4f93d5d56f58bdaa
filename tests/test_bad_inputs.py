"""The bad-input suite: every case is a one-line error (ValueError family, or the CLI's
`error:` line with exit status 2) naming the file, line, config key, tensor or id.
In-process, except the main.py cases whose exit status and console are the point.
Run with -s to print each case's message."""
import errno
import json
import os
import shutil
import subprocess

import jax
import numpy as np
import pytest

import main_runner
from plm_jax import configlib
from plm_jax.data import corpora, sources
from plm_jax.data import vocab as vocab_lib
from plm_jax.data.config import CorpusConfig, VocabConfig
from plm_jax.train import checkpointing, evaluation
from plm_jax.train.config import TrainConfig
from plm_jax.objectives.bert_pretrain import MlmConfig

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from plm_jax.convert import cli, registry  # noqa: E402
from plm_jax.convert.table import ConversionError  # noqa: E402

TINY_BERT = dict(vocab_size=40, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                 intermediate_size=16, max_position_embeddings=16)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
  d = tmp_path_factory.mktemp("hf")
  torch.manual_seed(0)
  transformers.BertModel(transformers.BertConfig(**TINY_BERT)).save_pretrained(d)
  return d


def _copy(hf_dir, tmp_path):
  out = tmp_path / "hf"
  shutil.copytree(hf_dir, out)
  return out


def _edit_config(d, **changes):
  cfg = json.loads((d / "config.json").read_text())
  for k, v in changes.items():
    if v is None:
      cfg.pop(k)
    else:
      cfg[k] = v
  (d / "config.json").write_text(json.dumps(cfg))


def _tensors(d):
  from safetensors.torch import load_file
  return load_file(str(d / "model.safetensors"))


def _save_tensors(d, tensors):
  from safetensors.torch import save_file
  save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})


def _write(path, content):
  """Writes text or bytes; returns None so that `_write(...) or next_step()` runs both."""
  (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)


def _bin_dir(d, state):
  os.remove(d / "model.safetensors")
  torch.save(state, d / "pytorch_model.bin")


class _Evil:
  def __reduce__(self):
    return (print, ("this would run code",))


# ---- each case: (tmp_path, hf_dir) -> None, raising; and fragments its message must hold ----

def _corpus(tmp_path, content: bytes, name="c.txt"):
  p = tmp_path / name
  p.write_bytes(content)
  return str(p)


def _docs(paths, **kw):
  return list(corpora.iter_documents(paths, **kw))


def _vocab(tmp_path, content: bytes):
  p = tmp_path / "vocab.txt"
  p.write_bytes(content)
  return vocab_lib.WordPieceVocabulary(str(p))


def _ckpt_workdir(tmp_path, steps=(1,)):
  state = {"params": {"w": np.ones((2, 3), np.float32)}}
  ck = checkpointing.Checkpointer(str(tmp_path), keep=3)
  for s in steps:
    ck.save(s, state, {"batches_consumed": s, "seed": 0})
  ck.close()
  return state


def _restore(tmp_path, target, cls=checkpointing.Checkpointer):
  ck = cls(str(tmp_path), keep=3)
  try:
    abstract = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), target)
    return ck.restore_latest(abstract)
  finally:
    ck.close()


class _EIO(checkpointing.Checkpointer):
  def _read(self, step, **items):
    raise OSError(errno.EIO, "Input/output error")


def _corrupt_arrays(tmp_path):
  for root, _, files in os.walk(tmp_path / "checkpoints"):
    for f in files:
      if "/d" in root and "state" in root:
        with open(os.path.join(root, f), "r+b") as fh:
          fh.seek(os.path.getsize(os.path.join(root, f)) // 2)
          fh.write(b"\xff\x00\xff\x00")


def _immutable(path):
  """chattr +i: not writable even for root; None when the filesystem refuses."""
  r = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
  return r.returncode == 0


CASES = {
    # readers
    "glob_matches_nothing": (lambda t, h: _docs(str(t / "none_*.txt")), ["matches no file"]),
    "paths_empty": (lambda t, h: _docs(" , "), ["config.data.corpus.paths is empty"]),
    "corpus_without_documents": (lambda t, h: _docs(_corpus(t, b"\n\n  \n")),
                                 ["holds no document"]),
    "corpus_binary_nul": (lambda t, h: _docs(_corpus(t, b"ab\x00cd" * 100, "x.bin")),
                          ["x.bin", "NUL bytes", "on_bad_file=skip"]),
    "corpus_random_bytes": (lambda t, h: _docs(_corpus(t, np.random.default_rng(1).integers(
        1, 256, 2000, dtype=np.uint8).tobytes())), ["c.txt", "not UTF-8 text"]),
    "corpus_control_characters": (lambda t, h: _docs(_corpus(t, b"a\x01\x02\x03 " * 100)),
                                  ["c.txt", "control characters"]),
    "unknown_reader": (lambda t, h: _docs(_corpus(t, b"x"), reader="html"),
                       ["config.data.corpus.reader", "'html'"]),
    "bad_doc_separator": (lambda t, h: _docs(_corpus(t, b"x"), doc_separator="page"),
                          ["config.data.corpus.doc_separator", "'page'"]),
    "bad_on_bad_file": (lambda t, h: _docs(_corpus(t, b"x"), on_bad_file="ignore"),
                        ["config.data.corpus.on_bad_file", "'ignore'"]),
    "nothing_held_out": (lambda t, h: sources.load_documents(CorpusConfig(
        type="text", paths=_corpus(t, b"one\n\ntwo\n"), eval_every_nth=10), "validation"),
        ["config.data.corpus.eval_every_nth=10", "eval_paths"]),
    "corpus_config_bad_value": (lambda t, h: configlib.from_config(
        CorpusConfig, {"type": "text", "paths": "x", "on_bad_file": "maybe"},
        "config.data.corpus"), ["config.data.corpus.on_bad_file", "maybe"]),
    # vocabularies
    "vocab_missing": (lambda t, h: vocab_lib.WordPieceVocabulary(str(t / "nope.txt")),
                      ["config.data.vocab.path", "does not exist"]),
    "vocab_not_utf8": (lambda t, h: _vocab(t, b"[PAD]\n[UNK]\n\xff\xfe\n"),
                       ["vocab.txt line 3 is not UTF-8", "byte 0xff"]),
    "vocab_without_unk": (lambda t, h: _vocab(t, b"[PAD]\nhello\n"), ["has no [UNK] token"]),
    "vocab_is_directory": (lambda t, h: vocab_lib.WordPieceVocabulary(str(t)),
                           ["is a directory"]),
    "vocab_lacks_mask_token": (lambda t, h: vocab_lib.special_ids(
        _vocab(t, b"[PAD]\n[UNK]\n[CLS]\n[SEP]\nhi\n")), ["lacks the special token", "[MASK]"]),
    "sentencepiece_missing": (lambda t, h: vocab_lib.get_vocabulary(
        VocabConfig(type="sentencepiece", path=str(t / "spm.model"))),
        ["config.data.vocab.path", "does not exist"]),
    # conversion
    "hf_no_config": (lambda t, h: registry.load_pretrained(str(t)), ["no config.json"]),
    "hf_malformed_config": (lambda t, h: _write(_copy(h, t) / "config.json", "{oops")
                            or registry.load_pretrained(str(t / "hf")),
                            ["config.json: not valid JSON", "line 1"]),
    "hf_config_not_object": (lambda t, h: _write(_copy(h, t) / "config.json", "[1]")
                             or registry.load_pretrained(str(t / "hf")),
                             ["config.json: expected a JSON object"]),
    "hf_config_missing_hidden_size": (lambda t, h: _edit_config(_copy(h, t), hidden_size=None)
                                      or registry.load_pretrained(str(t / "hf")),
                                      ["config.json", "'hidden_size' is missing"]),
    "hf_config_string_size": (lambda t, h: _edit_config(_copy(h, t), num_hidden_layers="2")
                              or registry.load_pretrained(str(t / "hf")),
                              ["num_hidden_layers must be a positive integer"]),
    "hf_unknown_model_type": (lambda t, h: _edit_config(_copy(h, t), model_type="gpt9")
                              or registry.load_pretrained(str(t / "hf")),
                              ["'gpt9' has no converter"]),
    "hf_unsupported_activation": (lambda t, h: _edit_config(_copy(h, t), hidden_act="swish")
                                  or registry.load_pretrained(str(t / "hf")),
                                  ["unsupported hidden_act 'swish'"]),
    "hf_no_weights": (lambda t, h: os.remove(_copy(h, t) / "model.safetensors")
                      or registry.load_pretrained(str(t / "hf")), ["no model.safetensors"]),
    "hf_truncated_safetensors": (lambda t, h: (lambda p: _write(p, p.read_bytes()[:300]))(
        _copy(h, t) / "model.safetensors") or registry.load_pretrained(str(t / "hf")),
        ["model.safetensors: not a readable safetensors file", "truncated"]),
    "hf_refused_pickle": (lambda t, h: _bin_dir(_copy(h, t), {"x": _Evil()})
                          or registry.load_pretrained(str(t / "hf")),
                          ["pytorch_model.bin: refused to load"]),
    "hf_bin_non_tensor_entry": (lambda t, h: _bin_dir(_copy(h, t), dict(
        _tensors(h), global_step=7)) or registry.load_pretrained(str(t / "hf")),
        ["pytorch_model.bin: entry 'global_step' is a int, not a tensor"]),
    "hf_truncated_bin": (lambda t, h: (_bin_dir(_copy(h, t), dict(_tensors(h))), (lambda p: p.write_bytes(
        p.read_bytes()[:500]))(t / "hf" / "pytorch_model.bin")) and registry.load_pretrained(
        str(t / "hf")), ["pytorch_model.bin: not a readable PyTorch checkpoint"]),
    "hf_int8_tensor": (lambda t, h: _save_tensors(_copy(h, t), dict(_tensors(h), **{
        "pooler.dense.weight": _tensors(h)["pooler.dense.weight"].to(torch.int8)}))
        or registry.load_pretrained(str(t / "hf")),
        ["tensor bert.pooler.dense.weight has dtype int8"]),
    "hf_extra_tensor": (lambda t, h: _save_tensors(_copy(h, t), dict(_tensors(h), **{
        "adapter.weight": torch.zeros(2)})) or registry.load_pretrained(str(t / "hf")),
        ["not mapped by any rule", "adapter.weight"]),
    "hf_wrong_shape": (lambda t, h: _save_tensors(_copy(h, t), dict(_tensors(h), **{
        "pooler.dense.bias": torch.zeros(3)})) or registry.load_pretrained(str(t / "hf")),
        ["shape mismatches", "bert/pooler/dense/bias"]),
    "with_heads_bad_value": (lambda t, h: registry.load_pretrained(str(h), with_heads="yes"),
                             ["with_heads must be"]),
    # checkpoints and workdirs
    "workdir_is_a_file": (lambda t, h: _write(t / "f", "x") or
                          checkpointing.prepare_workdir(str(t / "f")), ["is a file"]),
    "workdir_read_only_empty": (lambda t, h: _read_only_workdir(t, False), ["is not writable"]),
    "workdir_read_only_with_checkpoints": (lambda t, h: _read_only_workdir(t, True),
                                           ["is not writable"]),
    "checkpoints_all_corrupt": (lambda t, h: (_ckpt_workdir(t), _corrupt_arrays(t)) and _restore(
        t, {"params": {"w": np.ones((2, 3), np.float32)}}), ["none can be restored"]),
    "checkpoints_removed_by_hand": (lambda t, h: (_ckpt_workdir(t), shutil.rmtree(
        t / "checkpoints" / "1")) and _restore(t, {"params": {"w": np.ones((2, 3), np.float32)}}),
        ["has held checkpoints", "allow_fresh_start"]),
    "checkpoint_read_io_error": (lambda t, h: _ckpt_workdir(t) and _restore(
        t, {"params": {"w": np.ones((2, 3), np.float32)}}, _EIO), ["nothing was moved"]),
    "checkpoint_other_shape": (lambda t, h: _ckpt_workdir(t) and _restore(
        t, {"params": {"w": np.ones((2, 4), np.float32)}}),
        ["params/w has shape (2, 3) in the checkpoint but (2, 4) in the config"]),
    # config values and batches
    "train_config_bad_value": (lambda t, h: configlib.from_config(
        TrainConfig, {"allow_fresh_start": "yes"}, "config.train"),
        ["config.train.allow_fresh_start"]),
    "mlm_mask_rate": (lambda t, h: configlib.from_config(MlmConfig, {"mask_rate": 1.5},
                                                         "config.mlm"), ["config.mlm.mask_rate"]),
    "batch_id_out_of_range": (lambda t, h: evaluation.check_ranges(
        {"input_ids": np.array([[1, 2, 99]])}, {"input_ids": 30}, "train", 4),
        ["data (train, step 4): input_ids[0, 2] = 99"]),
}


def _read_only_workdir(tmp_path, with_checkpoints):
  workdir = tmp_path / "ro"
  workdir.mkdir()
  if with_checkpoints:
    _ckpt_workdir(workdir)
  if not _immutable(workdir):
    pytest.skip("chattr +i is not available here")
  try:
    checkpointing.prepare_workdir(str(workdir))
  finally:
    subprocess.run(["chattr", "-i", str(workdir)], check=False)


def _message(case, tmp_path, hf_dir):
  fn, _ = CASES[case]
  with pytest.raises((ValueError, OSError, ConversionError)) as e:
    fn(tmp_path, hf_dir)
  return str(e.value)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_a_one_line_error_naming_it(case, tmp_path, hf_dir):
  message = _message(case, tmp_path, hf_dir)
  print(f"\n{case}: {message}")
  assert "\n" not in message.strip(), message
  for fragment in CASES[case][1]:
    assert fragment in message, (fragment, message)


def test_convert_cli_errors_are_one_line_exit_2(tmp_path, hf_dir, capsys):
  bad = _copy(hf_dir, tmp_path)
  (bad / "model.safetensors").write_bytes((bad / "model.safetensors").read_bytes()[:200])
  assert cli.main(["import", "--hf_dir", str(bad), "--out", str(tmp_path / "out")]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and err.count("\n") == 1 and "safetensors" in err
  _bin_dir(bad, {"x": _Evil()})
  assert cli.main(["import", "--hf_dir", str(bad), "--out", str(tmp_path / "out")]) == 2
  err = capsys.readouterr().err
  assert "refused to load" in err and err.count("\n") == 1
  assert not os.path.exists(tmp_path / "out" / "params")     # nothing written


def test_main_py_config_file_that_does_not_exist_exits_2_with_one_line(tmp_path):
  """main.py's own code path (the config flag); the workdir and config errors above reach
  main.py as ValueErrors, which it prints as one `error:` line with status 2 (test_main.py)."""
  result = main_runner.run(str(tmp_path / "w"), "--config=configs/nosuch.py", tiny=False,
                           timeout=120)
  assert result.returncode == 2, result.stderr[-2000:]
  lines = main_runner.error_lines(result.stderr)
  assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
  for f in ("--config=configs/nosuch.py", "cannot load the config file", "No such file"):
    assert f in lines[0], lines[0]
  print(f"\nmain.py nosuch config: {lines[0]}")


def test_the_suite_has_at_least_40_cases():
  assert len(CASES) + 2 + 1 >= 40   # + the two CLI cases + main.py
