"""GLUE: the nine tasks and the diagnostic set, read from TFDS `glue/*` or local TSV files.

  TASKS[name]                     GlueTask: files, columns, labels, metric, submission name
  read_tsv(task, path, split)     the original GLUE TSV layout -> examples (checked row by row)
  read_split(task, split, data_dir='', tfds_data_dir='')
                                  examples of one split: local directory, or TFDS when empty
  write_submission(task, dir, idx, predictions)
                                  the benchmark's test file (`<Name>.tsv`: index, prediction)

An example is a dict {idx: int, text_a: str, text_b: str ('' for one sentence),
label: int (class index) | float (STS-B) | -1 / nan when the split has no labels}.
Label indices follow the TFDS `glue/*` label order, so both sources give the
same integers (e.g. MNLI: entailment 0, neutral 1, contradiction 2).

Local TSV files are read as GLUE's own scripts read them: tab-separated, no
quoting (a '"' is an ordinary character), the first row a header except in
CoLA's train/dev files. Every row must have the header's number of columns; a
wrong column count, a missing or unknown label, a non-numeric STS-B score or a
file without examples is a one-line ValueError naming the file and the line.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

Example = Dict[str, object]
SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class GlueTask:
  name: str                                 # config name: cola, sst2, ..., mnli_mm, ax
  dir_name: str                             # GLUE directory: CoLA, SST-2, ...
  tfds_name: str                            # glue/cola ...
  text_columns: Tuple[str, ...]             # header names of the one or two text columns
  label_column: Optional[str]               # header name of the label (None: unlabelled task)
  labels: Optional[Tuple[str, ...]]         # TSV label strings in TFDS order; None: regression
  tfds_keys: Tuple[str, ...]                # TFDS text features
  files: Tuple[Tuple[str, str], ...]        # split -> file name under dir_name
  submission: str                           # benchmark file name (without .tsv)
  metric: str                               # see plm_jax.finetune.metrics
  positional: Optional[Tuple[int, int]] = None  # header-less train/dev: (label col, text col)
  tfds_splits: Tuple[Tuple[str, str], ...] = ()  # split -> TFDS split when names differ

  @property
  def is_regression(self) -> bool:
    return self.labels is None and self.label_column is not None

  @property
  def num_labels(self) -> int:
    return 1 if self.labels is None else len(self.labels)

  @property
  def is_pair(self) -> bool:
    return len(self.text_columns) == 2

  def file(self, split: str) -> str:
    files = dict(self.files)
    if split not in files:
      raise ValueError(f"GLUE task {self.name!r} has no {split!r} split; it has "
                       f"{sorted(files)}")
    return files[split]


_STD = (("train", "train.tsv"), ("validation", "dev.tsv"), ("test", "test.tsv"))
_BIN = ("0", "1")
_NLI = ("entailment", "not_entailment")
_MNLI = ("entailment", "neutral", "contradiction")

TASKS: Dict[str, GlueTask] = {t.name: t for t in [
    GlueTask("cola", "CoLA", "glue/cola", ("sentence",), "label", _BIN, ("sentence",), _STD,
             "CoLA", "mcc", positional=(1, 3)),
    GlueTask("sst2", "SST-2", "glue/sst2", ("sentence",), "label", _BIN, ("sentence",), _STD,
             "SST-2", "accuracy"),
    GlueTask("mrpc", "MRPC", "glue/mrpc", ("#1 String", "#2 String"), "Quality", _BIN,
             ("sentence1", "sentence2"), _STD, "MRPC", "f1_accuracy"),
    GlueTask("stsb", "STS-B", "glue/stsb", ("sentence1", "sentence2"), "score", None,
             ("sentence1", "sentence2"), _STD, "STS-B", "pearson_spearman"),
    GlueTask("qqp", "QQP", "glue/qqp", ("question1", "question2"), "is_duplicate", _BIN,
             ("question1", "question2"), _STD, "QQP", "f1_accuracy"),
    GlueTask("mnli", "MNLI", "glue/mnli", ("sentence1", "sentence2"), "gold_label", _MNLI,
             ("premise", "hypothesis"),
             (("train", "train.tsv"), ("validation", "dev_matched.tsv"),
              ("test", "test_matched.tsv")), "MNLI-m", "accuracy",
             tfds_splits=(("validation", "validation_matched"), ("test", "test_matched"))),
    GlueTask("mnli_mm", "MNLI", "glue/mnli", ("sentence1", "sentence2"), "gold_label", _MNLI,
             ("premise", "hypothesis"),
             (("train", "train.tsv"), ("validation", "dev_mismatched.tsv"),
              ("test", "test_mismatched.tsv")), "MNLI-mm", "accuracy",
             tfds_splits=(("validation", "validation_mismatched"), ("test", "test_mismatched"))),
    GlueTask("qnli", "QNLI", "glue/qnli", ("question", "sentence"), "label", _NLI,
             ("question", "sentence"), _STD, "QNLI", "accuracy"),
    GlueTask("rte", "RTE", "glue/rte", ("sentence1", "sentence2"), "label", _NLI,
             ("sentence1", "sentence2"), _STD, "RTE", "accuracy"),
    GlueTask("wnli", "WNLI", "glue/wnli", ("sentence1", "sentence2"), "label", _BIN,
             ("sentence1", "sentence2"), _STD, "WNLI", "accuracy"),
    # ChnSentiCorp (Chinese sentiment; ERNIE's split 9,600 / 1,200 / 1,200, header
    # label<TAB>text_a): not GLUE, read the same way from <data_dir>/chnsenticorp.
    GlueTask("chnsenticorp", "chnsenticorp", "", ("text_a",), "label", _BIN, ("text_a",), _STD,
             "ChnSentiCorp", "accuracy"),
    # The diagnostic set: test only, labelled by a model trained on MNLI (MNLI's labels).
    GlueTask("ax", "diagnostic", "glue/ax", ("sentence1", "sentence2"), None, _MNLI,
             ("premise", "hypothesis"), (("test", "diagnostic.tsv"),), "AX", "mcc"),
]}


def get_task(name: str, key: str = "config.task.name") -> GlueTask:
  if name not in TASKS:
    raise ValueError(f"{key}={name!r}: unknown GLUE task; choose one of {sorted(TASKS)}")
  return TASKS[name]


# ---- local TSV ---------------------------------------------------------------------------

def _rows(path: str) -> List[Tuple[int, List[str]]]:
  """(line number, fields) of every non-empty line; no quoting, BOM dropped."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{path}: GLUE file not found")
  with tf.io.gfile.GFile(path, "rb") as f:
    raw = f.read()
  try:
    text = raw.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    line = raw[:e.start].count(b"\n") + 1
    raise ValueError(f"{path}:{line}: not UTF-8 text ({e.reason} at byte {e.start})") from None
  lines = text.split("\n")
  reader = csv.reader([l.rstrip("\r") for l in lines], delimiter="\t", quoting=csv.QUOTE_NONE)
  return [(i + 1, row) for i, row in enumerate(reader) if row and any(c.strip() for c in row)]


def _label(task: GlueTask, value: str, where: str):
  value = value.strip()
  if not value:
    raise ValueError(f"{where}: missing label")
  if task.labels is None:
    try:
      score = float(value)
    except ValueError:
      raise ValueError(f"{where}: STS-B score {value!r} is not a number") from None
    if not math.isfinite(score):
      raise ValueError(f"{where}: STS-B score {value!r} is not a finite number")
    return score
  if value not in task.labels:
    raise ValueError(f"{where}: unknown label {value!r}; {task.name} labels are "
                     f"{list(task.labels)}")
  return task.labels.index(value)


def read_tsv(task: GlueTask, path: str, split: str) -> List[Example]:
  """Examples of one GLUE TSV file; unlabelled (test) files give label -1 (nan for STS-B)."""
  rows = _rows(path)
  if not rows:
    raise ValueError(f"{path}: empty file (no examples)")
  positional = task.positional is not None and split != "test"
  if positional:
    width, header_line = len(rows[0][1]), 0
    label_at, text_at = task.positional
    text_idx, label_idx, idx_at = [text_at], label_at, None
  else:
    header_line, header = rows[0]
    rows = rows[1:]
    width = len(header)
    names = [h.strip() for h in header]
    missing = [c for c in task.text_columns if c not in names]
    if missing:
      raise ValueError(f"{path}:{header_line}: header lacks column(s) {missing} of GLUE task "
                       f"{task.name} (header: {names})")
    text_idx = [names.index(c) for c in task.text_columns]
    has_label = task.label_column is not None and task.label_column in names
    if split != "test" and task.label_column is not None and not has_label:
      raise ValueError(f"{path}:{header_line}: header lacks the label column "
                       f"{task.label_column!r} (header: {names})")
    label_idx = names.index(task.label_column) if has_label else None
    # MNLI's label is the last column; its row width follows the header.
    idx_at = names.index("index") if "index" in names else None
  out = []
  for line, row in rows:
    where = f"{path}:{line}"
    if len(row) != width:
      raise ValueError(f"{where}: expected {width} tab-separated columns, got {len(row)}")
    if label_idx is not None:
      label = _label(task, row[label_idx], where)
    else:
      label = float("nan") if task.labels is None else -1
    if idx_at is not None:
      try:
        idx = int(row[idx_at])
      except ValueError:
        raise ValueError(f"{where}: index {row[idx_at]!r} is not an integer") from None
    else:
      idx = len(out)
    texts = [row[i] for i in text_idx]
    out.append({"idx": idx, "text_a": texts[0], "text_b": texts[1] if len(texts) > 1 else "",
                "label": label})
  if not out:
    raise ValueError(f"{path}: no examples (only a header)")
  return out


# ---- TFDS --------------------------------------------------------------------------------

def read_tfds(task: GlueTask, split: str, data_dir: str = "") -> List[Example]:
  """Examples from TFDS glue/<task> (needs the prepared data set; nothing is downloaded here)."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  tfds_split = dict(task.tfds_splits).get(split, split)
  try:
    ds = tfds.load(task.tfds_name, split=tfds_split, data_dir=data_dir or None, download=False)
  except Exception as e:  # pylint: disable=broad-except
    raise FileNotFoundError(
        f"TFDS {task.tfds_name} split {tfds_split!r} is not prepared in "
        f"{data_dir or 'the default data dir'} ({type(e).__name__}); prepare it with "
        f"`tfds build {task.tfds_name}` or set config.task.data_dir to a local GLUE "
        f"directory") from None
  out = []
  for ex in ds.as_numpy_iterator():
    texts = [ex[k].decode("utf-8") for k in task.tfds_keys]
    label = ex.get("label", -1)
    label = float(label) if task.labels is None else int(label)
    out.append({"idx": int(ex["idx"]), "text_a": texts[0],
                "text_b": texts[1] if len(texts) > 1 else "", "label": label})
  return out


def read_split(task: GlueTask, split: str, data_dir: str = "",
               tfds_data_dir: str = "") -> List[Example]:
  """One split of a task: from `data_dir` (GLUE TSV layout: <data_dir>/<Task>/<file>) or TFDS."""
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
  if not data_dir:
    return read_tfds(task, split, tfds_data_dir)
  path = os.path.join(data_dir, task.dir_name, task.file(split))
  return read_tsv(task, path, split)


# ---- submission --------------------------------------------------------------------------

def prediction_strings(task: GlueTask, predictions: np.ndarray) -> List[str]:
  """Class indices -> the benchmark's label strings; STS-B scores clipped to [0, 5]."""
  if task.labels is None:
    return [f"{min(max(float(p), 0.0), 5.0):.3f}" for p in predictions]
  return [task.labels[int(p)] for p in predictions]


def write_submission(task: GlueTask, directory: str, idx: Sequence[int],
                     predictions: np.ndarray) -> str:
  """<directory>/<submission>.tsv with header 'index<TAB>prediction', rows by index."""
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, f"{task.submission}.tsv")
  order = np.argsort(np.asarray(idx), kind="stable")
  strings = prediction_strings(task, np.asarray(predictions))
  with open(path, "w", encoding="utf-8") as f:
    f.write("index\tprediction\n")
    for i in order:
      f.write(f"{int(idx[i])}\t{strings[i]}\n")
  return path
