"""seqio preprocessors shared by the masked-LM objectives (BERT, RoBERTa, ALBERT, ERNIE...).

  {'text'} --split_sentences--> {'sentences'} --tokenize_sentences--> {'tokens'}
  --create_instances--> {'input_ids', 'token_type_ids', 'attention_mask',
                         'next_sentence_label'}
  --mask_tokens--> + {'masked_lm_positions', 'masked_lm_ids', 'masked_lm_weights'}
pack_full_sentences replaces create_instances for inputs packed across
documents (RoBERTa). Special ids and word boundaries come from the vocabulary.

Everything runs in the tf.data graph except the sentence-pair assembly in
`create_instances`, which runs BERT's create_pretraining_data algorithm in
numpy (tf.numpy_function) with a numpy RNG seeded from the per-element seqio
seed. Random choices depend only on (seed, position in the stream), so the
stream is reproducible, and since no CacheDatasetPlaceholder is used, seqio
applies all of this after `repeat`: every epoch gets new pairs and masks.
"""
from __future__ import annotations

import functools
from typing import List

import numpy as np
import seqio
import tensorflow as tf

from plm_jax.data import sentences as sentences_lib
from plm_jax.data import vocab as vocab_lib


def split_sentences(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """{'text': str} -> {'sentences': [S] str}; documents without text are dropped."""
  def fn(ex):
    return {"sentences": sentences_lib.split_sentences_tf(ex["text"])}
  ds = dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.filter(lambda ex: tf.size(ex["sentences"]) > 0)


def tokenize_sentences(dataset: tf.data.Dataset, vocabulary: seqio.Vocabulary) -> tf.data.Dataset:
  """{'sentences'} -> {'tokens': ragged int32 [S, (T)]}; empty sentences dropped."""
  def fn(ex):
    tokens = tf.cast(vocabulary.encode_tf(ex["sentences"]), tf.int32)
    keep = tokens.row_lengths() > 0
    return {"tokens": tf.ragged.boolean_mask(tokens, keep)}
  ds = dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.filter(lambda ex: ex["tokens"].nrows() > 0)


# ---- sentence pairs (numpy) ------------------------------------------------------------------

def _truncate_seq_pair(a: List[int], b: List[int], max_num_tokens: int, rng) -> None:
  """BERT: trim the longer side, from the front or the back at random."""
  while len(a) + len(b) > max_num_tokens:
    longer = a if len(a) > len(b) else b
    if rng.random() < 0.5:
      del longer[0]
    else:
      longer.pop()


def _instances_from_document(docs, index, rng, seq_length, short_seq_prob, nsp):
  """BERT's create_instances_from_document; yields (tokens_a, tokens_b, is_random)."""
  document = docs[index]
  max_num_tokens = seq_length - 3 if nsp else seq_length - 2
  target = max_num_tokens
  if rng.random() < short_seq_prob:
    target = int(rng.integers(2, max_num_tokens + 1))
  chunk, length, i = [], 0, 0
  while i < len(document):
    chunk.append(document[i])
    length += len(document[i])
    if i == len(document) - 1 or length >= target:
      if not nsp:
        a = [t for seg in chunk for t in seg][:max_num_tokens]
        yield a, [], 0
      else:
        a_end = int(rng.integers(1, len(chunk))) if len(chunk) >= 2 else 1
        a = [t for seg in chunk[:a_end] for t in seg]
        b: List[int] = []
        others = len(docs) > 1
        if others and (len(chunk) == 1 or rng.random() < 0.5):
          is_random = 1
          target_b = target - len(a)
          r = index
          while r == index:   # BERT tries 10 times; with >= 2 documents this always ends
            r = int(rng.integers(0, len(docs)))
          random_doc = docs[r]
          for j in range(int(rng.integers(0, len(random_doc))), len(random_doc)):
            b.extend(random_doc[j])
            if len(b) >= target_b:
              break
          i -= len(chunk) - a_end    # put the unused segments back
        else:
          is_random = 0
          b = [t for seg in chunk[a_end:] for t in seg]
        _truncate_seq_pair(a, b, max_num_tokens, rng)
        if a and b:
          yield a, b, is_random
      chunk, length = [], 0
    i += 1


def _create_instances_np(flat, doc_splits, sent_splits, seed, *, seq_length, short_seq_prob,
                         nsp, cls_id, sep_id, pad_id):
  rng = np.random.default_rng([int(s) & 0xFFFFFFFF for s in seed])
  flat = flat.tolist()
  docs = []
  for d in range(len(doc_splits) - 1):
    docs.append([flat[sent_splits[s]:sent_splits[s + 1]]
                 for s in range(doc_splits[d], doc_splits[d + 1])])
  rows = []
  for d in range(len(docs)):
    rows.extend(_instances_from_document(docs, d, rng, seq_length, short_seq_prob, nsp))
  n = len(rows)
  input_ids = np.full([n, seq_length], pad_id, np.int32)
  type_ids = np.zeros([n, seq_length], np.int32)
  labels = np.zeros([n], np.int32)
  for k, (a, b, is_random) in enumerate(rows):
    seq = [cls_id] + a + [sep_id] + (b + [sep_id] if b else [])
    input_ids[k, :len(seq)] = seq
    type_ids[k, len(a) + 2:len(seq)] = 1
    labels[k] = is_random
  return input_ids, type_ids, labels


def create_instances(dataset: tf.data.Dataset, *, vocabulary, seq_length: int, group_size: int,
                     short_seq_prob: float, nsp: bool) -> tf.data.Dataset:
  """Groups `group_size` documents and makes [CLS] A [SEP] B [SEP] instances.

  Label 0: B is the actual continuation of A; 1: B is a random segment from
  another document of the group (as in Hugging Face). With nsp=False each
  instance is one segment, [CLS] A [SEP], label 0. The [CLS]/[SEP]/[PAD] ids
  are the vocabulary's (roles cls, sep, pad).
  """
  pad_id, cls_id, sep_id = vocab_lib.special_ids(vocabulary, ("pad", "cls", "sep"))
  np_fn = functools.partial(_create_instances_np, seq_length=seq_length,
                            short_seq_prob=short_seq_prob, nsp=nsp, cls_id=cls_id,
                            sep_id=sep_id, pad_id=pad_id)

  @seqio.map_over_dataset(num_seeds=1)
  def make(ex, seed):
    tokens = ex["tokens"]                       # ragged [G, (S), (T)]
    ids, types, labels = tf.numpy_function(
        np_fn, [tokens.flat_values, tokens.row_splits, tokens.values.row_splits, seed],
        [tf.int32, tf.int32, tf.int32], stateful=False)
    ids = tf.ensure_shape(ids, [None, seq_length])
    types = tf.ensure_shape(types, [None, seq_length])
    return {"input_ids": ids, "token_type_ids": types,
            "attention_mask": tf.cast(ids != pad_id, tf.int32),
            "next_sentence_label": tf.ensure_shape(labels, [None])}

  ds = dataset.ragged_batch(group_size)
  return make(ds).unbatch()


def _full_sentences_np(flat, doc_splits, sent_splits, *, seq_length, cls_id, sep_id, pad_id,
                       cross_documents=True):
  rows, current = [], []
  budget = seq_length - 2
  for d in range(len(doc_splits) - 1):
    if not cross_documents and current:
      rows.append(current)            # DOC-SENTENCES: a document ends its last row
      current = []
    for s in range(doc_splits[d], doc_splits[d + 1]):
      sent = flat[sent_splits[s]:sent_splits[s + 1]].tolist()[:budget]
      if current and len(current) + len(sent) > budget:
        rows.append(current)
        current = []
      current.extend(sent)
    if cross_documents and d < len(doc_splits) - 2 and current and len(current) < budget:
      current.append(sep_id)          # document boundary inside a packed sequence
  if current:
    rows.append(current)
  ids = np.full([len(rows), seq_length], pad_id, np.int32)
  for k, row in enumerate(rows):
    seq = [cls_id] + row + [sep_id]
    ids[k, :len(seq)] = seq
  return ids


def pack_full_sentences(dataset: tf.data.Dataset, *, vocabulary, seq_length: int,
                        group_size: int, cross_documents: bool = True) -> tf.data.Dataset:
  """RoBERTa's FULL-SENTENCES inputs: whole sentences packed contiguously up to
  seq_length, crossing document boundaries (an extra [SEP] between documents).
  cross_documents=False gives DOC-SENTENCES: a row never crosses a document end.

  Documents are taken `group_size` at a time in stream order; a sentence longer
  than the budget is cut. Output: input_ids, attention_mask, token_type_ids (0).
  """
  pad_id, cls_id, sep_id = vocab_lib.special_ids(vocabulary, ("pad", "cls", "sep"))
  np_fn = functools.partial(_full_sentences_np, seq_length=seq_length, cls_id=cls_id,
                            sep_id=sep_id, pad_id=pad_id, cross_documents=cross_documents)

  def make(ex):
    tokens = ex["tokens"]
    ids = tf.numpy_function(np_fn, [tokens.flat_values, tokens.row_splits,
                                    tokens.values.row_splits], tf.int32, stateful=False)
    ids = tf.ensure_shape(ids, [None, seq_length])
    return {"input_ids": ids, "attention_mask": tf.cast(ids != pad_id, tf.int32),
            "token_type_ids": tf.zeros_like(ids)}

  return dataset.ragged_batch(group_size).map(make).unbatch()


# ---- masking (TF ops) ----------------------------------------------------------------------

def greedy_take(lengths: tf.Tensor, valid: tf.Tensor, budget: tf.Tensor,
                unit_lengths: bool = False) -> tf.Tensor:
  """Which words to take, visiting them in order: [N] bool.

  A valid word is taken when the lengths taken so far plus its own stay
  <= budget; a word that does not fit is skipped and later (shorter) words
  are still tried, as BERT does. With unit_lengths (every word one token)
  that is a running-sum test; otherwise a scan over the words.
  """
  if unit_lengths:
    return (tf.cumsum(lengths) <= budget) & valid

  def step(carry, word):  # carry: (total taken so far, previous word taken)
    length, ok = word
    take = ok & (carry[0] + length <= budget)
    return carry[0] + tf.where(take, length, 0), take

  _, taken = tf.scan(step, (lengths, valid),
                     initializer=(tf.zeros([], lengths.dtype), tf.constant(False)))
  return taken


def mask_tokens(dataset: tf.data.Dataset, *, vocabulary, max_predictions: int, mask_rate: float,
                mask_token_prob: float, random_token_prob: float,
                whole_word_masking: bool) -> tf.data.Dataset:
  """BERT dynamic masking with stateless random ops.

  num_to_predict = min(P, max(1, round(n * mask_rate))) with n the number of
  non-padding tokens, [CLS]/[SEP] included, as in BERT. [CLS], [SEP] and
  padding are never chosen. Of the chosen tokens, mask_token_prob become
  [MASK], random_token_prob a uniformly drawn non-special id, the rest stay.
  Special ids and the word rule come from the vocabulary.

  Words are the masking unit: each token is a word, or with whole-word masking
  a token plus the following continuation pieces ('##' in WordPiece). Words
  are visited in random order; as in BERT's create_masked_lm_predictions, a
  word is taken if it still fits (running total + its length <=
  num_to_predict) and skipped otherwise, and later words are still tried (see
  `greedy_take`).
  """
  pad_id, cls_id, sep_id, mask_id = vocab_lib.special_ids(vocabulary,
                                                          ("pad", "cls", "sep", "mask"))
  is_continuation = vocab_lib.continuation_mask(vocabulary)
  replacement_ids = vocab_lib.replacement_ids(vocabulary)
  is_cont = tf.constant(is_continuation, tf.bool)
  repl = tf.constant(replacement_ids, tf.int32)

  @seqio.map_over_dataset(num_seeds=1)
  def mask(ex, seed):
    ids = ex["input_ids"]                                 # [L]
    length = ids.shape[0]
    seeds = tf.random.experimental.stateless_split(seed, 3)
    cand = (ids != cls_id) & (ids != sep_id) & (ids != pad_id)
    n_tokens = tf.reduce_sum(tf.cast(ids != pad_id, tf.float32))
    num_to_predict = tf.cast(tf.minimum(
        float(max_predictions), tf.maximum(1.0, tf.round(n_tokens * mask_rate))), tf.int32)
    if whole_word_masking:
      prev_cand = tf.concat([[False], cand[:-1]], 0)
      start = cand & (~tf.gather(is_cont, ids) | ~prev_cand)
    else:
      start = cand
    word_id = tf.cumsum(tf.cast(start, tf.int32)) - 1     # word of each candidate token
    num_words = tf.reduce_sum(tf.cast(start, tf.int32))
    word_len = tf.math.unsorted_segment_sum(
        tf.cast(cand, tf.int32), tf.where(cand, word_id, length), length + 1)[:length]
    valid_word = tf.range(length) < num_words
    scores = tf.where(valid_word, tf.random.stateless_uniform([length], seeds[0]), 2.0)
    order = tf.argsort(scores)                            # valid words first, shuffled
    take_in_order = greedy_take(tf.gather(word_len, order), tf.gather(valid_word, order),
                                num_to_predict, unit_lengths=not whole_word_masking)
    take_word = tf.scatter_nd(order[:, None], tf.cast(take_in_order, tf.int32), [length]) > 0
    chosen = cand & tf.gather(take_word, tf.maximum(word_id, 0))

    u = tf.random.stateless_uniform([length], seeds[1])
    random_tok = tf.gather(repl, tf.random.stateless_uniform(
        [length], seeds[2], minval=0, maxval=repl.shape[0], dtype=tf.int32))
    replaced = tf.where(u < mask_token_prob, mask_id,
                        tf.where(u < mask_token_prob + random_token_prob, random_tok, ids))
    positions = tf.cast(tf.where(chosen)[:, 0], tf.int32)   # ascending, unique
    n_pred = tf.shape(positions)[0]
    pad = [[0, max_predictions - n_pred]]
    out = dict(ex)
    out["input_ids"] = tf.where(chosen, replaced, ids)
    out["masked_lm_positions"] = tf.ensure_shape(tf.pad(positions, pad), [max_predictions])
    out["masked_lm_ids"] = tf.ensure_shape(tf.pad(tf.gather(ids, positions), pad),
                                           [max_predictions])
    out["masked_lm_weights"] = tf.ensure_shape(
        tf.pad(tf.ones([n_pred], tf.float32), pad), [max_predictions])
    return out

  return mask(dataset)
