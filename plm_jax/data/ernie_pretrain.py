"""ERNIE 1.0 MLM + NSP with knowledge masking: the seqio task and the batch entry point.

  get_dataset(data, mlm, ernie, vocabulary, split, batch_size, seed, ...)

Where the units come from (`data.corpus.type`):
  builtin / text / tfds  raw documents: split_sentences -> segment_sentences (jieba words,
                         phrase and entity lexicons, plm_jax.data.ernie_units) ->
                         create_unit_instances (BERT's sentence pairs, unit labels kept)
  ernie                  the released ERNIE format (plm_jax.data.ernie_format): ready
                         instances with their own segment labels
Either way the task's examples hold input_ids, token_type_ids, attention_mask,
next_sentence_label, phrase_seg and entity_seg; after the shuffle,
ernie_masking.knowledge_mask masks each at its step's level (`ernie.masking=bert`: the
basic level throughout, i.e. BERT's token masking on the same examples), and the
batches are BERT's (feature_converters.BertPretrainFeatureConverter).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Optional

import numpy as np
import seqio
import tensorflow as tf

from plm_jax.data import bert_pretrain
from plm_jax.data import ernie_format
from plm_jax.data import ernie_masking
from plm_jax.data import ernie_units
from plm_jax.data import feature_converters
from plm_jax.data import preprocessors
from plm_jax.data import sources
from plm_jax.data import tasks
from plm_jax.data import vocab as vocab_lib

_CODES = 9      # (phrase label + 1) * 3 + (entity label + 1), carried inside the token ids


def output_features(vocabulary: seqio.Vocabulary):
  out = bert_pretrain.output_features(vocabulary)
  for k in out.copy():
    if k.startswith("masked_lm"):
      del out[k]
  passthrough = seqio.PassThroughVocabulary(size=0)
  for k in ernie_masking.SEG_FEATURES.values():
    out[k] = seqio.Feature(vocabulary=passthrough, add_eos=False, required=True, dtype=tf.int32)
  return out


def _instances_np(flat, doc_splits, sent_splits, seed, **kw):
  # pylint: disable-next=protected-access
  ids, types, labels = preprocessors._create_instances_np(flat, doc_splits, sent_splits, seed, **kw)
  return ids, types, labels


def create_unit_instances(dataset: tf.data.Dataset, *, vocabulary, seq_length: int,
                          group_size: int, short_seq_prob: float, nsp: bool) -> tf.data.Dataset:
  """preprocessors.create_instances (BERT's pairs) with each token's two unit labels
  carried along: a token travels as id * 9 + code, so truncation and pairing move
  the labels with it. Specials and padding get -1 (no unit)."""
  pad_id, cls_id, sep_id = vocab_lib.special_ids(vocabulary, ("pad", "cls", "sep"))
  np_fn = functools.partial(_instances_np, seq_length=seq_length, short_seq_prob=short_seq_prob,
                            nsp=nsp, cls_id=cls_id * _CODES, sep_id=sep_id * _CODES,
                            pad_id=pad_id * _CODES)

  @seqio.map_over_dataset(num_seeds=1)
  def make(ex, seed):
    code = (ex["phrase_seg"].flat_values + 1) * 3 + ex["entity_seg"].flat_values + 1
    flat = ex["tokens"].flat_values * _CODES + code
    tokens = ex["tokens"]
    enc, types, labels = tf.numpy_function(
        np_fn, [flat, tokens.row_splits, tokens.values.row_splits, seed],
        [tf.int32, tf.int32, tf.int32], stateful=False)
    enc = tf.ensure_shape(enc, [None, seq_length])
    ids, code = enc // _CODES, enc % _CODES
    return {"input_ids": ids, "token_type_ids": tf.ensure_shape(types, [None, seq_length]),
            "attention_mask": tf.cast(ids != pad_id, tf.int32),
            "next_sentence_label": tf.ensure_shape(labels, [None]),
            "phrase_seg": code // 3 - 1, "entity_seg": code % 3 - 1}

  return make(dataset.ragged_batch(group_size)).unbatch()


@functools.lru_cache(maxsize=4)
def segmenter_for(data, ernie) -> ernie_units.Segmenter:
  """The run's segmenter: lexicon files, plus phrases learnt from the first
  ernie.learn_phrases_docs training documents when that is > 0."""
  learnt = []
  if ernie.learn_phrases_docs > 0:
    docs = sources.load_documents(data.corpus, "train")[:ernie.learn_phrases_docs]
    learnt = ernie_units.learn_phrases(docs, min_count=ernie.phrase_min_count,
                                       max_phrases=ernie.max_phrases, min_pmi=ernie.phrase_min_pmi)
    print(f"ernie: learnt {len(learnt):,} phrases (PMI >= {ernie.phrase_min_pmi}, count >= "
          f"{ernie.phrase_min_count}) from {len(docs):,} documents", flush=True)
  return ernie_units.make_segmenter(ernie.phrase_lexicon, ernie.entity_lexicon, learnt)


def get_task(data, mlm, ernie, vocabulary) -> seqio.Task:
  settings = {"data": dataclasses.asdict(data), "mlm": dataclasses.asdict(mlm),
              "units": {k: v for k, v in dataclasses.asdict(ernie).items()
                        if k not in ("masking", "phrase_from_step", "entity_from_step",
                                     "eval_level")}}
  name = tasks.task_name("ernie_mlm_nsp", settings)

  def make():
    if data.corpus.type == "ernie":
      return dict(source=ernie_format.source(data.corpus, data.seq_length), preprocessors=[],
                  output_features=output_features(vocabulary),
                  shuffle_buffer_size=max(1, data.shuffle_buffer))
    steps = sources.text_preprocessors(data.corpus) + [
        preprocessors.split_sentences,
        functools.partial(ernie_units.segment_sentences, segmenter=segmenter_for(data, ernie),
                          vocabulary=vocabulary),
        functools.partial(create_unit_instances, vocabulary=vocabulary,
                          seq_length=data.seq_length, group_size=data.group_size,
                          short_seq_prob=mlm.short_seq_prob, nsp=mlm.nsp),
    ]
    return dict(source=sources.document_source(data.corpus), preprocessors=steps,
                output_features=output_features(vocabulary),
                shuffle_buffer_size=max(1, data.shuffle_buffer))
  return tasks.get_or_register(name, make)


def level_starts(ernie):
  """Start step of each of ernie_masking.LEVELS for this config."""
  if ernie.masking == "bert":
    big = np.iinfo(np.int64).max
    return (0, big, big)
  return (0, ernie.phrase_from_step, ernie.entity_from_step)


def get_dataset(data, mlm, ernie, vocabulary, split: str, batch_size: int, seed: int,
                shard_index: int = 0, num_shards: int = 1,
                num_epochs: Optional[int] = None) -> tf.data.Dataset:
  """Batches of BERT pretraining features, knowledge-masked, for this host's shard."""
  converter = feature_converters.BertPretrainFeatureConverter()
  train = split == "train"

  def mask_then_convert(ds, lengths):
    ds = ernie_masking.knowledge_mask(
        ds, vocabulary=vocabulary, max_predictions=mlm.max_predictions, mask_rate=mlm.mask_rate,
        mask_token_prob=mlm.mask_token_prob, random_token_prob=mlm.random_token_prob,
        level_starts=level_starts(ernie), examples_per_step=batch_size,
        seed=seed if train else bert_pretrain.EVAL_SEED,
        fixed_level=None if train else ernie.eval_level)
    return converter(ds, lengths)

  return bert_pretrain.batches(lambda: get_task(data, mlm, ernie, vocabulary), mask_then_convert,
                               {"inputs": data.seq_length, "masked_lm": mlm.max_predictions},
                               data, split, batch_size, seed, shard_index, num_shards, num_epochs)
