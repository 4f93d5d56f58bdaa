"""Greedy decoding for T5ForConditionalGeneration through the decoder's key/value cache.

  tokens = greedy_decode(model, params, input_ids, attention_mask, max_length)

The encoder runs once; the decoder runs one token per step (lax.scan, so the whole
generation compiles once per (batch, input length, max_length) shape), reading and
writing the self-attention keys/values of earlier steps in the 'cache' collection.
Rows that produced EOS continue with padding (as transformers' `generate`).
Returns [B, max_length] int32: the generated tokens, without the start token.
"""
from typing import Any, Optional

import jax
import jax.numpy as jnp

from plm_jax.models.t5 import T5ForConditionalGeneration


def init_cache(model: T5ForConditionalGeneration, batch: int, max_length: int,
               encoder_outputs: jax.Array, attention_mask: Optional[jax.Array]) -> Any:
  """An empty decoding cache for `batch` rows of up to max_length decoder tokens."""
  shapes = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((batch, max_length), jnp.int32),
                         encoder_outputs, attention_mask, decode=True,
                         method=T5ForConditionalGeneration.decode)["cache"])
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def greedy_decode(model: T5ForConditionalGeneration, params: Any, input_ids: jax.Array,
                  attention_mask: Optional[jax.Array] = None, max_length: int = 20
                  ) -> jax.Array:
  """input_ids [B, S] (attention_mask [B, S], 1 = real) -> generated tokens [B, max_length]."""
  cfg = model.config
  batch = input_ids.shape[0]
  if attention_mask is None:
    attention_mask = (input_ids != cfg.pad_token_id).astype(jnp.int32)
  enc = model.apply({"params": params}, input_ids, attention_mask,
                    method=T5ForConditionalGeneration.encode)
  cache = init_cache(model, batch, max_length, enc, attention_mask)

  def step(carry, _):
    token, cache, done = carry                               # [B], cache, [B] bool
    logits, mutated = model.apply(
        {"params": params, "cache": cache}, token[:, None], enc, attention_mask,
        decode=True, method=T5ForConditionalGeneration.decode, mutable=["cache"])
    nxt = jnp.argmax(logits[:, 0], axis=-1).astype(jnp.int32)   # [B]
    nxt = jnp.where(done, cfg.pad_token_id, nxt)
    done = done | (nxt == cfg.eos_token_id)
    return (nxt, mutated["cache"], done), nxt

  start = jnp.full((batch,), cfg.decoder_start_token_id, jnp.int32)
  _, tokens = jax.lax.scan(step, (start, cache, jnp.zeros((batch,), bool)), None,
                           length=max_length)
  return jnp.transpose(tokens)                                # [B, max_length]
