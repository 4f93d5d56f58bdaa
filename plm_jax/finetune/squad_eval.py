"""The official SQuAD v1.1 evaluation (exact match and F1) and the predictions.json format.

  normalize_answer(s)              lower-case, drop punctuation, drop the articles a/an/the,
                                   collapse whitespace (in that order, as the official script)
  exact_match(pred, gold) / f1(pred, gold)   one prediction against one gold answer
  evaluate(gold_examples, predictions) -> {'exact_match', 'f1' (percent), 'total', 'missing'}
                                   each question scores its best over its gold answers; a
                                   question without a prediction scores 0 and still counts
  write_predictions(path, predictions) / read_predictions(path)   {question id: answer text}

Command line, like the official evaluate-v1.1.py:
  python -m plm_jax.finetune.squad_eval ../shared/data/squad/v1.1/dev-v1.1.json predictions.json
"""
from __future__ import annotations

import collections
import json
import os
import re
import string
import sys
from typing import Dict, Iterable, Mapping

_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
  s = s.lower()
  s = "".join(ch for ch in s if ch not in _PUNCT)
  s = _ARTICLES.sub(" ", s)
  return " ".join(s.split())


def exact_match(prediction: str, gold: str) -> float:
  return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str) -> float:
  """Token-overlap F1 of the normalised answers (whitespace tokens, counted with repeats)."""
  pred = normalize_answer(prediction).split()
  ref = normalize_answer(gold).split()
  same = sum((collections.Counter(pred) & collections.Counter(ref)).values())
  if same == 0:
    return 0.0
  precision, recall = same / len(pred), same / len(ref)
  return 2 * precision * recall / (precision + recall)


def evaluate(gold_examples: Iterable[Mapping], predictions: Mapping[str, str]) -> Dict[str, float]:
  """Overall EM / F1 in percent over `gold_examples` (dicts with 'id' and 'answers').

  Predictions for questions outside gold_examples are ignored; 'missing' counts gold
  questions without a prediction (they score 0, as in the official script).
  """
  em_sum = f1_sum = 0.0
  total = missing = 0
  for ex in gold_examples:
    total += 1
    golds = [a["text"] for a in ex["answers"]]
    if not golds:
      raise ValueError(f"question {ex['id']}: no gold answers to score against")
    if ex["id"] not in predictions:
      missing += 1
      continue
    pred = predictions[ex["id"]]
    em_sum += max(exact_match(pred, g) for g in golds)
    f1_sum += max(f1(pred, g) for g in golds)
  if total == 0:
    raise ValueError("evaluate: no gold questions")
  return {"exact_match": 100.0 * em_sum / total, "f1": 100.0 * f1_sum / total,
          "total": total, "missing": missing}


def write_predictions(path: str, predictions: Mapping[str, str]) -> None:
  """predictions.json in the official format: one JSON object {question id: answer text}."""
  for qid, text in predictions.items():
    if not isinstance(qid, str) or not isinstance(text, str):
      raise ValueError(f"{path}: prediction {qid!r}: ids and answers must be strings, got "
                       f"{type(qid).__name__} -> {type(text).__name__}")
  if os.path.dirname(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(dict(predictions), f, ensure_ascii=False, indent=1)
    f.write("\n")


def read_predictions(path: str) -> Dict[str, str]:
  try:
    with open(path, encoding="utf-8") as f:
      preds = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f"{path}: cannot read predictions ({e})") from None
  if not isinstance(preds, dict) or not all(isinstance(v, str) for v in preds.values()):
    raise ValueError(f"{path}: not a predictions file (expected {{question id: answer text}})")
  return preds


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if len(argv) != 2:
    print("usage: python -m plm_jax.finetune.squad_eval DATASET.json PREDICTIONS.json",
          file=sys.stderr)
    return 2
  from plm_jax.finetune import squad  # pylint: disable=import-outside-toplevel
  try:
    result = evaluate(squad.read_squad(argv[0]), read_predictions(argv[1]))
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(json.dumps({"exact_match": result["exact_match"], "f1": result["f1"]}))
  return 0


if __name__ == "__main__":
  sys.exit(main())
