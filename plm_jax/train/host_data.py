"""This host's part of the training stream, in logical data shards.

The training stream is split into `config.train.data_shards` shards (0: one per
host). Host h of n reads shards h*k .. h*k+k-1 (k = shards / n), each giving
batch_size / shards rows per step, and concatenates them in shard order. The
global batch of a step is therefore [shard 0; shard 1; ...] whatever the number
of hosts: a run on one host with data_shards=2 trains on exactly the batches of
the same run on two hosts (each reading one shard), and a run can be resumed on
another number of hosts that divides data_shards.

The global batch's rows go to the devices in the order
`jax.make_array_from_process_local_data` places them: process p's rows are the
p-th block of the batch when the mesh lists the devices process by process
(plm_jax.sharding.make_mesh does).
"""
from __future__ import annotations

from typing import Optional

import jax

from plm_jax.configlib import fail


def shards_per_host(data_shards: int, batch_size: int, process_count: int) -> int:
  """k, the shards each host reads; one-line ConfigError when they do not divide evenly."""
  shards = data_shards or process_count
  if shards % process_count:
    fail("config.train.data_shards", data_shards,
         f"must be a multiple of the number of hosts {process_count}")
  if batch_size % shards:
    fail("config.train.data_shards", data_shards,
         f"must divide config.train.batch_size={batch_size}")
  return shards // process_count


def train_dataset(objective, batch_size: int, seed: int, data_shards: int = 0,
                  num_epochs: Optional[int] = None):
  """This host's batches of the 'train' split: batch_size / process_count rows each."""
  count, index = jax.process_count(), jax.process_index()
  k = shards_per_host(data_shards, batch_size, count)
  per_host = batch_size // count
  if k == 1:
    return objective.get_dataset("train", per_host, seed, index, count, num_epochs=num_epochs)
  if objective.variable_length_features:
    fail("config.train.data_shards", data_shards,
         f"objective {objective.name!r} batches by length (its batches cannot be joined); "
         f"use 0 (one shard per host)")
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  shards = k * count
  parts = tuple(objective.get_dataset("train", per_host // k, seed, index * k + j, shards,
                                      num_epochs=num_epochs) for j in range(k))

  def concat(*batches):
    return {key: tf.concat([b[key] for b in batches], axis=0) for key in batches[0]}

  return tf.data.Dataset.zip(parts).map(concat)
