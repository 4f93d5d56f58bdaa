"""SQuAD v1.1: reading, an article-level split, windows, decoding and the official metric.

The whole API (one example = one question, a plain dict):

  read_squad(path) -> [example]           the official JSON (train-v1.1.json / dev-v1.1.json)
  read_squad_tfds(split, data_dir) -> [example]   the same dicts from tfds.load('squad')
      example = {'id', 'question', 'context', 'answers': [{'text', 'answer_start'}],
                 'title', 'article' (article index in the source), 'source'}
  article_split(examples, eval_fraction, seed) -> ArticleSplit(train, eval, label)
      whole articles to one side; label 'dev-article-split(...)' for every output
  featurize(examples, vocab, max_seq_length, doc_stride, max_query_length, training)
      -> SquadFeatures: .arrays {input_ids, token_type_ids, attention_mask [F, L] int32,
         start_positions, end_positions [F] int32} plus the per-feature metadata that
         postprocess needs (squad_features.py)
  postprocess(features, start_logits, end_logits, n_best, max_answer_length) -> {qid: text}
  evaluate(gold_examples, predictions) -> {'exact_match', 'f1', ...}   (squad_eval.py)
  write_predictions(path, predictions)    predictions.json in the official format

Bad input (a missing field, an answer_start that does not point at its answer text, a
duplicate question id, an empty file or one without questions) is a one-line ValueError
naming the file and the question id.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

from plm_jax.finetune.squad_eval import evaluate, write_predictions
from plm_jax.finetune.squad_features import SquadFeatures, featurize, postprocess

__all__ = ["read_squad", "read_squad_tfds", "examples_from_tfds_rows", "ArticleSplit",
           "article_split", "SquadFeatures", "featurize", "postprocess", "evaluate",
           "write_predictions", "SPLIT_NAME"]

SPLIT_NAME = "dev-article-split"


def _field(where: str, obj: Any, key: str, kind: type):
  if not isinstance(obj, dict) or key not in obj:
    raise ValueError(f"{where}: missing field {key!r}")
  value = obj[key]
  if not isinstance(value, kind) or isinstance(value, bool):
    raise ValueError(f"{where}: field {key!r} is {type(value).__name__}, expected "
                     f"{kind.__name__}")
  return value


def _check_answers(where: str, context: str, answers: Sequence[Mapping[str, Any]]) -> None:
  if not answers:
    raise ValueError(f"{where}: no answers (SQuAD v2.0 unanswerable questions are not "
                     "supported)")
  for k, a in enumerate(answers):
    text = _field(f"{where} answer {k}", a, "text", str)
    start = _field(f"{where} answer {k}", a, "answer_start", int)
    if not text.strip():
      raise ValueError(f"{where}: answer {k} has an empty text")
    found = context[start:start + len(text)] if 0 <= start <= len(context) else None
    if found != text:
      raise ValueError(f"{where}: answer {k} {text!r} does not match its answer_start "
                       f"{start} (the context has {found!r} there)")


def _make_example(where, qid, question, context, answers, title, article, source):
  _check_answers(where, context, answers)
  if not question.strip():
    raise ValueError(f"{where}: empty question")
  return {"id": qid, "question": question, "context": context,
          "answers": [{"text": a["text"], "answer_start": int(a["answer_start"])}
                      for a in answers],
          "title": title, "article": article, "source": source}


def read_squad(path: str) -> List[Dict[str, Any]]:
  """Every question of an official SQuAD v1.1 JSON file, in file order."""
  if not os.path.isfile(path):
    raise ValueError(f"{path}: no such SQuAD file")
  with open(path, encoding="utf-8") as f:
    raw = f.read()
  if not raw.strip():
    raise ValueError(f"{path}: the file is empty")
  try:
    doc = json.loads(raw)
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not JSON ({e})") from None
  articles = _field(path, doc, "data", list)
  out, seen = [], set()
  for i, art in enumerate(articles):
    title = art.get("title", "") if isinstance(art, dict) else ""
    for j, par in enumerate(_field(f"{path}: article {i} ({title!r})", art, "paragraphs", list)):
      where = f"{path}: article {i} paragraph {j}"
      context = _field(where, par, "context", str)
      for k, qa in enumerate(_field(where, par, "qas", list)):
        qid = _field(f"{where} question {k}", qa, "id", str)
        qwhere = f"{path}: question {qid}"
        if qid in seen:
          raise ValueError(f"{qwhere}: duplicate question id")
        seen.add(qid)
        out.append(_make_example(qwhere, qid, _field(qwhere, qa, "question", str), context,
                                 _field(qwhere, qa, "answers", list), title, i, path))
  if not out:
    raise ValueError(f"{path}: no questions in the file")
  return out


def read_squad_tfds(split: str = "validation", data_dir: Optional[str] = None,
                    name: str = "squad") -> List[Dict[str, Any]]:
  """The same example dicts from TFDS `squad` (plain_text). Needs the prepared dataset
  under data_dir (or internet to download it)."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  ds = tfds.load(name, split=split, data_dir=data_dir, shuffle_files=False)
  return examples_from_tfds_rows(tfds.as_numpy(ds), f"tfds:{name}/{split}")


def examples_from_tfds_rows(rows: Iterable[Mapping[str, Any]], source: str
                            ) -> List[Dict[str, Any]]:
  """Example dicts from TFDS squad rows as numpy (bytes strings, answers as parallel
  'text' / 'answer_start' arrays); 'article' numbers the titles by first appearance."""
  out, seen, articles = [], set(), {}

  def text(x):
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)

  for row in rows:
    qid = text(row["id"])
    where = f"{source}: question {qid}"
    if qid in seen:
      raise ValueError(f"{where}: duplicate question id")
    seen.add(qid)
    answers = [{"text": text(t), "answer_start": int(s)}
               for t, s in zip(row["answers"]["text"], row["answers"]["answer_start"])]
    title = text(row["title"])
    article = articles.setdefault(title, len(articles))
    out.append(_make_example(where, qid, text(row["question"]), text(row["context"]),
                             answers, title, article, source))
  if not out:
    raise ValueError(f"{source}: no questions")
  return out


@dataclasses.dataclass(frozen=True)
class ArticleSplit:
  """Two disjoint sets of whole articles of one file; `label` names the split in outputs."""
  train: List[Dict[str, Any]]
  eval: List[Dict[str, Any]]
  label: str
  train_articles: List[int]
  eval_articles: List[int]


def article_split(examples: Sequence[Mapping[str, Any]], eval_fraction: float = 0.2,
                  seed: int = 0) -> ArticleSplit:
  """Split one file's questions by article: a seeded shuffle of the article indices, the
  first ceil(eval_fraction * articles) of it held out for evaluation (at least one article
  on each side). Deterministic for a given (file, eval_fraction, seed); file order is kept
  inside each side. Every example gets 'split': 'dev-article-split/train' or '/eval'."""
  if not 0.0 < eval_fraction < 1.0:
    raise ValueError(f"article_split: eval_fraction must be in (0, 1), got {eval_fraction}")
  ids = sorted({int(e["article"]) for e in examples})
  if len(ids) < 2:
    raise ValueError(f"article_split: needs at least 2 articles, the examples have {len(ids)}")
  order = np.random.default_rng(seed).permutation(len(ids))
  n_eval = min(max(1, math.ceil(eval_fraction * len(ids))), len(ids) - 1)
  held = {ids[i] for i in order[:n_eval]}
  sources = sorted({os.path.basename(str(e.get("source", ""))) for e in examples})
  label = (f"{SPLIT_NAME}({','.join(sources)}; eval_fraction={eval_fraction}, seed={seed}: "
           f"{len(ids) - n_eval} train / {n_eval} eval articles)")
  train = [dict(e, split=f"{SPLIT_NAME}/train") for e in examples if e["article"] not in held]
  evals = [dict(e, split=f"{SPLIT_NAME}/eval") for e in examples if e["article"] in held]
  return ArticleSplit(train=train, eval=evals, label=label,
                      train_articles=sorted(set(ids) - held), eval_articles=sorted(held))
