"""T5's relative position bias: log-spaced buckets of key - query distance -> a learned
per-head scalar added to the attention logits (Raffel et al. 2020, section 2.1).

Buckets as mesh-tensorflow's `_relative_position_bucket` (and t5x / Hugging Face):
bidirectional (encoder) uses half the buckets for keys after the query; causal
(decoder) maps every key after the query to bucket 0. Half of the (remaining)
buckets hold exact distances 0 .. max_exact-1, the rest grow logarithmically up
to `max_distance`, beyond which everything shares the last bucket.
"""
import math
from typing import Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from plm_jax.layers import common


def relative_position_bucket(relative_position: jax.Array, bidirectional: bool = True,
                             num_buckets: int = 32, max_distance: int = 128) -> jax.Array:
  """relative_position (key - query) int32 [...] -> bucket int32 [...] in [0, num_buckets)."""
  ret = jnp.zeros_like(relative_position)
  n = -relative_position                                  # query - key
  if bidirectional:
    num_buckets //= 2
    ret = ret + (n < 0).astype(jnp.int32) * num_buckets  # keys after the query
    n = jnp.abs(n)
  else:
    n = jnp.maximum(n, 0)
  max_exact = num_buckets // 2
  is_small = n < max_exact
  # float32 as the references; the maximum keeps log() away from 0 (those entries are small).
  large = max_exact + (
      jnp.log(jnp.maximum(n, 1).astype(jnp.float32) / max_exact)
      / math.log(max_distance / max_exact) * (num_buckets - max_exact)).astype(jnp.int32)
  large = jnp.minimum(large, num_buckets - 1)
  return ret + jnp.where(is_small, n, large)


class RelativePositionBias(nn.Module):
  """Param 'embedding' [num_buckets, num_heads] (float32) -> bias [1, heads, q_len, k_len].

  Computed once per stack and shared by its layers (T5: only the first layer holds it).
  q_offset: the position of the first query (an int or traced int32 scalar; decoding).
  """
  num_heads: int
  num_buckets: int = 32
  max_distance: int = 128
  bidirectional: bool = True
  stddev: float = 0.02

  @nn.compact
  def __call__(self, q_len: int, k_len: int, q_offset: Union[int, jax.Array] = 0) -> jax.Array:
    table = self.param("embedding", common.partitioned(common.kernel_init(self.stddev),
                                                       ("relpos_buckets", "heads")),
                       (self.num_buckets, self.num_heads), jnp.float32)
    query = q_offset + jnp.arange(q_len, dtype=jnp.int32)[:, None]   # [q, 1]
    key = jnp.arange(k_len, dtype=jnp.int32)[None, :]                # [1, k]
    buckets = relative_position_bucket(key - query, self.bidirectional, self.num_buckets,
                                       self.max_distance)            # [q, k]
    values = jnp.take(table, buckets, axis=0)                        # [q, k, heads]
    return jnp.transpose(values, (2, 0, 1))[None]                    # [1, heads, q, k]
