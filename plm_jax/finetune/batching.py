"""Length-bucketed batches: few compiled shapes, little padding.

Fine-tuning examples are short (SST-2 averages about 13 word pieces) and vary
in length, while a jitted step wants static shapes. Every example goes to the
smallest bucket length that holds it (`buckets`, e.g. (32, 64, 128)); a batch
holds examples of one bucket only and is padded to that bucket's length, so
the step compiles once per bucket and pads little.

Training (`train_batches`): an endless stream; epoch e visits the examples in
a permutation seeded by (seed, e), each example joining its bucket's queue;
a queue that reaches the batch size is emitted. Examples left in a queue at
the end of an epoch stay there for the next one, so every batch is full and
every example is seen once per epoch (up to that carry-over). The stream is a
pure function of (examples, seed), so a resumed run skips the batches it has
consumed and continues exactly.

Evaluation (`eval_batches`): one pass, bucket by bucket in input order, the
last batch of a bucket partial.

Multi-host: batches are formed at the global batch size and each host keeps
its rows (`shard_rows`), so every host sees the same shapes at every step.

Examples are dicts of numpy values: the `sequence` features are 1-D arrays of
one length per example (padded with 0, at the end or, pad_left, at the start as
XLNet's inputs are), the rest scalars.
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

Example = Mapping[str, np.ndarray]


def check_buckets(buckets: Sequence[int], max_length: int, key: str) -> Tuple[int, ...]:
  out = tuple(int(b) for b in buckets)
  if not out or list(out) != sorted(set(out)) or out[0] <= 0:
    raise ValueError(f"{key}={list(buckets)}: bucket lengths must be increasing and > 0")
  if out[-1] != max_length:
    raise ValueError(f"{key}={list(buckets)}: the last bucket must equal the maximum "
                     f"sequence length {max_length}")
  return out


def bucket_index(length: int, buckets: Sequence[int]) -> int:
  for i, b in enumerate(buckets):
    if length <= b:
      return i
  raise ValueError(f"length {length} exceeds the largest bucket {buckets[-1]}")


def _stack(examples: List[Example], length: int, sequence: Sequence[str],
           pad_left: bool = False) -> Dict[str, np.ndarray]:
  out = {}
  for k in examples[0]:
    if k in sequence:
      arr = np.zeros((len(examples), length), dtype=np.asarray(examples[0][k]).dtype)
      for i, ex in enumerate(examples):
        v = np.asarray(ex[k])
        if pad_left:
          arr[i, length - len(v):] = v
        else:
          arr[i, :len(v)] = v
      out[k] = arr
    else:
      out[k] = np.asarray([ex[k] for ex in examples])
  return out


def train_batches(examples: Sequence[Example], lengths: Sequence[int], buckets: Sequence[int],
                  batch_size: int, seed: int, sequence: Sequence[str], pad_left: bool = False
                  ) -> Iterator[Dict[str, np.ndarray]]:
  """Endless full batches (see the module doc)."""
  if not examples:
    raise ValueError("no training examples")
  which = [bucket_index(n, buckets) for n in lengths]
  queues: List[List[int]] = [[] for _ in buckets]
  epoch = 0
  while True:
    order = np.random.default_rng([seed, epoch]).permutation(len(examples))
    for i in order:
      q = queues[which[i]]
      q.append(int(i))
      if len(q) == batch_size:
        yield _stack([examples[j] for j in q], buckets[which[i]], sequence, pad_left)
        q.clear()
    epoch += 1


def eval_batches(examples: Sequence[Example], lengths: Sequence[int], buckets: Sequence[int],
                 batch_size: int, sequence: Sequence[str], pad_left: bool = False
                 ) -> Iterator[Dict[str, np.ndarray]]:
  """One pass; each bucket's examples in input order, its last batch partial."""
  which = np.asarray([bucket_index(n, buckets) for n in lengths], dtype=np.int64)
  for b, length in enumerate(buckets):
    members = np.flatnonzero(which == b)
    for start in range(0, len(members), batch_size):
      yield _stack([examples[j] for j in members[start:start + batch_size]], length, sequence,
                   pad_left)


def shard_rows(batch: Dict[str, np.ndarray], shard_index: int, num_shards: int,
               per_host: int) -> Dict[str, np.ndarray]:
  """This host's rows of a global batch (fewer, or none, in a partial eval batch)."""
  lo = shard_index * per_host
  return {k: v[lo:lo + per_host] for k, v in batch.items()}


def padding_fraction(lengths: Sequence[int], buckets: Sequence[int], batch_size: int,
                     seed: int = 0, steps: Optional[int] = None) -> float:
  """Fraction of padding tokens in the training stream's first `steps` batches (default: about
  one epoch)."""
  lengths = list(int(n) for n in lengths)
  ex = [{"n": np.asarray(n)} for n in lengths]
  steps = steps or max(len(lengths) // batch_size, 1)
  real = total = 0
  stream = train_batches(ex, lengths, buckets, batch_size, seed, sequence=())
  for _ in range(steps):
    b = next(stream)
    n = b["n"]
    real += int(n.sum())
    total += int(len(n) * buckets[bucket_index(int(n.max()), buckets)])
  return 1.0 - real / max(total, 1)
