"""RoBERTa MLM: the seqio task and the batch entry point.

  {'text'} --split_sentences--> --tokenize_sentences--> --pack_full_sentences--> rows
  [CLS] s1 s2 ... [SEP] (FULL-SENTENCES: contiguous sentences up to seq_length, crossing
  documents with a [SEP] between them; DOC-SENTENCES: never crossing a document end)
  --mask_tokens--> dynamic masking (a new mask every time a row is produced: no
  CacheDatasetPlaceholder, so seqio masks after `repeat`, every epoch anew). No NSP.

`data` and `mlm` are the objective's parsed sections (plm_jax.objectives.
roberta_pretrain). Batches hold input_ids, token_type_ids (0), attention_mask
int32[L] and masked_lm_positions, masked_lm_ids int32[P], masked_lm_weights
float32[P]. Streams and resumption as plm_jax.data.bert_pretrain.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import seqio
import tensorflow as tf

from plm_jax.data import bert_pretrain, feature_converters, preprocessors, sources, tasks

def get_task(data, mlm, vocabulary) -> seqio.Task:
  """The RoBERTa MLM task for these settings, registered once by name."""
  settings = {"data": dataclasses.asdict(data), "mlm": dataclasses.asdict(mlm)}
  name = tasks.task_name("roberta_mlm", settings)

  def make():
    steps = sources.text_preprocessors(data.corpus) + [
        preprocessors.split_sentences,
        functools.partial(preprocessors.tokenize_sentences, vocabulary=vocabulary),
        functools.partial(preprocessors.pack_full_sentences, vocabulary=vocabulary,
                          seq_length=data.seq_length, group_size=data.group_size,
                          cross_documents=data.packing == "full_sentences"),
        bert_pretrain.mlm_steps(vocabulary, mlm),
    ]
    return dict(source=sources.document_source(data.corpus), preprocessors=steps,
                output_features=bert_pretrain.output_features(vocabulary, sentence_label=None),
                shuffle_buffer_size=max(1, data.shuffle_buffer))
  return tasks.get_or_register(name, make)


def get_dataset(data, mlm, vocabulary, split: str, batch_size: int, seed: int,
                shard_index: int = 0, num_shards: int = 1,
                num_epochs: Optional[int] = None) -> tf.data.Dataset:
  """Batches of fixed-shape RoBERTa MLM features for this host's shard."""
  return bert_pretrain.batches(
      lambda: get_task(data, mlm, vocabulary), feature_converters.MlmFeatureConverter(),
      {"inputs": data.seq_length, "masked_lm": mlm.max_predictions}, data, split, batch_size,
      seed, shard_index, num_shards, num_epochs)
