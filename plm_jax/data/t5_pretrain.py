"""T5 span corruption (Raffel et al. 2020, section 3.3 / Table 4 "span corruption") as seqio
preprocessors, and the task and batches of the T5 objective.

  {'text'} --rekey--> {'targets'} --tokenize--> --select_random_chunk (<= 65536 tokens)-->
  --reduce_concat_tokens (128 documents)--> --split_tokens (raw_length tokens)-->
  --denoise: random_spans_noise_mask, noise spans -> unique sentinels (inputs), non-noise
  spans -> unique sentinels (targets)--> --append_eos_after_trim--> EncDecFeatureConverter

The same algorithm and the same TensorFlow stateless random ops, in the same order, as the
t5 library's `span_corruption` (t5/data/preprocessors.py: random_spans_helper,
random_spans_noise_mask, noise_span_to_unique_sentinel, nonnoise_span_to_unique_sentinel,
select_random_chunk, reduce_concat_tokens, split_tokens), written anew here (the t5
package needs gin and mesh-tensorflow). Sentinels count down from the top of the
vocabulary: the first span of an example gets vocab_size - 1 (<extra_id_0> of a
SentencePiece vocabulary with extra ids), the next vocab_size - 2, ...

`random_spans_helper(512, 0.15, 3.0)` = (568, 114): 568 raw tokens give 512 inputs and
114 targets, EOS included, so the examples fill the configured lengths exactly.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Optional, Tuple

import numpy as np
import seqio
import tensorflow as tf

from plm_jax.data import sources, tasks


def random_spans_helper(inputs_length: int, noise_density: float,
                        mean_noise_span_length: float) -> Tuple[int, int]:
  """(raw tokens per example, targets length) such that span corruption of that many
  tokens gives exactly `inputs_length` inputs (sentinels and EOS included)."""
  def lengths(tokens_length):
    noise = int(round(tokens_length * noise_density))
    spans = int(round(noise / mean_noise_span_length))
    return tokens_length - noise + spans + 1, noise + spans + 1   # (inputs, targets)

  tokens_length = inputs_length - 1
  while lengths(tokens_length + 1)[0] <= inputs_length:
    tokens_length += 1
  _, targets_length = lengths(tokens_length)
  if noise_density == 0.5 and targets_length > inputs_length:   # as t5: equal lengths
    tokens_length -= 1
    targets_length -= 1
  return tokens_length, targets_length


def _random_segmentation(num_items: tf.Tensor, num_segments: tf.Tensor,
                         seed: tf.Tensor) -> tf.Tensor:
  """num_items split at random into num_segments non-empty parts -> lengths [num_segments]."""
  first_in_segment = tf.pad(
      seqio.stateless_shuffle(tf.cast(tf.range(num_items - 1) < num_segments - 1, tf.int32),
                              seed), [[1, 0]])
  segment_id = tf.cumsum(first_in_segment)
  return tf.math.segment_sum(tf.ones_like(segment_id), segment_id)


def random_spans_noise_mask(length: tf.Tensor, noise_density: float, seeds,
                            mean_noise_span_length: float = 3.0) -> tf.Tensor:
  """bool [length]: round(length * noise_density) noise tokens in
  round(noise / mean_noise_span_length) spans; spans alternate non-noise / noise, starting
  with non-noise, every such mask equally likely. seeds: two int32 [2] stateless seeds."""
  if noise_density == 0.0:
    return tf.zeros([length], tf.bool)
  orig_length = length
  length = tf.maximum(length, 2)                              # avoid degenerate cases
  num_noise = tf.cast(tf.round(tf.cast(length, tf.float32) * noise_density), tf.int32)
  num_noise = tf.minimum(tf.maximum(num_noise, 1), length - 1)
  num_spans = tf.cast(tf.round(tf.cast(num_noise, tf.float32) / mean_noise_span_length),
                      tf.int32)
  num_spans = tf.maximum(num_spans, 1)
  noise_lengths = _random_segmentation(num_noise, num_spans, seeds[0])
  nonnoise_lengths = _random_segmentation(length - num_noise, num_spans, seeds[1])
  interleaved = tf.reshape(tf.stack([nonnoise_lengths, noise_lengths], axis=1),
                           [num_spans * 2])
  span_starts = tf.cumsum(interleaved)[:-1]
  start_indicator = tf.math.unsorted_segment_sum(tf.ones_like(span_starts), span_starts,
                                                 length)
  is_noise = tf.equal(tf.cumsum(start_indicator) % 2, 1)
  return is_noise[:orig_length]


def noise_span_to_unique_sentinel(tokens: tf.Tensor, noise_mask: tf.Tensor,
                                  vocab_size: int) -> tf.Tensor:
  """Each run of noise tokens -> one sentinel, vocab_size - 1 for the first run, then
  counting down; other tokens kept."""
  prev_is_noise = tf.pad(noise_mask[:-1], [[1, 0]])
  first = tf.logical_and(noise_mask, tf.logical_not(prev_is_noise))
  later = tf.logical_and(noise_mask, prev_is_noise)
  sentinel = vocab_size - tf.cumsum(tf.cast(first, tokens.dtype))
  tokens = tf.where(first, sentinel, tokens)
  return tf.boolean_mask(tokens, tf.logical_not(later))


def nonnoise_span_to_unique_sentinel(tokens, noise_mask, vocab_size: int) -> tf.Tensor:
  return noise_span_to_unique_sentinel(tokens, tf.logical_not(noise_mask), vocab_size)


def select_random_chunk(dataset: tf.data.Dataset, max_length: int = 65536) -> tf.data.Dataset:
  """Documents longer than max_length tokens -> one of their max_length chunks at random."""
  @seqio.map_over_dataset(num_seeds=1)
  def chunk(ex, seed):
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed))
    tokens = ex["targets"]
    n = tf.shape(tokens)[0]
    num_chunks = tf.cast(tf.math.ceil(tf.cast(n, tf.float32) / max_length), tf.int32)
    start = max_length * tf.random.stateless_uniform([], maxval=num_chunks, dtype=tf.int32,
                                                     seed=seeds[1])
    return {"targets": tokens[start:tf.minimum(start + max_length, n)]}
  dataset = dataset.filter(lambda ex: tf.size(ex["targets"]) > 0)
  return chunk(dataset)


def reduce_concat_tokens(dataset: tf.data.Dataset, batch_size: int = 128) -> tf.data.Dataset:
  """Concatenates batch_size documents (dropping zeros, i.e. padding) into one sequence."""
  dataset = dataset.map(lambda ex: {"targets": ex["targets"]})
  dataset = dataset.padded_batch(batch_size, padded_shapes={"targets": [-1]})
  def concat(ex):
    tokens = tf.reshape(ex["targets"], [-1])
    return {"targets": tf.boolean_mask(tokens, tf.cast(tokens, tf.bool))}
  return dataset.map(concat, num_parallel_calls=tf.data.AUTOTUNE)


def split_tokens(dataset: tf.data.Dataset, max_tokens_per_segment: int) -> tf.data.Dataset:
  """Each sequence -> consecutive pieces of max_tokens_per_segment (the last may be shorter).

  A seeded map whose seed goes unused, as in t5 (whose split_tokens may draw random
  lengths): it keeps the seeds of the steps after it equal to the t5 library's."""
  @seqio.map_over_dataset(num_seeds=1)
  def split(ex, seed):
    del seed
    tokens = ex["targets"]
    n = tf.shape(tokens)[0]
    num = tf.cast(tf.math.ceil(tf.cast(n, tf.float32) / max_tokens_per_segment), tf.int32)
    padding = num * max_tokens_per_segment - n
    pieces = tf.reshape(tf.pad(tokens, [[0, padding]]), [-1, max_tokens_per_segment])
    lengths = tf.concat([tf.repeat(max_tokens_per_segment, num - 1),
                         [max_tokens_per_segment - padding]], axis=0)
    return tf.data.Dataset.from_tensor_slices((pieces, lengths))
  dataset = dataset.filter(lambda ex: tf.size(ex["targets"]) > 0)
  dataset = split(dataset).flat_map(lambda z: z)
  return dataset.map(lambda piece, n: {"targets": piece[:n]},
                     num_parallel_calls=tf.data.AUTOTUNE)


def denoise(dataset: tf.data.Dataset, vocab_size: int, noise_density: float,
            mean_noise_span_length: float) -> tf.data.Dataset:
  """{'targets': tokens} -> {'inputs': tokens with noise spans as sentinels,
  'targets': the noise spans, each after its sentinel}."""
  @seqio.map_over_dataset(num_seeds=1)
  def fn(ex, seed):
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 6))
    tokens = ex["targets"]
    mask = random_spans_noise_mask(tf.size(tokens), noise_density, seeds[:2],
                                   mean_noise_span_length)
    return {"inputs": noise_span_to_unique_sentinel(tokens, mask, vocab_size),
            "targets": nonnoise_span_to_unique_sentinel(tokens, mask, vocab_size)}
  return fn(dataset)


def span_corruption(dataset: tf.data.Dataset, *, vocab_size: int, inputs_length: int,
                    targets_length: int, noise_density: float = 0.15,
                    mean_noise_span_length: float = 3.0,
                    merge_examples: bool = True) -> tf.data.Dataset:
  """Tokenized {'targets'} documents -> span-corrupted {'inputs', 'targets'} (no EOS yet)."""
  raw, needed = random_spans_helper(inputs_length, noise_density, mean_noise_span_length)
  if targets_length < needed:
    raise ValueError(f"config.data.targets_length={targets_length}: span corruption of "
                     f"{inputs_length} inputs needs {needed} targets")
  dataset = select_random_chunk(dataset)
  if merge_examples:
    dataset = reduce_concat_tokens(dataset)
  dataset = split_tokens(dataset, raw)
  return denoise(dataset, vocab_size, noise_density, mean_noise_span_length)


def output_features(vocabulary) -> dict:
  return {"inputs": seqio.Feature(vocabulary, add_eos=True, required=False),
          "targets": seqio.Feature(vocabulary, add_eos=True)}


def get_task(data, vocabulary) -> seqio.Task:
  """The span-corruption task for these `data` settings, registered once by name."""
  name = tasks.task_name("t5_span_corruption", {"data": dataclasses.asdict(data),
                                                "vocab_size": vocabulary.vocab_size})
  lengths = {"inputs": data.inputs_length, "targets": data.targets_length}

  def make():
    steps = sources.text_preprocessors(data.corpus) + [
        functools.partial(seqio.preprocessors.rekey, key_map={"targets": "text"}),
        seqio.preprocessors.tokenize,
        functools.partial(span_corruption, vocab_size=int(vocabulary.vocab_size),
                          inputs_length=data.inputs_length, targets_length=data.targets_length,
                          noise_density=data.noise_density,
                          mean_noise_span_length=data.mean_noise_span_length),
        functools.partial(seqio.preprocessors.append_eos_after_trim, sequence_length=lengths),
    ]
    return dict(source=sources.document_source(data.corpus), preprocessors=steps,
                output_features=output_features(vocabulary),
                shuffle_buffer_size=max(1, data.shuffle_buffer))
  return tasks.get_or_register(name, make)


def get_dataset(data, vocabulary, split: str, batch_size: int, seed: int, shard_index: int = 0,
                num_shards: int = 1, num_epochs: Optional[int] = None) -> tf.data.Dataset:
  """Batches of seqio.EncDecFeatureConverter features (packed when data.pack)."""
  from plm_jax.data import bert_pretrain  # pylint: disable=import-outside-toplevel
  return bert_pretrain.batches(
      lambda: get_task(data, vocabulary), seqio.EncDecFeatureConverter(pack=data.pack),
      {"inputs": data.inputs_length, "targets": data.targets_length}, data, split, batch_size,
      seed, shard_index, num_shards, num_epochs)


def expected_noise(length: int, noise_density: float, mean_noise_span_length: float):
  """(noise tokens, noise spans) that random_spans_noise_mask gives a `length`-token
  example (float32 arithmetic as the TensorFlow ops: 190 * 0.15 rounds to 29, not 28)."""
  f32 = np.float32
  noise = int(np.round(f32(max(length, 2)) * f32(noise_density)))
  noise = min(max(noise, 1), max(length, 2) - 1)
  return noise, max(int(np.round(f32(noise) / f32(mean_noise_span_length))), 1)
