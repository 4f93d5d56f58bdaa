"""Causal LM pretraining data (GPT-1 / GPT-2): documents packed into rows of seq_length tokens.

  {'text'} --tokenize--> [eot] + document tokens --pack (numpy, group_size documents at a
  time, in stream order)--> rows {input_ids, segment_ids, position_ids} int32 [L]

Every document starts with the end-of-text token (the vocabulary's eos: GPT-2's
<|endoftext|>, a RoBERTa-style vocabulary's </s>; WordPiece: [SEP]), so the stream reads
"<eot> doc1 <eot> doc2 ..." as GPT-2's training text does, and the model learns to
predict a document's first token from <eot>. Rows are cut from the concatenated
stream; a group's last partial row is padded (segment id 0, which the loss skips).
segment_ids number the documents inside a row from 1; position_ids count from 0 at
each row start (cross_documents=True: attention crosses document ends, GPT-2's way)
or from each document's start (cross_documents=False: the objective also masks
attention between segments). Streams and resumption as plm_jax.data.bert_pretrain.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import numpy as np
import seqio
import tensorflow as tf

from plm_jax.data import bert_pretrain, sources, tasks
from plm_jax.data import vocab as vocab_lib

FEATURES = ("input_ids", "segment_ids", "position_ids")
Spec = seqio.FeatureConverter.FeatureSpec


class CausalLmFeatureConverter(seqio.FeatureConverter):
  """input_ids / segment_ids / position_ids int32 [L], already packed to seq_length."""
  TASK_FEATURES = {k: Spec(dtype=tf.int32) for k in FEATURES}
  MODEL_FEATURES = TASK_FEATURES
  PACKING_FEATURE_DTYPES = {}

  def __init__(self, **kwargs):
    super().__init__(pack=False, **kwargs)

  def _convert_features(self, ds, task_feature_lengths):
    def convert(ex):
      return {k: tf.ensure_shape(ex[k], [task_feature_lengths[k]]) for k in FEATURES}
    return ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE)

  def get_model_feature_lengths(self, task_feature_lengths):
    return dict(task_feature_lengths)


def feature_lengths(seq_length: int):
  return {k: seq_length for k in FEATURES}


def pack_np(flat: np.ndarray, splits: np.ndarray, *, seq_length: int, eot_id: int,
            cross_documents: bool):
  """Documents (flat token ids + row splits) -> ([R, L] ids, segment ids, position ids)."""
  docs = [np.concatenate([[eot_id], flat[splits[d]:splits[d + 1]]]).astype(np.int32)
          for d in range(len(splits) - 1) if splits[d + 1] > splits[d]]
  if not docs:
    empty = np.zeros((0, seq_length), np.int32)
    return empty, empty, empty
  ids = np.concatenate(docs)
  doc = np.concatenate([np.full(len(x), i, np.int32) for i, x in enumerate(docs)])
  rows = -(-len(ids) // seq_length)
  pad = rows * seq_length - len(ids)
  ids = np.pad(ids, (0, pad)).reshape(rows, seq_length)
  doc = np.pad(doc, (0, pad), constant_values=-1).reshape(rows, seq_length)
  # Segments restart at 1 in every row: a document cut by a row end is two segments.
  first = np.concatenate([np.ones((rows, 1), bool), doc[:, 1:] != doc[:, :-1]], axis=1)
  segment = np.cumsum(first, axis=1).astype(np.int32) * (doc >= 0)
  if cross_documents:
    position = np.broadcast_to(np.arange(seq_length, dtype=np.int32), ids.shape).copy()
  else:   # from each segment's start inside the row
    start = np.maximum.accumulate(np.where(first, np.arange(seq_length), 0), axis=1)
    position = (np.arange(seq_length)[None] - start).astype(np.int32)
  return ids, segment, position * (segment > 0)


def eot_id(vocabulary) -> int:
  """The token that starts every document: the vocabulary's eos (<|endoftext|>, </s>), or
  [SEP] for a WordPiece vocabulary, which has no eos."""
  if vocabulary.eos_id is not None:
    return int(vocabulary.eos_id)
  return vocab_lib.special_ids(vocabulary, ("sep",))[0]


def pack_documents(dataset: tf.data.Dataset, *, vocabulary, seq_length: int, group_size: int,
                   cross_documents: bool) -> tf.data.Dataset:
  """{'text'} -> packed rows (see the module doc)."""
  np_fn = functools.partial(pack_np, seq_length=seq_length, eot_id=eot_id(vocabulary),
                            cross_documents=cross_documents)

  def tokenize(ex):
    return {"tokens": tf.cast(vocabulary.encode_tf(ex["text"]), tf.int32)}

  def make(ex):
    tokens = ex["tokens"]
    ids, seg, pos = tf.numpy_function(np_fn, [tokens.flat_values, tokens.row_splits],
                                      [tf.int32] * 3, stateful=False)
    shape = [None, seq_length]
    return {"input_ids": tf.ensure_shape(ids, shape), "segment_ids": tf.ensure_shape(seg, shape),
            "position_ids": tf.ensure_shape(pos, shape)}

  ds = dataset.map(tokenize, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.ragged_batch(group_size).map(make).unbatch()


def get_task(data, vocabulary) -> seqio.Task:
  """The causal LM task for these data settings, registered once by name."""
  name = tasks.task_name("gpt_clm", {"data": dataclasses.asdict(data)})

  def make():
    passthrough = seqio.PassThroughVocabulary(size=0)
    steps = sources.text_preprocessors(data.corpus) + [
        functools.partial(pack_documents, vocabulary=vocabulary, seq_length=data.seq_length,
                          group_size=data.group_size, cross_documents=data.cross_documents)]
    features = {k: seqio.Feature(vocabulary if k == "input_ids" else passthrough,
                                 add_eos=False, dtype=tf.int32) for k in FEATURES}
    return dict(source=sources.document_source(data.corpus), preprocessors=steps,
                output_features=features, shuffle_buffer_size=max(1, data.shuffle_buffer))
  return tasks.get_or_register(name, make)


def get_dataset(data, vocabulary, split: str, batch_size: int, seed: int, shard_index: int = 0,
                num_shards: int = 1, num_epochs: Optional[int] = None) -> tf.data.Dataset:
  """Batches of packed causal LM rows for this host's shard."""
  return bert_pretrain.batches(lambda: get_task(data, vocabulary), CausalLmFeatureConverter(),
                               feature_lengths(data.seq_length), data, split, batch_size, seed,
                               shard_index, num_shards, num_epochs)
