"""BERT MLM + NSP: the seqio task and the batch entry point.

  get_dataset(data, mlm, vocabulary, split, batch_size, seed, shard_index, num_shards, num_epochs)

`data` and `mlm` are the objective's parsed sections (plm_jax.objectives.
bert_pretrain), `vocabulary` the run's vocabulary (built once by the
objective). Batches hold
  input_ids int32[L], token_type_ids int32[L], attention_mask int32[L],
  masked_lm_positions int32[P], masked_lm_ids int32[P], masked_lm_weights float32[P],
  next_sentence_label int32[]   (0: B follows A, 1: B is random)
with L = data.seq_length and P = mlm.max_predictions; training batches are
full (drop_remainder), validation is one finite pass whose last batch may be
partial (the trainer pads it).

The stream is a pure function of (config, seed, shard): documents are shuffled
with a seeded buffer, every random choice comes from seqio's per-element seeds,
and tf.data runs with deterministic=True. Validation always uses EVAL_SEED and
no shuffling. The trainer resumes with ds.skip(n_batches).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import seqio
import tensorflow as tf
import tensorflow_datasets as tfds

from plm_jax.data import feature_converters
from plm_jax.data import preprocessors
from plm_jax.data import sources
from plm_jax.data import tasks

EVAL_SEED = 1234


def output_features(vocabulary: seqio.Vocabulary,
                    sentence_label: Optional[str] = "next_sentence_label"):
  """The task's features; sentence_label: the sentence-pair label's name (None: MLM only)."""
  passthrough = seqio.PassThroughVocabulary(size=0)
  def feat(vocab=passthrough, dtype=tf.int32, rank=1):
    return seqio.Feature(vocabulary=vocab, add_eos=False, required=True, dtype=dtype, rank=rank)
  out = {
      "input_ids": feat(vocabulary),
      "token_type_ids": feat(),
      "attention_mask": feat(),
      "masked_lm_positions": feat(),
      "masked_lm_ids": feat(vocabulary),
      "masked_lm_weights": feat(dtype=tf.float32),
  }
  if sentence_label:
    out[sentence_label] = feat(rank=0)
  return out


def mlm_steps(vocabulary, mlm):
  """The masking step of a masked-LM task, from an `mlm` section."""
  return functools.partial(
      preprocessors.mask_tokens, vocabulary=vocabulary, max_predictions=mlm.max_predictions,
      mask_rate=mlm.mask_rate, mask_token_prob=mlm.mask_token_prob,
      random_token_prob=mlm.random_token_prob, whole_word_masking=mlm.whole_word_masking)


def get_task(data, mlm, vocabulary) -> seqio.Task:
  """The MLM + NSP task for these settings, registered once by name."""
  settings = {"data": dataclasses.asdict(data), "mlm": dataclasses.asdict(mlm)}
  name = tasks.task_name("bert_mlm_nsp", settings)

  def make():
    steps = sources.text_preprocessors(data.corpus) + [
        preprocessors.split_sentences,
        functools.partial(preprocessors.tokenize_sentences, vocabulary=vocabulary),
        functools.partial(preprocessors.create_instances, vocabulary=vocabulary,
                          seq_length=data.seq_length, group_size=data.group_size,
                          short_seq_prob=mlm.short_seq_prob, nsp=mlm.nsp),
        mlm_steps(vocabulary, mlm),
    ]
    return dict(source=sources.document_source(data.corpus), preprocessors=steps,
                output_features=output_features(vocabulary),
                shuffle_buffer_size=max(1, data.shuffle_buffer))
  return tasks.get_or_register(name, make)


def get_dataset(data, mlm, vocabulary, split: str, batch_size: int, seed: int,
                shard_index: int = 0, num_shards: int = 1,
                num_epochs: Optional[int] = None) -> tf.data.Dataset:
  """Batches of fixed-shape BERT pretraining features for this host's shard."""
  return batches(lambda: get_task(data, mlm, vocabulary),
                 feature_converters.BertPretrainFeatureConverter(),
                 {"inputs": data.seq_length, "masked_lm": mlm.max_predictions}, data, split,
                 batch_size, seed, shard_index, num_shards, num_epochs)


def batches(make_task, converter, feature_lengths, data, split: str, batch_size: int, seed: int,
            shard_index: int = 0, num_shards: int = 1,
            num_epochs: Optional[int] = None) -> tf.data.Dataset:
  """A task's examples through `converter` into batches (any masked-LM objective).

  make_task() -> the seqio task; data: a section with corpus and shuffle_buffer.
  """
  if split not in sources.SPLITS:
    raise ValueError(f"split must be one of {sources.SPLITS}, got {split!r}")
  if not 0 <= shard_index < num_shards:
    raise ValueError(f"shard_index={shard_index} not in [0, num_shards={num_shards})")
  task = make_task()
  train = split == "train"
  shuffle = train and data.shuffle_buffer > 0
  try:
    ds = task.get_dataset(
        sequence_length=None, split=split, use_cached=False, shuffle=shuffle,
        shuffle_buffer_size=data.shuffle_buffer if shuffle else None,
        seed=int(seed) if train else EVAL_SEED,
        shard_info=seqio.ShardInfo(index=shard_index, num_shards=num_shards),
        num_epochs=num_epochs, trim_output_features=False, try_in_mem_cache=False)
  except tfds.core.DatasetNotFoundError:   # its message lists every TFDS dataset there is
    raise sources.tfds_not_found(data.corpus) from None
  ds = converter(ds, feature_lengths)
  ds = ds.batch(batch_size, drop_remainder=train)
  options = tf.data.Options()
  options.deterministic = True
  ds = ds.with_options(options)
  return ds.prefetch(tf.data.AUTOTUNE)
