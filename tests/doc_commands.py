"""The commands a newcomer reads: README.md's code blocks and the docstrings of main.py,
the configs and the command-line modules, extracted as written (continuation lines
joined, trailing `# comments` dropped, `a && b` split), plus what tests need to run
them: the kind of each command, and a run config built from a main.py command line
in-process (the same config_flags parsing main.py does)."""
import ast
import os
import re
import shlex
import sys
from typing import List, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCSTRING_SOURCES = ("main.py", "plm_jax/data/spm_train.py") + tuple(
    os.path.join("configs", f) for f in sorted(os.listdir(os.path.join(REPO, "configs")))
    if f.endswith(".py") and f != "__init__.py")

# Placeholders a reader replaces with their own; the tests substitute real things.
PLACEHOLDERS = ("path/to/hf_bert_dir",)


def _logical_lines(lines: List[str]) -> List[str]:
  out, current = [], ""
  for line in lines:
    stripped = line.rstrip()
    if stripped.endswith("\\"):
      current += stripped[:-1].strip() + " "
      continue
    current += stripped.strip()
    if current:
      out.append(current)
    current = ""
  return out


def _split(line: str) -> List[str]:
  """One shell line -> its commands (split on &&), each without its trailing comment."""
  tokens = shlex.split(line, comments=True)
  commands, current = [], []
  for t in tokens:
    if t == "&&":
      commands.append(current)
      current = []
    else:
      current.append(t)
  commands.append(current)
  return [shlex.join(c) for c in commands if c]


def readme_blocks(kind: str) -> List[str]:
  """The text of every ```kind fenced block of README.md."""
  with open(os.path.join(REPO, "README.md")) as f:
    text = f.read()
  return re.findall(r"^ *```" + kind + r"\n(.*?)^ *```", text, flags=re.S | re.M)


def readme_commands() -> List[Tuple[str, str]]:
  out = []
  for block in readme_blocks("bash"):
    for line in _logical_lines(block.splitlines()):
      out += [("README.md", c) for c in _split(line)]
  return out


def docstring_commands(path: str) -> List[Tuple[str, str]]:
  with open(os.path.join(REPO, path)) as f:
    doc = ast.get_docstring(ast.parse(f.read()), clean=False) or ""
  lines = doc.splitlines()
  out, i = [], 0
  while i < len(lines):
    if re.match(r"\s*(python|plm-|launch/)", lines[i]):
      group = [lines[i]]
      while group[-1].rstrip().endswith("\\") and i + 1 < len(lines):
        i += 1
        group.append(lines[i])
      out += [(path, c) for line in _logical_lines(group) for c in _split(line)]
    i += 1
  return out


def all_commands() -> List[Tuple[str, str]]:
  """(source, command) for every command, each distinct command once (first source)."""
  seen, out = set(), []
  for source, command in readme_commands() + [c for p in DOCSTRING_SOURCES
                                              for c in docstring_commands(p)]:
    if command not in seen:
      seen.add(command)
      out.append((source, command))
  return out


def kind(command: str) -> str:
  argv = shlex.split(command)
  if argv[:2] == ["pip", "install"]:
    return "pip"
  if argv[:3] == ["python", "-m", "pytest"]:
    return "pytest"
  if argv[:2] == ["python", "main.py"]:
    return "main"
  if argv[:3] == ["python", "-m", "plm_jax.data.spm_train"] or argv[0] == "plm-train-spm":
    return "spm_train"
  if argv[:3] == ["python", "-m", "plm_jax.convert.cli"] or argv[0] == "plm-convert":
    return "convert"
  if argv[:3] == ["python", "-m", "plm_jax.data.bpe_train"]:
    return "bpe_train"
  if argv[:3] in (["python", "-m", "plm_jax.data.zh_vocab"],
                  ["python", "-m", "plm_jax.data.ernie_lexicon"]):
    return "ernie_units"   # ERNIE's Chinese vocabulary / lexicons (tests/test_ernie_zh.py)
  if argv[:3] == ["python", "-m", "plm_jax.finetune.matrix"]:
    return "matrix"
  if argv[:3] == ["python", "-m", "plm_jax.finetune.squad_eval"]:
    return "squad_eval"
  if argv[0].startswith("launch/") and argv[0].endswith(".sh"):
    return "launch"
  if argv[0] == "python" and len(argv) > 1 and argv[1].startswith("bench/"):
    return "bench"
  return "unknown"


def flag_value(argv: List[str], name: str, default=None):
  value = default
  for a in argv:
    if a.startswith(f"--{name}="):
      value = a.split("=", 1)[1]
  return value


def config_of(main_argv: List[str]):
  """(config, config spec) of `python main.py <main_argv>`, parsed as main.py parses it
  (relative config paths from the repository root, as the README's commands run there)."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  from ml_collections import config_flags  # pylint: disable=import-outside-toplevel
  if REPO not in sys.path:   # configs import each other as `configs.<name>`
    sys.path.insert(0, REPO)
  argv = [a if not a.startswith("--config=") or os.path.isabs(a[9:])
          else "--config=" + os.path.join(REPO, a[9:]) for a in main_argv]
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", os.path.join(REPO, "configs", "bert.py") + ":tiny",
                                  flag_values=fv, lock_config=True, sys_argv=["main.py"] + argv)
  flags.DEFINE_string("workdir", None, "", flag_values=fv)
  flags.DEFINE_bool("config_help", False, "", flag_values=fv)
  flags.DEFINE_bool("distributed", False, "", flag_values=fv)
  flags.DEFINE_string("coordinator_address", None, "", flag_values=fv)
  flags.DEFINE_integer("num_processes", None, "", flag_values=fv)
  flags.DEFINE_integer("process_id", None, "", flag_values=fv)
  flags.DEFINE_integer("heartbeat_timeout", 100, "", flag_values=fv)
  flags.DEFINE_bool("dry_run", False, "", flag_values=fv)
  flags.DEFINE_integer("devices", None, "", flag_values=fv)
  flags.DEFINE_float("peak_flops", None, "", flag_values=fv)
  fv(["main.py"] + argv)
  return fv.config, fv["config"].config_filename
