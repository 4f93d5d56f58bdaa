"""Text generation for causal LMs (GPT-1 / GPT-2) with the attention key/value cache.

  generate(model, params, prompts, max_length, temperature=0.0, top_k=0, top_p=1.0,
           eos_id=None, pad_id=0, rng=None) -> Generated(tokens [B, max_length], lengths [B])

prompts are token-id lists of different lengths (each at least one token). Greedy
decoding when temperature == 0; otherwise sampling from softmax(logits / temperature)
restricted to the top_k tokens (0: no limit) and to the smallest set of tokens whose
probability reaches top_p (1.0: no limit), in that order (Hugging Face's order).
A row stops after it emits eos_id; its remaining slots hold pad_id.

How it runs, compiled once per (batch, max_length) and sampling mode: the prompts are
written left-aligned into a [B, max_length] buffer and run through the model in one
pass that fills the cache (causal, so a slot's keys/values depend only on the tokens
before it). Decoding then starts at the shortest prompt's end: each step feeds the
token at position t (the prompt's own while t is inside that row's prompt, the sampled
one after) at its true position, overwriting the cache slot t, so every row sees
exactly its own tokens at positions 0, 1, 2, ... with no padding inside. The prefill
runs through the model (GPTLMHeadModel, decode=True); the steps run plm_jax.models.gpt_decode
(the same function on one token, its weights laid out once per call for that shape), all
inside one lax.while_loop on the device.

  python -m plm_jax.models.gpt_generate --model_dir=DIR --prompt="Hello" --max_length=40
prints continuations (DIR: a Hugging Face GPT/GPT-2 directory or a plm_jax export with
vocab.json + merges.txt: GPT-2's byte-level BPE or GPT-1's).
"""
from __future__ import annotations

import argparse
import functools
import sys
from typing import Any, NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from plm_jax.models import gpt_decode


class Generated(NamedTuple):
  tokens: np.ndarray    # [batch, max_length] int32: prompt, continuation, then pad_id
  lengths: np.ndarray   # [batch] int32: tokens used (prompt + continuation, eos included)


def filter_logits(logits: jax.Array, top_k: int = 0, top_p: Any = 1.0) -> jax.Array:
  """logits [..., vocab] float32 -> the same with tokens outside the top-k / top-p sets at -inf.

  top_k: static int (0: off). top_p: the smallest set of most probable tokens whose
  probability sum reaches top_p is kept (always at least the most probable token).
  """
  neg = jnp.asarray(-jnp.inf, logits.dtype)
  if top_k:
    kth = jax.lax.top_k(logits, top_k)[0][..., -1:]                # [..., 1]
    logits = jnp.where(logits < kth, neg, logits)
  sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]               # descending
  probs = jax.nn.softmax(sorted_logits, axis=-1)
  mass_before = jnp.cumsum(probs, axis=-1) - probs                   # mass of the better ones
  keep = (mass_before < top_p).at[..., 0].set(True)
  cutoff = jnp.min(jnp.where(keep, sorted_logits, jnp.inf), axis=-1, keepdims=True)
  return jnp.where(logits < cutoff, neg, logits)


def next_token(logits: jax.Array, rng: jax.Array, temperature: Any, top_k: int, top_p: Any,
               greedy: bool) -> jax.Array:
  """logits [batch, vocab] -> token ids [batch] int32 (argmax, or a filtered sample)."""
  if greedy:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  logits = filter_logits(logits.astype(jnp.float32) / temperature, top_k, top_p)
  return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)


PREFILL_CHUNK = 32   # prompt tokens per prefill pass (a static shape: one compile)


def _hidden_chunk(module, tokens, begin):
  """Prefill: tokens [B, C] at positions begin .. begin+C-1 through the cache -> [B, C, H]."""
  positions = begin + jnp.arange(tokens.shape[1])[None]
  return module.transformer(tokens, position_ids=positions, decode=True)["last_hidden_state"]


def _attend(module, hidden):
  return module.transformer.attend(hidden)                           # [batch, vocab]


def _set_cache_index(cache, index):
  def fix(path, x):
    return jnp.full_like(x, index) if getattr(path[-1], "key", None) == "cache_index" else x
  return jax.tree_util.tree_map_with_path(fix, cache)


def _prefill(model, params, cache, tokens, start, chunk):
  """Runs tokens[:, :start] through the cache, `chunk` at a time (the last chunk moved back
  to end at the buffer's end if it would run past it: it rewrites the same slots with the
  same values); -> (cache, logits [B, vocab] of position start - 1). Slots past start that
  a chunk filled are overwritten by the decoding steps before any query can see them."""
  batch, length = tokens.shape

  def body(state):
    i, cache, last = state
    begin = jnp.minimum(i * chunk, length - chunk)
    piece = jax.lax.dynamic_slice_in_dim(tokens, begin, chunk, axis=1)
    hidden, mutated = model.apply({"params": params, "cache": _set_cache_index(cache, begin)},
                                  piece, begin, method=_hidden_chunk, mutable=["cache"])
    offset = start - 1 - begin                 # where position start - 1 sits in this chunk
    row = jax.lax.dynamic_index_in_dim(hidden, jnp.clip(offset, 0, chunk - 1), axis=1,
                                       keepdims=False)                    # [batch, embed]
    last = jnp.where((offset >= 0) & (offset < chunk), row.astype(last.dtype), last)
    return i + 1, mutated["cache"], last

  last = jnp.zeros((batch, model.config.hidden_size), jnp.float32)
  _, cache, last = jax.lax.while_loop(lambda s: s[0] * chunk < start, body, (0, cache, last))
  logits = model.apply({"params": params}, last, method=_attend)
  return cache, logits


@functools.partial(jax.jit, static_argnames=("model", "top_k", "greedy", "prefill_chunk"))
def _generate(model, params, tokens, prompt_lengths, rng, temperature, top_p, eos_id, pad_id, *,
              top_k: int, greedy: bool, prefill_chunk: int = PREFILL_CHUNK):
  """tokens [B, L] (prompts left-aligned), prompt_lengths [B] -> (tokens, lengths); eos_id
  (-1: none) and pad_id are int32 scalars. The prompts' shared part (up to the shortest
  prompt's length) is prefilled in chunks of prefill_chunk tokens; each longer prompt's
  rest is fed one token a step, its own tokens in place of samples."""
  batch, length = tokens.shape
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), tokens, decode=True))["cache"]
  cache = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
  start = jnp.min(prompt_lengths)
  cache, logits = _prefill(model, params, cache, tokens, start, min(prefill_chunk, length))
  cache = gpt_decode.cache_from_flax(model.config, cache)
  weights = gpt_decode.step_weights(model.config, params)
  done = jnp.zeros((batch,), bool)

  def cond(state):
    t, _, _, _, done, _ = state
    return (t < length) & ~jnp.all(done)

  def body(state):
    t, tokens, logits, cache, done, lengths = state
    sampled = next_token(logits, jax.random.fold_in(rng, t), temperature, top_k, top_p, greedy)
    in_prompt = t < prompt_lengths
    tok = jnp.where(in_prompt, tokens[:, t], jnp.where(done, pad_id, sampled))
    lengths = jnp.where(in_prompt | ~done, t + 1, lengths)
    done = done | (~in_prompt & (tok == eos_id) & (eos_id >= 0))
    tokens = tokens.at[:, t].set(tok)
    logits, cache = gpt_decode.step(model.config, weights, cache, tok, t)
    return t + 1, tokens, logits, cache, done, lengths

  state = (start, tokens, logits, cache, done, prompt_lengths)
  _, tokens, _, _, _, lengths = jax.lax.while_loop(cond, body, state)
  # Slots a stopped loop never reached: padding.
  tokens = jnp.where(jnp.arange(length)[None] < lengths[:, None], tokens, pad_id)
  return tokens, lengths


def check_prompts(prompts: Sequence[Sequence[int]], max_length: int, context: int,
                  vocab_size: int) -> None:
  """One-line ValueErrors: an empty prompt, one that fills the model's context or max_length,
  max_length past the context, an id outside the vocabulary."""
  if not prompts:
    raise ValueError("generate: no prompts")
  for i, p in enumerate(prompts):
    if len(p) >= context:
      raise ValueError(f"generate: prompt {i} has {len(p)} tokens, but the model's context is "
                       f"{context} positions (max_position_embeddings), counting the "
                       "continuation: shorten the prompt")
  if max_length > context:
    raise ValueError(f"generate: max_length {max_length} exceeds the model's context of "
                     f"{context} positions (max_position_embeddings)")
  for i, p in enumerate(prompts):
    if len(p) == 0:
      raise ValueError(f"generate: prompt {i} is empty (give at least one token, e.g. "
                       "<|endoftext|>)")
    if len(p) >= max_length:
      raise ValueError(f"generate: prompt {i} has {len(p)} tokens, leaving no room below "
                       f"max_length {max_length}")
    bad = [t for t in p if not 0 <= int(t) < vocab_size]
    if bad:
      raise ValueError(f"generate: prompt {i} holds token id {bad[0]} outside the vocabulary "
                       f"[0, {vocab_size})")


def generate(model: nn.Module, params: Any, prompts: Sequence[Sequence[int]], max_length: int,
             temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
             eos_id: Optional[int] = None, pad_id: int = 0,
             rng: Optional[jax.Array] = None, prefill_chunk: int = PREFILL_CHUNK) -> Generated:
  """Continues every prompt to at most max_length tokens (see the module doc)."""
  cfg = model.config
  check_prompts(prompts, max_length, cfg.max_position_embeddings, cfg.vocab_size)
  if temperature < 0 or not 0 < top_p <= 1 or top_k < 0:
    raise ValueError(f"generate: temperature {temperature} must be >= 0, top_k {top_k} >= 0, "
                     f"top_p {top_p} in (0, 1]")
  greedy = temperature == 0
  if not greedy and rng is None:
    raise ValueError("generate: sampling (temperature > 0) needs rng=jax.random.key(...)")
  tokens = np.full((len(prompts), max_length), pad_id, np.int32)
  for i, p in enumerate(prompts):
    tokens[i, :len(p)] = p
  lengths = np.asarray([len(p) for p in prompts], np.int32)
  out, used = _generate(model, params, tokens, lengths,
                        jax.random.key(0) if rng is None else rng,
                        jnp.float32(max(temperature, 1e-6)), jnp.float32(top_p),
                        jnp.int32(-1 if eos_id is None else eos_id), jnp.int32(pad_id),
                        top_k=int(top_k), greedy=greedy, prefill_chunk=int(prefill_chunk))
  return Generated(np.asarray(out), np.asarray(used))


# ---- command line -------------------------------------------------------------------------

def load_model_and_vocab(model_dir: str):
  """(GPTLMHeadModel, params, vocabulary) from an HF directory or an export; the vocabulary
  is its vocab.json + merges.txt (GPT-2's byte-level BPE or GPT-1's, plm_jax.data.gpt1_bpe)."""
  import os  # pylint: disable=import-outside-toplevel
  from plm_jax.data import gpt1_bpe  # pylint: disable=import-outside-toplevel
  from plm_jax.models.gpt import GPTConfig, GPTLMHeadModel  # pylint: disable=import-outside-toplevel
  if os.path.isfile(os.path.join(model_dir, "config.json")):
    import plm_jax  # pylint: disable=import-outside-toplevel
    model, params = plm_jax.load_pretrained(model_dir)
  else:
    from plm_jax.convert import export  # pylint: disable=import-outside-toplevel
    _, cfg, params = export.load_export(model_dir)
    if not isinstance(cfg, GPTConfig):
      raise ValueError(f"{model_dir}: a {type(cfg).__name__} export, not a GPT model")
    model = GPTLMHeadModel(cfg)
  if not isinstance(model, GPTLMHeadModel):
    raise ValueError(f"{model_dir}: not a GPT / GPT-2 model ({type(model).__name__})")
  vocab = gpt1_bpe.load_bpe(os.path.join(model_dir, "vocab.json"))
  if vocab.vocab_size > model.config.vocab_size:
    raise ValueError(f"{model_dir}/vocab.json: {vocab.vocab_size} tokens, but the model has "
                     f"{model.config.vocab_size} rows (vocabulary and model do not match)")
  return model, params, vocab


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m plm_jax.models.gpt_generate",
                                   description="Continue prompts with a GPT / GPT-2 model.")
  parser.add_argument("--model_dir", required=True)
  parser.add_argument("--prompt", action="append", required=True, help="repeat for a batch")
  parser.add_argument("--max_length", type=int, default=64, help="prompt + continuation tokens")
  parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
  parser.add_argument("--top_k", type=int, default=0)
  parser.add_argument("--top_p", type=float, default=1.0)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  try:
    model, params, vocab = load_model_and_vocab(args.model_dir)
    prompts = [vocab.encode_ids(p) for p in args.prompt]
    out = generate(model, params, prompts, args.max_length, args.temperature, args.top_k,
                   args.top_p, eos_id=vocab.eos_id, pad_id=0, rng=jax.random.key(args.seed))
  except (ValueError, OSError) as e:
    print("error: " + " ".join(str(e).split()), file=sys.stderr)
    return 2
  for p, row, n in zip(prompts, out.tokens, out.lengths):
    print(repr(vocab.decode([int(t) for t in row[:n]])))
  return 0


if __name__ == "__main__":
  sys.exit(main())
