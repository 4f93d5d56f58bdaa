"""Token / position / segment embedders; `Embed.attend` for tied output heads."""
from typing import Any, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from plm_jax.layers import checks
from plm_jax.layers import common
from plm_jax.layers.norms import LayerNorm


class Embed(nn.Module):
  """A lookup table [num_embeddings, features] that can also attend (tied decoder).

  Attributes:
    num_embeddings: rows of the table (vocabulary, positions, segment types).
    features: width of each row.
    axes: logical names of the table's two axes, e.g. ('vocab', 'embed').
    stddev: std of the truncated-normal initializer.
    dtype: compute dtype of the looked-up rows and of `attend`.
  """
  num_embeddings: int
  features: int
  axes: Tuple[str, str] = ("vocab", "embed")
  stddev: float = 0.02
  dtype: Any = jnp.float32

  def setup(self):
    self.embedding = self.param(
        "embedding", common.partitioned(common.kernel_init(self.stddev), self.axes),
        (self.num_embeddings, self.features), jnp.float32)  # [num_embeddings, features]

  def __call__(self, ids: jax.Array) -> jax.Array:
    """ids [...] int -> [..., features] in `dtype`."""
    return jnp.take(self.embedding, ids, axis=0).astype(self.dtype)

  def attend(self, query: jax.Array) -> jax.Array:
    """query [..., features] -> scores against every row [..., num_embeddings]."""
    return jnp.einsum("...d,vd->...v", query.astype(self.dtype), self.embedding.astype(self.dtype))


class TextEmbeddings(nn.Module):
  """Sum of word, learned position and segment (token type) embeddings, then LN, dropout.

  Params: word_embeddings, position_embeddings, token_type_embeddings (each an
  `Embed`), layer_norm. The output is float32 (LayerNorm output), as BERT.
  fused_ops: LayerNorm implementation switch (layers/fused.py).
  check_inputs: ids and token types outside their tables are a ValueError naming the id
    and its position (plm_jax.layers.checks), instead of a clamped row or NaN.
  task_type_vocab_size: > 0 adds a task-type table (ERNIE's `use_task_id`, param
    task_type_embeddings) whose rows join the sum before the LayerNorm; 0: none.
  """
  vocab_size: int
  hidden_size: int
  max_position_embeddings: int
  type_vocab_size: int
  layer_norm_eps: float = 1e-12
  dropout_rate: float = 0.1
  initializer_range: float = 0.02
  dtype: Any = jnp.float32
  fused_ops: bool = True
  check_inputs: bool = False
  task_type_vocab_size: int = 0

  def setup(self):
    embed = lambda n, axes: Embed(n, self.hidden_size, axes, self.initializer_range, self.dtype)
    self.word_embeddings = embed(self.vocab_size, ("vocab", "embed"))
    self.position_embeddings = embed(self.max_position_embeddings, ("position", "embed"))
    self.token_type_embeddings = embed(self.type_vocab_size, ("type_vocab", "embed"))
    if self.task_type_vocab_size:
      self.task_type_embeddings = embed(self.task_type_vocab_size, ("type_vocab", "embed"))
    self.layer_norm = LayerNorm(self.layer_norm_eps, fused_ops=self.fused_ops)
    self.dropout = common.Dropout(self.dropout_rate)

  def __call__(self, input_ids: jax.Array, token_type_ids: Optional[jax.Array] = None,
               position_ids: Optional[jax.Array] = None,
               deterministic: bool = True,
               task_type_ids: Optional[jax.Array] = None) -> jax.Array:
    """input_ids [batch, length] -> [batch, length, hidden] float32. task_type_ids
    [batch, length] (default 0) are read only when there is a task-type table."""
    length = input_ids.shape[-1]
    if length > self.max_position_embeddings:
      raise ValueError(f"sequence length {length} exceeds max_position_embeddings "
                       f"{self.max_position_embeddings}")
    if token_type_ids is None:
      token_type_ids = jnp.zeros_like(input_ids)
    if self.check_inputs:
      checks.check_ids("input_ids", input_ids, self.vocab_size, "vocab_size")
      checks.check_ids("token_type_ids", token_type_ids, self.type_vocab_size, "type_vocab_size")
    if position_ids is None:
      position_ids = jnp.arange(length)[None, :]  # [1, length]
    x = (self.word_embeddings(input_ids).astype(jnp.float32)
         + self.position_embeddings(position_ids).astype(jnp.float32)
         + self.token_type_embeddings(token_type_ids).astype(jnp.float32))  # [batch, length, embed]
    if self.task_type_vocab_size:
      if task_type_ids is None:
        task_type_ids = jnp.zeros_like(input_ids)
      if self.check_inputs:
        checks.check_ids("task_type_ids", task_type_ids, self.task_type_vocab_size,
                         "task_type_vocab_size")
      x = x + self.task_type_embeddings(task_type_ids).astype(jnp.float32)
    x = self.layer_norm(x)
    x = self.dropout(x, deterministic=deterministic)
    return common.constrain(x, common.BATCH_LENGTH_EMBED)

  def attend(self, query: jax.Array) -> jax.Array:
    """Tied output projection through the word embeddings: [..., hidden] -> [..., vocab]."""
    return self.word_embeddings.attend(query)
