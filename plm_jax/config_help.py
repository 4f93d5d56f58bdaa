"""`python main.py --config_help`: every key of a run config with its value and comment.

  print(describe(config, "configs/bert.py:tiny"))

One line per key, `section.key = value  # comment`, in the config's order. The
comment is the one written beside the key's assignment in the config file (or in
a config module it imports from the same folder, e.g. configs/bert.py for
configs/bert_books_wiki.py), else the one beside the field in its owner's
dataclass (the trainer's sections in plm_jax/train/config.py, the objective's in
its module). Keys the owners declare but the config leaves out are listed after,
with the owner's default. Nothing here imports TensorFlow.
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import os
import tokenize
from typing import Any, Dict, Iterator, List, Optional, Tuple

import ml_collections


def _line_comments(source: str) -> Tuple[Dict[int, str], Dict[int, str]]:
  """(trailing, standalone): line number -> the comment at the end of a code line (a
  comment-only line right below, indented like it, continues it); line number -> the
  text of a comment-only line."""
  comments: Dict[int, Tuple[int, str]] = {}
  code_lines = set()
  for tok in tokenize.generate_tokens(io.StringIO(source).readline):
    if tok.type == tokenize.COMMENT:
      comments[tok.start[0]] = (tok.start[1], tok.string.lstrip("#").strip())
    elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                          tokenize.ENDMARKER):
      code_lines.add(tok.start[0])
  trailing: Dict[int, str] = {}
  standalone = {line: text for line, (_, text) in comments.items() if line not in code_lines}
  for line in sorted(comments):
    if line not in code_lines:
      continue
    col, text = comments[line]
    nxt = line + 1
    while nxt in standalone and comments[nxt][0] == col:
      text += " " + standalone.pop(nxt)
      nxt += 1
    trailing[line] = text
  return trailing, standalone


def _attribute_path(node: ast.AST) -> Optional[Tuple[str, ...]]:
  """`c.model.hidden_size` -> ('c', 'model', 'hidden_size'); None for anything else."""
  parts: List[str] = []
  while isinstance(node, ast.Attribute):
    parts.append(node.attr)
    node = node.value
  if not isinstance(node, ast.Name):
    return None
  return (node.id,) + tuple(reversed(parts))


def _is_config_call(node: ast.AST) -> bool:
  """ConfigDict() or <module>.get_config(...): a fresh root config."""
  if not isinstance(node, ast.Call):
    return False
  path = _attribute_path(node.func)
  return bool(path) and path[-1] in ("ConfigDict", "get_config")


def config_file_comments(path: str) -> Dict[str, str]:
  """'section.key' -> comment, from the assignments in a config file's get_config()."""
  try:
    with open(path, encoding="utf-8") as f:
      source = f.read()
    tree = ast.parse(source)
  except (OSError, SyntaxError, UnicodeDecodeError):
    return {}
  comments, above = _line_comments(source)
  aliases: Dict[str, Tuple[str, ...]] = {}   # local name -> key path it stands for
  out: Dict[str, str] = {}
  for node in ast.walk(tree):
    if not isinstance(node, ast.Assign):
      continue
    targets = [_attribute_path(t) for t in node.targets]
    names = [t.id for t in node.targets if isinstance(t, ast.Name)]
    keyed = [t for t in targets if t and t[0] in aliases]
    if names and not keyed:
      value = _attribute_path(node.value)
      if _is_config_call(node.value):
        aliases.update({n: () for n in names})
      elif value and value[0] in aliases:
        aliases.update({n: aliases[value[0]] + value[1:] for n in names})
      continue
    for t in keyed:
      key = ".".join(aliases[t[0]] + t[1:])
      aliases.update({n: aliases[t[0]] + t[1:] for n in names})
      text = " ".join(comments[n] for n in range(node.lineno, (node.end_lineno or node.lineno) + 1)
                      if n in comments)
      block, line = [], node.lineno - 1
      while line in above:          # else a comment block right above the assignment
        block.insert(0, above[line])
        line -= 1
      text = text or " ".join(block)
      if text and key not in out:
        out[key] = text
  return out


def _sibling_imports(path: str) -> List[str]:
  """Files of the modules a config file imports from its own folder (`from configs import bert`)."""
  folder = os.path.dirname(os.path.abspath(path))
  try:
    with open(path, encoding="utf-8") as f:
      tree = ast.parse(f.read())
  except (OSError, SyntaxError, UnicodeDecodeError):
    return []
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module == os.path.basename(folder):
      out += [os.path.join(folder, a.name + ".py") for a in node.names]
  return [p for p in out if os.path.isfile(p)]


def dataclass_comments(cls: type, prefix: str) -> Dict[str, Tuple[Any, str]]:
  """'prefix.field' -> (default, comment) for a config dataclass (nested ones too)."""
  try:
    source, first = inspect.getsourcelines(cls)
    comments = {first + j - 1: c for j, c in _line_comments("".join(source))[0].items()}
    fields_at = {}
    for i, line in enumerate(source):
      name = line.strip().split(":", 1)[0]
      if name.isidentifier():
        fields_at.setdefault(name, first + i)
  except (OSError, TypeError, tokenize.TokenError, IndentationError):
    comments, fields_at = {}, {}
  out: Dict[str, Tuple[Any, str]] = {}
  for f in dataclasses.fields(cls):
    default = f.default if f.default is not dataclasses.MISSING else None
    if dataclasses.is_dataclass(default):
      out.update(dataclass_comments(type(default), f"{prefix}.{f.name}"))
      continue
    doc = f.metadata.get("doc") or comments.get(fields_at.get(f.name, -1), "")
    out[f"{prefix}.{f.name}"] = (default, doc)
  return out


def _owner_fields(config: ml_collections.ConfigDict) -> Dict[str, Tuple[Any, str]]:
  """Every key the trainer and the config's objective declare, with default and comment."""
  from plm_jax.train import config as train_config  # pylint: disable=import-outside-toplevel
  from plm_jax.objectives import base  # pylint: disable=import-outside-toplevel
  owners = {"train": train_config.TrainConfig, "optimizer": train_config.OptimizerConfig,
            "mesh": train_config.MeshConfig}
  if config.get("objective") in base.registered():
    owners.update(base._REGISTRY[config.objective].SECTIONS)  # pylint: disable=protected-access
  out: Dict[str, Tuple[Any, str]] = {}
  for section, cls in owners.items():
    out.update(dataclass_comments(cls, section))
  return out


def _leaves(config: Any, prefix: str = "") -> Iterator[Tuple[str, Any]]:
  for key in config.keys():
    value = config[key]
    path = f"{prefix}{key}"
    if isinstance(value, ml_collections.ConfigDict):
      yield from _leaves(value, path + ".")
    else:
      yield path, value


def describe(config: ml_collections.ConfigDict, config_spec: str = "") -> str:
  """The help text: every key with this run's value and its comment."""
  path = config_spec.split(":", 1)[0]
  comments: Dict[str, str] = {}
  for source in ([path] + _sibling_imports(path)) if path else []:
    for key, text in config_file_comments(source).items():
      comments.setdefault(key, text)
  owners = _owner_fields(config)
  rows = []
  for key, value in _leaves(config):
    rows.append((key, repr(value), comments.get(key) or owners.get(key, (None, ""))[1]))
  given = {r[0] for r in rows}
  missing = [(k, repr(d), c) for k, (d, c) in owners.items() if k not in given]
  width = min(max(len(f"{k} = {v}") for k, v, _ in rows + missing), 56)

  def line(key, value, comment):
    text = f"  {key} = {value}"
    return f"{text:<{width + 2}}  # {comment}" if comment else text
  out = [f"Config keys of {config_spec or 'the config'} with this run's values; override any "
         f"with --config.<key>=<value>:"]
  out += [line(*r) for r in rows]
  if missing:
    out.append("Not set by this config (the owner's default applies):")
    out += [line(*r) for r in missing]
  return "\n".join(out)
