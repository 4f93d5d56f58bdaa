"""ELMo biLM batches: documents -> tokens -> fixed windows of words, as ids and characters.

  {'text'} --tf_tokenize--> <S> w1 ... wn </S> per line (ASCII punctuation split off)
  --> one stream of tokens across documents --> windows of seq_length tokens
  --> input_ids int32 [T] (the word vocabulary; <UNK> for the rest) and
      char_ids int32 [T, C] (plm_jax.data.elmo_chars, +1 shifted: no padding token)

As bilm-tf's training data, the stream runs on across sentences and documents.
Train: documents in a seeded permutation per epoch, windows shuffled in a
buffer, repeated; validation: the held-out documents in their fixed order, once
(a final partial batch is kept; the trainer pads it). Deterministic given the
seed, so the trainer resumes by skipping consumed batches.
"""
from __future__ import annotations

from typing import Optional

import seqio
import tensorflow as tf

from plm_jax.data import elmo_chars, sources


def get_dataset(data, vocab: elmo_chars.WordVocab, max_chars: int, split: str,
                batch_size: int, seed: int, shard_index: int = 0, num_shards: int = 1,
                num_epochs: Optional[int] = None) -> tf.data.Dataset:
  """Batches {'input_ids' [B, T], 'char_ids' [B, T, C]} for this host's shard."""
  train = split == "train"
  source = sources.document_source(data.corpus)
  ds = source.get_dataset(split=split, shuffle=train, seed=seed,
                          shard_info=seqio.ShardInfo(shard_index, num_shards),
                          num_epochs=None if train else (num_epochs or 1))
  for step in sources.text_preprocessors(data.corpus):
    ds = step(ds)
  ds = ds.map(lambda ex: elmo_chars.tf_tokenize(ex["text"]))
  ds = ds.unbatch().batch(data.seq_length, drop_remainder=True)
  table = vocab.tf_table()

  def features(words):
    return {"input_ids": tf.ensure_shape(table.lookup(words), [data.seq_length]),
            "char_ids": tf.ensure_shape(elmo_chars.tf_word_char_ids(words, max_chars),
                                        [data.seq_length, max_chars])}
  ds = ds.map(features)
  if train and data.shuffle_buffer > 0:
    ds = ds.shuffle(data.shuffle_buffer, seed=seed)
  return ds.batch(batch_size, drop_remainder=train)
