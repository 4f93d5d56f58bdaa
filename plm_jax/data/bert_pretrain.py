"""BERT MLM + NSP seqio tasks built from the run config, and the batch entry point.

  get_dataset(config, split, batch_size, seed, shard_index, num_shards, num_epochs)

returns host-local batches (drop_remainder=True) of
  input_ids int32[L], token_type_ids int32[L], attention_mask int32[L],
  masked_lm_positions int32[P], masked_lm_ids int32[P], masked_lm_weights float32[P],
  next_sentence_label int32[]   (0: B follows A, 1: B is random)
with L = config.data.seq_length and P = config.mlm.max_predictions.

Sources (config.data.corpus.type):
  builtin  the synthetic corpus of plm_jax.data.builtin (no third-party text)
  text     local files read by plm_jax.data.corpora (config.data.corpus.paths)
  tfds     seqio.TfdsDataSource(config.data.corpus.tfds_name), text feature
           config.data.corpus.tfds_text_key
Validation is config.data.corpus.eval_paths, or else every eval_every_nth
document held out of the same stream (builtin and text).

The stream is a pure function of (config, seed, shard): documents are shuffled
with a seeded buffer, every random choice comes from seqio's per-element seeds,
and tf.data runs with deterministic=True. Validation always uses EVAL_SEED and
no shuffling. The trainer resumes with ds.skip(n_batches).
"""
from __future__ import annotations

import functools
import hashlib
import json
from typing import Callable, Iterator, Optional, Tuple

import seqio
import tensorflow as tf
import tensorflow_datasets as tfds

from plm_jax.data import builtin
from plm_jax.data import corpora
from plm_jax.data import feature_converters
from plm_jax.data import preprocessors
from plm_jax.data import vocab as vocab_lib

EVAL_SEED = 1234
DOC_SHUFFLE_BUFFER = 1024     # documents; examples are shuffled again with data.shuffle_buffer
SPLITS = ("train", "validation")


# ---- sources ---------------------------------------------------------------------------------

def _held_out(docs: Iterator[str], split: str, every_nth: int) -> Iterator[str]:
  for i, doc in enumerate(docs):
    if (i % every_nth == every_nth - 1) == (split == "validation"):
      yield doc


def _documents_fn(corpus: dict, split: str) -> Callable[[], Iterator[str]]:
  """A re-iterable document stream for one split of a builtin/text corpus."""
  n = int(corpus["eval_every_nth"])
  if corpus["type"] == "builtin":
    if n < 2:
      raise ValueError("config.data.corpus.eval_every_nth must be >= 2")
    return lambda: _held_out(builtin.iter_documents(builtin.NUM_DOCUMENTS, seed=0), split, n)

  def read(paths, key):
    return corpora.iter_documents(
        paths, corpus["reader"], doc_separator=corpus["doc_separator"],
        max_sentences_per_doc=int(corpus["max_sentences_per_doc"]), config_key=key)
  if corpus["eval_paths"]:
    if split == "validation":
      return lambda: read(corpus["eval_paths"], "config.data.corpus.eval_paths")
    return lambda: read(corpus["paths"], corpora.PATHS_KEY)
  if n < 2:
    raise ValueError("config.data.corpus.eval_every_nth must be >= 2 when "
                     "config.data.corpus.eval_paths is empty")
  return lambda: _held_out(read(corpus["paths"], corpora.PATHS_KEY), split, n)


def _check_documents(corpus: dict, split: str) -> None:
  """Fails early (with the config key) instead of inside a tf.data generator."""
  for _ in _documents_fn(corpus, split)():
    return
  raise ValueError(
      f"config.data.corpus.eval_every_nth={corpus['eval_every_nth']}: {corpus['paths']!r} holds "
      f"fewer documents than that, so no '{split}' document is held out; set "
      "config.data.corpus.eval_paths or lower eval_every_nth")


@functools.lru_cache(maxsize=8)
def _load_documents(corpus_json: str, split: str) -> Tuple[str, ...]:
  corpus = json.loads(corpus_json)
  _check_documents(corpus, split)
  return tuple(_documents_fn(corpus, split)())


def _local_dataset_fn(split: str, shuffle_files: bool, seed: Optional[int] = None, *,
                      corpus: dict) -> tf.data.Dataset:
  """Documents of a builtin/text corpus as a dataset of {'text'}.

  The documents are read into memory once per process (a local corpus is at
  most a few GB of text; larger corpora belong in TFDS) and served with
  from_tensor_slices: no Python generator runs inside tf.data, which keeps the
  stream deterministic and avoids GeneratorDataset's shutdown problems.
  """
  docs = _load_documents(json.dumps(corpus, sort_keys=True), split)
  ds = tf.data.Dataset.from_tensor_slices({"text": tf.constant(docs, tf.string)})
  if shuffle_files:
    ds = ds.shuffle(DOC_SHUFFLE_BUFFER, seed=seed)
  return ds


def _make_source(corpus: dict) -> seqio.DataSource:
  if corpus["type"] in ("builtin", "text"):
    return seqio.FunctionDataSource(
        dataset_fn=functools.partial(_local_dataset_fn, corpus=corpus), splits=SPLITS)
  if corpus["type"] == "tfds":
    if not corpus["tfds_name"]:
      raise ValueError("config.data.corpus.tfds_name is empty (needed when corpus.type='tfds')")
    # seqio insists on 'name:version'; an unversioned name (e.g. wikipedia/20230601.en) gets
    # '*.*.*', which TFDS resolves to the builder's default version as tfds.builder(name) would.
    name = corpus["tfds_name"] if ":" in corpus["tfds_name"] else corpus["tfds_name"] + ":*.*.*"
    return seqio.TfdsDataSource(
        tfds_name=name, tfds_data_dir=corpus["tfds_data_dir"] or None,
        splits={"train": corpus["tfds_train_split"], "validation": corpus["tfds_eval_split"]})
  raise ValueError(f"config.data.corpus.type: unknown type {corpus['type']!r}; "
                   "choose builtin, text or tfds")


# ---- task ------------------------------------------------------------------------------------

def _corpus_dict(config) -> dict:
  c = config.data.corpus
  keys = ("type", "paths", "reader", "doc_separator", "eval_paths", "eval_every_nth",
          "max_sentences_per_doc", "tfds_name", "tfds_text_key", "tfds_train_split",
          "tfds_eval_split", "tfds_data_dir")
  return {k: c[k] for k in keys}


def task_name(config) -> str:
  """Name derived from everything that shapes the examples."""
  blob = json.dumps({"corpus": _corpus_dict(config), "vocab": config.data.vocab.to_dict(),
                     "mlm": config.mlm.to_dict(), "seq_length": config.data.seq_length,
                     "group_size": config.data.group_size}, sort_keys=True, default=str)
  return "bert_mlm_nsp_" + hashlib.sha1(blob.encode()).hexdigest()[:12]


def output_features(vocabulary: seqio.Vocabulary):
  passthrough = seqio.PassThroughVocabulary(size=0)
  def feat(vocab=passthrough, dtype=tf.int32, rank=1):
    return seqio.Feature(vocabulary=vocab, add_eos=False, required=True, dtype=dtype, rank=rank)
  return {
      "input_ids": feat(vocabulary),
      "token_type_ids": feat(),
      "attention_mask": feat(),
      "masked_lm_positions": feat(),
      "masked_lm_ids": feat(vocabulary),
      "masked_lm_weights": feat(dtype=tf.float32),
      "next_sentence_label": feat(rank=0),
  }


def register_task(config) -> seqio.Task:
  """Registers (or re-registers) the task for `config` and returns it."""
  corpus = _corpus_dict(config)
  vocabulary = vocab_lib.get_vocabulary(config)
  pad_id, _, cls_id, sep_id, mask_id = vocab_lib.special_ids(vocabulary)
  m = config.mlm
  seq_length = int(config.data.seq_length)
  if seq_length < 8:
    raise ValueError(f"config.data.seq_length={seq_length} is too short for sentence pairs")
  if not 0 < m.max_predictions <= seq_length:
    raise ValueError("config.mlm.max_predictions must be in [1, seq_length]")
  if m.mask_token_prob + m.random_token_prob > 1.0:
    raise ValueError("config.mlm.mask_token_prob + random_token_prob must be <= 1")

  steps = []
  if corpus["type"] == "tfds":
    steps.append(functools.partial(seqio.preprocessors.rekey,
                                   key_map={"text": corpus["tfds_text_key"]}))
  steps += [
      preprocessors.split_sentences,
      functools.partial(preprocessors.tokenize_sentences, vocabulary=vocabulary),
      functools.partial(preprocessors.create_instances, seq_length=seq_length,
                        group_size=int(config.data.group_size),
                        short_seq_prob=float(m.short_seq_prob), nsp=bool(m.nsp),
                        cls_id=cls_id, sep_id=sep_id, pad_id=pad_id),
      functools.partial(preprocessors.mask_tokens, max_predictions=int(m.max_predictions),
                        mask_rate=float(m.mask_rate), mask_token_prob=float(m.mask_token_prob),
                        random_token_prob=float(m.random_token_prob),
                        whole_word_masking=bool(m.whole_word_masking), cls_id=cls_id,
                        sep_id=sep_id, pad_id=pad_id, mask_id=mask_id,
                        is_continuation=vocab_lib.continuation_mask(vocabulary),
                        replacement_ids=vocab_lib.replacement_ids(vocabulary)),
  ]
  name = task_name(config)
  if name in seqio.TaskRegistry.names():
    seqio.TaskRegistry.remove(name)
  return seqio.TaskRegistry.add(
      name, source=_make_source(corpus), preprocessors=steps,
      output_features=output_features(vocabulary),
      shuffle_buffer_size=max(1, int(config.data.shuffle_buffer)))


# ---- batches ---------------------------------------------------------------------------------

def get_dataset(config, split: str, batch_size: int, seed: int, shard_index: int = 0,
                num_shards: int = 1, num_epochs: Optional[int] = None) -> tf.data.Dataset:
  """Batches of fixed-shape BERT pretraining features for this host's shard."""
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  if not 0 <= shard_index < num_shards:
    raise ValueError(f"shard_index={shard_index} not in [0, num_shards={num_shards})")
  task = register_task(config)
  train = split == "train"
  shuffle = train and int(config.data.shuffle_buffer) > 0
  try:
    ds = task.get_dataset(
        sequence_length=None, split=split, use_cached=False, shuffle=shuffle,
        shuffle_buffer_size=int(config.data.shuffle_buffer) if shuffle else None,
        seed=int(seed) if train else EVAL_SEED,
        shard_info=seqio.ShardInfo(index=shard_index, num_shards=num_shards),
        num_epochs=num_epochs, trim_output_features=False, try_in_mem_cache=False)
  except tfds.core.DatasetNotFoundError:   # its message lists every TFDS dataset there is
    c = config.data.corpus
    raise ValueError(
        f"config.data.corpus.tfds_name={c.tfds_name!r}: no such TFDS dataset (searched "
        f"config.data.corpus.tfds_data_dir={c.tfds_data_dir!r} and the registered builders); "
        "check the name, or prepare it in tfds_data_dir") from None
  converter = feature_converters.BertPretrainFeatureConverter()
  ds = converter(ds, {"inputs": int(config.data.seq_length),
                      "masked_lm": int(config.mlm.max_predictions)})
  ds = ds.batch(batch_size, drop_remainder=True)
  options = tf.data.Options()
  options.deterministic = True
  ds = ds.with_options(options)
  return ds.prefetch(tf.data.AUTOTUNE)
