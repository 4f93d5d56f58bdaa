"""Perplexity of a causal LM on a text file (WikiText-2), whole file, optional sliding window.

Tokenisation (stated, as the GPT-2 paper's WikiText numbers depend on it): the file's
text as it is (WikiText raw: its own spacing, ' @-@ ', newlines) through the
model's byte-level BPE in one piece, after one end-of-text token; perplexity is per
BPE token: exp(mean NLL of every token after the first). --detokenize first undoes
WikiText's own tokenisation line by line (data.corpora.detokenize_wikitext), as the GPT-2
paper's WikiText numbers did; the unigram baseline is then fitted on those same ids.

  windows(ids, context, stride)   the scoring plan: windows of `context` tokens, each
                                  scoring the tokens past the previous window's end (`stride`
                                  new tokens a window), so every token is scored once with at
                                  least context - stride tokens before it (stride == context:
                                  windows overlap by the one token that predicts the next)
  perplexity(model, params, ids, context, stride) -> (perplexity, tokens scored)
  unigram_perplexity(ids, vocab_size)  add-one unigram model fitted on these very ids
                                  (no unigram model can do better on them)

  python -m plm_jax.objectives.gpt_perplexity --model_dir=WORKDIR/export \
      --file=../shared/data/pretrain/wiki/wikitext-2-raw/wiki.test.raw --context=128 --stride=64
"""
from __future__ import annotations

import argparse
import math
import sys
from typing import List, Optional, Sequence, Tuple

import jax
import numpy as np


def windows(n: int, context: int, stride: int) -> List[Tuple[int, int, int]]:
  """[(start, end, first scored index)] covering token indices 1 .. n-1 exactly once; every
  scored token sees at least max(context - stride, 1) tokens before it (all it has, at the
  file's start)."""
  if not 0 < stride <= context or context < 2:
    raise ValueError(f"stride {stride} must be in [1, context={context}], context >= 2")
  out, scored_to = [], 1
  while scored_to < n:
    start = max(0, scored_to - max(context - stride, 1))
    end = min(start + context, n)
    out.append((start, end, scored_to))
    scored_to = end
  return out


def perplexity(model, params, ids: np.ndarray, context: int, stride: int,
               batch_size: int = 16) -> Tuple[float, int]:
  """(perplexity, tokens scored) of ids [N] under model (GPTLMHeadModel)."""
  plan = windows(len(ids), context, stride)
  rows = np.zeros((len(plan), context), np.int32)
  weights = np.zeros((len(plan), context), np.float32)
  for k, (start, end, first) in enumerate(plan):
    rows[k, :end - start] = ids[start:end]
    weights[k, first - start:end - start] = 1.0       # target positions scored in this window

  @jax.jit
  def nll_sum(p, x, w):
    logits = model.apply({"params": p}, x)["logits"][:, :-1]
    logp = jax.nn.log_softmax(logits.astype("float32"), axis=-1)
    nll = -jax.numpy.take_along_axis(logp, x[:, 1:, None], axis=-1)[..., 0]
    return (nll * w[:, 1:]).sum()

  total, count = 0.0, 0
  for i in range(0, len(rows), batch_size):
    x, w = rows[i:i + batch_size], weights[i:i + batch_size]
    pad = batch_size - len(x)
    if pad:
      x = np.concatenate([x, np.zeros((pad, context), np.int32)])
      w = np.concatenate([w, np.zeros((pad, context), np.float32)])
    total += float(nll_sum(params, x, w))
    count += int(w.sum())
  return math.exp(total / count), count


def unigram_perplexity(ids: np.ndarray, vocab_size: int) -> float:
  """Add-one unigram model fitted on ids themselves, scored on ids[1:]."""
  counts = np.bincount(ids, minlength=vocab_size).astype(np.float64) + 1.0
  logp = np.log(counts / counts.sum())
  return float(math.exp(-logp[ids[1:]].mean()))


def file_ids(path: str, vocab, detokenize: bool = False) -> np.ndarray:
  """The stated tokenisation: one end-of-text token, then the whole file's BPE ids
  (detokenize: every line through data.corpora.detokenize_wikitext first)."""
  with open(path, encoding="utf-8") as f:
    text = f.read()
  if detokenize:
    from plm_jax.data.corpora import detokenize_wikitext  # pylint: disable=import-outside-toplevel
    text = "\n".join(detokenize_wikitext(line) for line in text.split("\n"))
  from plm_jax.data import gpt_pretrain  # pylint: disable=import-outside-toplevel
  return np.asarray([gpt_pretrain.eot_id(vocab)] + vocab.encode_ids(text), np.int32)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m plm_jax.objectives.gpt_perplexity")
  parser.add_argument("--model_dir", required=True, help="HF GPT directory or plm_jax export")
  parser.add_argument("--file", required=True)
  parser.add_argument("--context", type=int, default=0, help="0: the model's context")
  parser.add_argument("--stride", type=int, default=0, help="0: = context (disjoint windows)")
  parser.add_argument("--detokenize", action="store_true",
                      help="undo WikiText's tokenisation first (' @-@ ', ' , ' ...), as GPT-2 did")
  args = parser.parse_args(argv)
  from plm_jax.models import gpt_generate  # pylint: disable=import-outside-toplevel
  try:
    model, params, vocab = gpt_generate.load_model_and_vocab(args.model_dir)
    context = args.context or model.config.max_position_embeddings
    if context > model.config.max_position_embeddings:
      raise ValueError(f"--context {context} exceeds the model's "
                       f"{model.config.max_position_embeddings} positions")
    ids = file_ids(args.file, vocab, args.detokenize)
    ppl, n = perplexity(model, params, ids, context, args.stride or context)
  except (ValueError, OSError) as e:
    print("error: " + " ".join(str(e).split()), file=sys.stderr)
    return 2
  print(f"{args.file}{' (detokenized)' if args.detokenize else ''}: {n} BPE tokens scored, context {context}, stride {args.stride or context}: "
        f"perplexity {ppl:.2f} (add-one unigram fitted on the file itself: "
        f"{unigram_perplexity(ids, model.config.vocab_size):.2f})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
