"""GLUE as text-to-text, as the T5 paper casts it (Raffel et al. 2020, appendix D; the t5
library's `glue` and `stsb` preprocessors and its `string_label_to_class_id` /
`string_to_float` postprocessors).

  inputs_text(task, example)   'sst2 sentence: it is great' ; pairs list their fields in
                               sorted TFDS feature order: 'mnli hypothesis: ... premise: ...'
  target_text(task, label)     the label word ('positive'), STS-B's score rounded to the
                               nearest 0.2 with one decimal ('3.6'); '' for no label (test)
  parse_prediction(task, text) -> (label index or score, valid)
  prediction_values(task, texts, labels) -> (predictions for the GLUE metrics, valid mask):
                               an output that is no label word (not a number for STS-B)
                               counts as wrong: the class after the gold one, or STS-B -1.0
                               (the t5 library's default)

The benchmark name is the task's, except that MNLI mismatched and the diagnostic set (AX)
are cast as MNLI. Label words are TFDS's class names, in TFDS order (plm_jax.finetune.glue
label indices).
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np

from plm_jax.finetune.glue import GlueTask

# Task -> (benchmark name, (field name, index in (text_a, text_b)) in sorted order,
# label words in TFDS order; None: STS-B's score).
FORMATS: Dict[str, Tuple[str, Tuple[Tuple[str, int], ...], Tuple[str, ...]]] = {
    "cola": ("cola", (("sentence", 0),), ("unacceptable", "acceptable")),
    "sst2": ("sst2", (("sentence", 0),), ("negative", "positive")),
    "mrpc": ("mrpc", (("sentence1", 0), ("sentence2", 1)), ("not_equivalent", "equivalent")),
    "stsb": ("stsb", (("sentence1", 0), ("sentence2", 1)), None),
    "qqp": ("qqp", (("question1", 0), ("question2", 1)), ("not_duplicate", "duplicate")),
    "mnli": ("mnli", (("hypothesis", 1), ("premise", 0)),
             ("entailment", "neutral", "contradiction")),
    "qnli": ("qnli", (("question", 0), ("sentence", 1)), ("entailment", "not_entailment")),
    "rte": ("rte", (("sentence1", 0), ("sentence2", 1)), ("entailment", "not_entailment")),
    "wnli": ("wnli", (("sentence1", 0), ("sentence2", 1)), ("not_entailment", "entailment")),
}
FORMATS["mnli_mm"] = FORMATS["mnli"]
FORMATS["ax"] = FORMATS["mnli"]

INVALID_SCORE = -1.0     # STS-B: what an unparseable output predicts (t5's default)


def _format(task: GlueTask):
  if task.name not in FORMATS:
    raise ValueError(f"GLUE task {task.name!r} has no text-to-text format; known: "
                     f"{sorted(FORMATS)}")
  return FORMATS[task.name]


def label_words(task: GlueTask) -> Tuple[str, ...]:
  """The class words of a classification task (empty for STS-B)."""
  return _format(task)[2] or ()


def inputs_text(task: GlueTask, example) -> str:
  """'<benchmark> <field>: <text> [<field>: <text>]' (t5's `glue` preprocessor)."""
  name, fields, _ = _format(task)
  texts = (example["text_a"], example["text_b"])
  return " ".join([name] + [f"{field}: {texts[i]}" for field, i in fields])


def target_text(task: GlueTask, label) -> str:
  """The label word, STS-B's score as round(5 x score) / 5 in float32 ('%.1f', ties to even
  as tf.round), or '' when the example has no label (-1 / nan: the test split)."""
  words = _format(task)[2]
  if words is None:
    if not np.isfinite(label):
      return ""
    five = np.float32(5.0)     # float32 as t5's TFDS feature: 0.1 -> 0.5 -> '0.0'
    return f"{np.round(np.float32(label) * five) / five:.1f}"
  if int(label) < 0:
    return ""
  return words[int(label)]


def parse_prediction(task: GlueTask, text: str) -> Tuple[float, bool]:
  """Decoded text -> (class index or STS-B score, True), or (-1 / INVALID_SCORE, False)."""
  words = _format(task)[2]
  text = text.strip()
  if words is None:
    try:
      value = float(text)
    except ValueError:
      return INVALID_SCORE, False
    return (value, True) if np.isfinite(value) else (INVALID_SCORE, False)
  if text in words:
    return words.index(text), True
  return -1, False


def prediction_values(task: GlueTask, texts: Sequence[str], labels: np.ndarray
                      ) -> Tuple[np.ndarray, np.ndarray]:
  """Predictions for plm_jax.finetune.metrics and the valid mask; an invalid classification
  output becomes a wrong class ((gold + 1) mod classes; class 0 without a gold label)."""
  parsed = [parse_prediction(task, t) for t in texts]
  valid = np.asarray([ok for _, ok in parsed], bool)
  words = _format(task)[2]
  if words is None:
    return np.asarray([v for v, _ in parsed], np.float32), valid
  labels = np.asarray(labels, np.int64)
  wrong = np.where(labels >= 0, (labels + 1) % len(words), 0)
  values = np.asarray([v for v, _ in parsed], np.int64)
  return np.where(valid, values, wrong).astype(np.int32), valid
