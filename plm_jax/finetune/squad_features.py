"""SQuAD sliding windows ([CLS] question [SEP] context window [SEP]) and span decoding.

The recipe of the original BERT run_squad, with the tokenizer run in batches:

  1. the context is split on whitespace into words (char -> word map); every word of every
     distinct context goes through the vocabulary in one `encode_tf` call on a 1-D string
     tensor (ragged result), and all questions in another; a word can give several
     sub-tokens (punctuation is split off, WordPiece pieces), each mapped back to its word
  2. the answer's first / last word give its sub-token span, narrowed to the sub-tokens
     that spell the tokenized answer when they sit inside a longer word ("1895" in
     "1895-96")
  3. the question is cut to max_query_length tokens; the context tokens are covered by
     windows of max_seq_length - len(question) - 3 tokens, each starting doc_stride after
     the last, until one reaches the end
  4. a token's "max context" window is the one where min(left, right) context + 0.01 *
     window length is largest (the first such); only there may a predicted span start
  5. start / end positions: the answer's tokens inside the window, else 0 ([CLS]) when the
     answer is not wholly inside it

Decoding (postprocess): per window the n_best highest start and end logits; a pair counts
if both ends are context tokens, the start is in its max-context window, end >= start and
the span has at most max_answer_length tokens; the best pair over all windows of a question
wins (start + end logit). Its tokens are joined into text, found in the basic-tokenized
whole words they came from, and the matching characters of the original words are the
answer (BERT's get_final_text idea); when that cannot be aligned the whole words are.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np
import tensorflow as tf

from plm_jax.data import vocab as vocab_lib


def _is_space(c: str) -> bool:
  return c in " \t\r\n" or ord(c) == 0x202F


def split_words(context: str):
  """Whitespace words of `context` and the word index of every character (-1 for spaces
  before the first word; a space belongs to the word before it)."""
  words: List[str] = []
  char_to_word = np.empty(len(context), dtype=np.int32)
  prev_space = True
  for i, c in enumerate(context):
    if _is_space(c):
      prev_space = True
    else:
      if prev_space:
        words.append(c)
      else:
        words[-1] += c
      prev_space = False
    char_to_word[i] = len(words) - 1
  return words, char_to_word


def _encode_batch(vocab, texts: Sequence[str], chunk: int = 200_000):
  """Token ids of many strings through vocab.encode_tf: (flat ids int32, row splits)."""
  values, lengths = [], []
  for i in range(0, len(texts), chunk):
    ids = vocab.encode_tf(tf.constant(list(texts[i:i + chunk]), dtype=tf.string))
    values.append(ids.flat_values.numpy().astype(np.int32))
    lengths.append(ids.row_lengths().numpy())
  flat = np.concatenate(values) if values else np.zeros([0], np.int32)
  splits = np.concatenate([[0], np.cumsum(np.concatenate(lengths) if lengths else [])])
  return flat, splits.astype(np.int64)


@dataclasses.dataclass
class SquadFeatures:
  """Windows of a list of examples. `arrays` are the model inputs and labels (F windows,
  L = max_seq_length); the rest is what postprocess needs to map logits back to text."""
  arrays: Dict[str, np.ndarray]
  example_index: np.ndarray      # int32 [F]: the window's example
  window_start: np.ndarray       # int32 [F]: index of its first token among the context's
  token_to_word: np.ndarray      # int32 [F, L]: context word of each token, -1 elsewhere
  max_context: np.ndarray        # bool [F, L]: this window is the token's max-context one
  examples: List[Mapping[str, Any]]
  words: List[List[str]]         # whitespace words of each example's context
  vocab: Any
  skipped: List[str]             # training: question ids whose answer words do not spell it

  def __len__(self) -> int:
    return int(self.example_index.shape[0])


def _improve_span(doc: np.ndarray, start: int, end: int, answer: np.ndarray):
  """The first sub-span of doc[start:end+1] whose ids equal `answer`, if any (else unchanged)."""
  n = answer.size
  for s in range(start, end - n + 2):
    if n and np.array_equal(doc[s:s + n], answer):
      return s, s + n - 1
  return start, end


def _window_starts(n_doc: int, window: int, stride: int) -> List[int]:
  starts, s = [], 0
  while True:
    starts.append(s)
    if s + min(n_doc - s, window) >= n_doc:
      return starts
    s += min(window, stride)


def _max_context_window(n_doc: int, starts: Sequence[int], window: int) -> np.ndarray:
  """int [n_doc]: for every context token the window (index) where it has most context."""
  pos = np.arange(n_doc)[None, :]
  st = np.asarray(starts)[:, None]
  length = np.minimum(n_doc - st, window)
  inside = (pos >= st) & (pos < st + length)
  score = np.minimum(pos - st, st + length - 1 - pos) + 0.01 * length
  return np.argmax(np.where(inside, score, -np.inf), axis=0)   # first best on ties


def featurize(examples: Sequence[Mapping[str, Any]], vocab, max_seq_length: int = 384,
              doc_stride: int = 128, max_query_length: int = 64,
              training: bool = False) -> SquadFeatures:
  """Sliding-window features of SQuAD examples (see the module docstring).

  start/end positions come from each example's first answer (0 / 0 for windows without
  it); with training=True an example whose answer cannot be spelled from its whitespace
  words is skipped (its id lands in .skipped), as BERT does.
  """
  if not hasattr(vocab, "basic_tokenize_tf"):
    raise TypeError(f"SQuAD featurisation needs a WordPiece vocabulary, got {vocab}")
  if max_seq_length - max_query_length - 3 < 1:
    raise ValueError(f"max_seq_length {max_seq_length} leaves no room for context after a "
                     f"{max_query_length}-token question")
  if doc_stride < 1:
    raise ValueError(f"doc_stride must be positive, got {doc_stride}")
  cls_id, sep_id, pad_id = vocab_lib.special_ids(vocab, ("cls", "sep", "pad"))
  L = max_seq_length

  contexts: Dict[str, int] = {}
  for ex in examples:
    contexts.setdefault(ex["context"], len(contexts))
  split = [split_words(c) for c in contexts]
  word_ids, word_splits = _encode_batch(vocab, [w for ws, _ in split for w in ws])
  q_ids, q_splits = _encode_batch(vocab, [ex["question"] for ex in examples])
  a_ids, a_splits = _encode_batch(vocab, [ex["answers"][0]["text"] if ex["answers"] else ""
                                          for ex in examples])
  docs = []                 # per context: (doc ids, token -> word, word -> first token)
  w0 = 0
  for words, _ in split:
    bounds = word_splits[w0:w0 + len(words) + 1]
    tok_to_word = np.repeat(np.arange(len(words), dtype=np.int32), np.diff(bounds))
    docs.append((word_ids[bounds[0]:bounds[-1]], tok_to_word, (bounds - bounds[0])))
    w0 += len(words)

  rows: Dict[str, List] = {k: [] for k in ("input_ids", "token_type_ids", "attention_mask",
                                           "start_positions", "end_positions",
                                           "example_index", "window_start", "token_to_word",
                                           "max_context")}
  kept, kept_words, skipped = [], [], []
  for i, ex in enumerate(examples):
    c = contexts[ex["context"]]
    words, char_to_word = split[c]
    doc, tok_to_word, word_to_tok = docs[c]
    query = q_ids[q_splits[i]:q_splits[i + 1]][:max_query_length]
    tok_start = tok_end = -1
    if ex["answers"]:
      ans = ex["answers"][0]
      text = ans["text"]                      # its first / last non-space characters' words
      first = int(char_to_word[ans["answer_start"] + len(text) - len(text.lstrip())])
      last = int(char_to_word[ans["answer_start"] + len(text.rstrip()) - 1])
      if training and " ".join(ans["text"].split()) not in " ".join(words[first:last + 1]):
        skipped.append(ex["id"])
        continue
      tok_start, tok_end = int(word_to_tok[first]), int(word_to_tok[last + 1]) - 1
      tok_start, tok_end = _improve_span(doc, tok_start, tok_end,
                                         a_ids[a_splits[i]:a_splits[i + 1]])
    elif training:
      raise ValueError(f"question {ex['id']}: training features need an answer")
    window = L - len(query) - 3
    starts = _window_starts(len(doc), window, doc_stride)
    best = _max_context_window(len(doc), starts, window)
    offset = len(query) + 2
    for w, s in enumerate(starts):
      n = min(len(doc) - s, window)
      ids = np.full(L, pad_id, np.int32)
      ids[0], ids[1:offset - 1], ids[offset - 1] = cls_id, query, sep_id
      ids[offset:offset + n], ids[offset + n] = doc[s:s + n], sep_id
      types = np.zeros(L, np.int32)
      types[offset:offset + n + 1] = 1
      mask = np.zeros(L, np.int32)
      mask[:offset + n + 1] = 1
      t2w = np.full(L, -1, np.int32)
      t2w[offset:offset + n] = tok_to_word[s:s + n]
      maxc = np.zeros(L, bool)
      maxc[offset:offset + n] = best[s:s + n] == w
      inside = 0 <= tok_start <= tok_end and s <= tok_start and tok_end < s + n
      rows["start_positions"].append(tok_start - s + offset if inside else 0)
      rows["end_positions"].append(tok_end - s + offset if inside else 0)
      for k, v in (("input_ids", ids), ("token_type_ids", types), ("attention_mask", mask),
                   ("token_to_word", t2w), ("max_context", maxc),
                   ("example_index", len(kept)), ("window_start", s)):
        rows[k].append(v)
    kept.append(ex)
    kept_words.append(words)

  def stack(k, dtype, shape):
    return np.asarray(rows[k], dtype).reshape(shape)
  arrays = {k: stack(k, np.int32, [-1, L])
            for k in ("input_ids", "token_type_ids", "attention_mask")}
  arrays.update({k: stack(k, np.int32, [-1]) for k in ("start_positions", "end_positions")})
  return SquadFeatures(arrays=arrays, example_index=stack("example_index", np.int32, [-1]),
                       window_start=stack("window_start", np.int32, [-1]),
                       token_to_word=stack("token_to_word", np.int32, [-1, L]),
                       max_context=stack("max_context", bool, [-1, L]), examples=kept,
                       words=kept_words, vocab=vocab, skipped=skipped)


def _strip_spaces(text: str):
  """text without whitespace, and the index in `text` of each kept character."""
  keep = [i for i, c in enumerate(text) if not c.isspace()]
  return "".join(text[i] for i in keep), keep


def final_text(pred: str, orig: str, basic: str) -> str:
  """The characters of `orig` (whole words) that `pred` (joined sub-tokens) spells.

  `basic` is orig through the vocabulary's basic tokenizer, words joined by spaces: pred
  is searched there, and the match is carried back to orig by aligning the two strings
  with whitespace removed; orig whole when pred is not found or the lengths differ
  (lower-casing or accent stripping changed the character count)."""
  start = basic.find(pred)
  if not pred or start < 0:
    return orig
  orig_ns, orig_pos = _strip_spaces(orig)
  basic_ns, basic_pos = _strip_spaces(basic)
  if len(orig_ns) != len(basic_ns):
    return orig
  ns_of = {p: k for k, p in enumerate(basic_pos)}
  first, last = ns_of.get(start), ns_of.get(start + len(pred) - 1)
  if first is None or last is None:
    return orig
  return orig[orig_pos[first]:orig_pos[last] + 1]


def _join_tokens(vocab, ids: np.ndarray) -> str:
  text = " ".join(vocab.id_to_token(int(t)) for t in ids)
  text = text.replace(" " + vocab.CONTINUATION_PREFIX, "").replace(vocab.CONTINUATION_PREFIX, "")
  return " ".join(text.split())


def best_spans(features: SquadFeatures, start_logits: np.ndarray, end_logits: np.ndarray,
               n_best: int = 20, max_answer_length: int = 30) -> Dict[int, tuple]:
  """{example index: (score, window, start token, end token)} of the best valid span."""
  start_logits = np.asarray(start_logits, np.float32)
  end_logits = np.asarray(end_logits, np.float32)
  shape = features.token_to_word.shape
  if start_logits.shape != shape or end_logits.shape != shape:
    raise ValueError(f"postprocess: start/end logits {start_logits.shape} / "
                     f"{end_logits.shape} do not match the features' [windows, length] "
                     f"{shape}")
  k = min(n_best, shape[1])
  top_s = np.argsort(-start_logits, axis=1, kind="stable")[:, :k]    # [F, k]
  top_e = np.argsort(-end_logits, axis=1, kind="stable")[:, :k]
  best: Dict[int, tuple] = {}
  for f in range(shape[0]):
    s, e = top_s[f][:, None], top_e[f][None, :]                        # [k, 1], [1, k]
    t2w = features.token_to_word[f]
    ok = ((t2w[s] >= 0) & (t2w[e] >= 0) & features.max_context[f][s] & (e >= s)
          & (e - s + 1 <= max_answer_length))
    if not ok.any():
      continue
    score = np.where(ok, start_logits[f][s] + end_logits[f][e], -np.inf)
    a, b = np.unravel_index(int(np.argmax(score)), score.shape)
    ex = int(features.example_index[f])
    if ex not in best or score[a, b] > best[ex][0]:
      best[ex] = (float(score[a, b]), f, int(top_s[f][a]), int(top_e[f][b]))
  return best


def postprocess(features: SquadFeatures, start_logits: np.ndarray, end_logits: np.ndarray,
                n_best: int = 20, max_answer_length: int = 30) -> Dict[str, str]:
  """{question id: answer text} from per-window logits [F, L] (the features' order);
  a question with no valid span gets ''."""
  best = best_spans(features, start_logits, end_logits, n_best, max_answer_length)
  preds = {ex["id"]: "" for ex in features.examples}
  order = sorted(best)
  origs, toks = [], []
  for i in order:
    _, f, s, e = best[i]
    w = features.token_to_word[f]
    origs.append(" ".join(features.words[i][w[s]:w[e] + 1]))
    toks.append(_join_tokens(features.vocab, features.arrays["input_ids"][f, s:e + 1]))
  if order:
    basic = features.vocab.basic_tokenize_tf(tf.constant(origs, dtype=tf.string))
    basic = tf.strings.reduce_join(basic, axis=-1, separator=" ").numpy()
    for i, tok, orig, b in zip(order, toks, origs, basic):
      preds[features.examples[i]["id"]] = final_text(tok, orig, b.decode("utf-8"))
  return preds
