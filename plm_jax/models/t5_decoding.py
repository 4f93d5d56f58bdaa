"""Greedy decoding and beam search for T5ForConditionalGeneration through the decoder's
key/value cache.

  tokens = greedy_decode(model, params, input_ids, attention_mask, max_length)
  out = beam_search(model, params, input_ids, attention_mask, max_length, num_beams=4,
                    length_penalty=0.6)       # out.tokens [B, K, max_length], out.scores [B, K]
  tokens = generate(model, params, input_ids, attention_mask, max_length, num_beams=4,
                    length_penalty=0.6)       # jitted; the best beam (greedy: num_beams=1)
  texts = generate_text(model, params, vocab, ["summarize: ..."], max_length=64)  # text out

The encoder runs once; the decoder runs one token per step (lax.scan / lax.while_loop, so
a whole generation compiles once per (batch, input length, max_length, num_beams) shape),
reading and writing the self-attention keys/values of earlier steps in the 'cache'
collection. Outputs hold the generated tokens without the start token, EOS included, then
padding. Both follow transformers' `generate` (greedy; beam search with its defaults
`early_stopping=False`) step for step, so they return the same tokens for the same weights:

Beam search (transformers >= 4.50's vectorised form): each step scores every continuation
of the num_beams running beams by their summed log-probabilities, keeps the best
2 * num_beams, moves those that ended (EOS, or max_length reached) and rank among the best
num_beams of them into the finished set with the score sum_logprob / length **
length_penalty (length: generated tokens, EOS included), and continues with the best
num_beams that did not end. A row stops taking finished beams once its num_beams finished
slots are full and its best running beam, divided by the current length ** length_penalty,
no longer beats the worst finished one. (The original T5 / t5x beam search divides by
((5 + length) / 6) ** alpha instead, GNMT's form, with alpha = 0.6.)
"""
import functools
from typing import Any, List, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

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


class BeamOutput(NamedTuple):
  tokens: jax.Array   # [B, num_beams, max_length] int32: finished beams, best first
  scores: jax.Array   # [B, num_beams] float32: sum of log-probabilities / length ** penalty


def reorder_cache(cache: Any, rows: jax.Array) -> Any:
  """Gathers the decoder's cached keys/values [..., B, heads, L, kv] (a leading layers axis
  under scan) at rows [B]; counters and positions stay as they are."""
  def take(path, x):
    if getattr(path[-1], "key", None) in ("cached_key", "cached_value"):
      return jnp.take(x, rows, axis=x.ndim - 4)
    return x
  return jax.tree_util.tree_map_with_path(take, cache)


NEG = -1.0e9     # transformers' score for excluded candidates (float32, finite)


def beam_search(model: T5ForConditionalGeneration, params: Any, input_ids: jax.Array,
                attention_mask: Optional[jax.Array] = None, max_length: int = 20,
                num_beams: int = 4, length_penalty: Any = 1.0) -> BeamOutput:
  """input_ids [B, S] (attention_mask [B, S], 1 = real) -> BeamOutput (see the module doc).

  max_length, num_beams: static ints; length_penalty: a float (traced under jit)."""
  cfg = model.config
  batch, src_len = input_ids.shape
  beams, vocab = num_beams, cfg.vocab_size
  if 2 * beams > vocab:
    raise ValueError(f"beam_search: num_beams={beams} needs a vocabulary of at least "
                     f"{2 * beams} tokens (T5Config.vocab_size={vocab})")
  if attention_mask is None:
    attention_mask = (input_ids != cfg.pad_token_id).astype(jnp.int32)
  enc = model.apply({"params": params}, input_ids, attention_mask,
                    method=T5ForConditionalGeneration.encode)            # [B, S, H]
  enc = jnp.repeat(enc, beams, axis=0)                                  # [B*K, S, H]
  mask = jnp.repeat(attention_mask, beams, axis=0)                      # [B*K, S]
  cache = init_cache(model, batch * beams, max_length, enc, mask)
  penalty = jnp.asarray(length_penalty, jnp.float32)
  first_k = jnp.arange(2 * beams) < beams                               # [2K]
  rows = jnp.arange(batch)[:, None] * beams                             # [B, 1]

  def gather(x, idx):                                                   # x [B, N, ...], idx [B, M]
    return jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), axis=1)

  def body(state):
    t, cache, run_seq, run_score, fin_seq, fin_score, fin_flag, open_ = state
    token = run_seq[:, :, jnp.maximum(t - 1, 0)]
    token = jnp.where(t == 0, cfg.decoder_start_token_id, token).reshape(-1)   # [B*K]
    logits, mutated = model.apply(
        {"params": params, "cache": cache}, token[:, None], enc, mask, decode=True,
        method=T5ForConditionalGeneration.decode, mutable=["cache"])
    logp = jax.nn.log_softmax(logits[:, 0].astype(jnp.float32), axis=-1)       # [B*K, V]
    logp = logp.reshape(batch, beams, vocab) + run_score[:, :, None]
    top_score, top_idx = jax.lax.top_k(logp.reshape(batch, beams * vocab), 2 * beams)
    top_beam, top_tok = top_idx // vocab, (top_idx % vocab).astype(jnp.int32)   # [B, 2K]
    top_seq = gather(run_seq, top_beam).at[:, :, t].set(top_tok)               # [B, 2K, L]
    ended = (top_tok == cfg.eos_token_id) | (t + 1 >= max_length)             # [B, 2K]
    # The best num_beams continuations that did not end run on.
    run_cand = top_score + jnp.where(ended, NEG, 0.0)
    _, keep = jax.lax.top_k(run_cand, beams)                                   # [B, K]
    run_seq, run_score = gather(top_seq, keep), gather(run_cand, keep)
    cache = reorder_cache(mutated["cache"], (rows + gather(top_beam, keep)).reshape(-1))
    # Ended ones among the best num_beams join the finished set if they rank in it.
    length = (t + 1).astype(jnp.float32)
    new_fin = ended & first_k[None]
    cand = (top_score / length ** penalty + jnp.where(open_[:, None], 0.0, NEG)
            + jnp.where(new_fin, 0.0, NEG))
    all_seq = jnp.concatenate([fin_seq, top_seq], axis=1)                      # [B, 3K, L]
    all_score = jnp.concatenate([fin_score, cand], axis=1)
    all_flag = jnp.concatenate([fin_flag, new_fin], axis=1)
    _, best = jax.lax.top_k(all_score, beams)
    fin_seq, fin_score, fin_flag = gather(all_seq, best), gather(all_score, best), gather(all_flag, best)
    # Can the best running beam still beat the worst finished one?
    worst = jnp.where(fin_flag, jnp.min(fin_score, axis=1, keepdims=True), NEG)
    open_ = open_ & jnp.any(run_score[:, :1] / length ** penalty > worst, axis=1)
    return t + 1, cache, run_seq, run_score, fin_seq, fin_score, fin_flag, open_

  def cond(state):
    return (state[0] < max_length) & jnp.any(state[-1])

  pad = jnp.full((batch, beams, max_length), cfg.pad_token_id, jnp.int32)
  run_score = jnp.where(jnp.arange(beams) == 0, 0.0, NEG)[None].repeat(batch, 0)
  state = (jnp.int32(0), cache, pad, run_score.astype(jnp.float32), pad,
           jnp.full((batch, beams), NEG, jnp.float32), jnp.zeros((batch, beams), bool),
           jnp.ones((batch,), bool))
  state = jax.lax.while_loop(cond, body, state)
  fin_seq, fin_score = state[4], state[5]
  return BeamOutput(fin_seq, fin_score)


@functools.partial(jax.jit, static_argnames=("model", "max_length", "num_beams"))
def generate(model: T5ForConditionalGeneration, params: Any, input_ids: jax.Array,
             attention_mask: Optional[jax.Array] = None, max_length: int = 20,
             num_beams: int = 1, length_penalty: Any = 1.0) -> jax.Array:
  """Compiled once per (model, shapes, max_length, num_beams): greedy decoding
  (num_beams=1) or the best beam -> [B, max_length] int32."""
  if num_beams == 1:
    return greedy_decode(model, params, input_ids, attention_mask, max_length)
  return beam_search(model, params, input_ids, attention_mask, max_length, num_beams,
                     length_penalty).tokens[:, 0]


def decode_texts(vocab, tokens: np.ndarray, eos_id: int, pad_id: int = 0) -> List[str]:
  """Generated ids [N, T] -> texts, each cut at its first EOS, padding dropped."""
  out = []
  for row in np.asarray(tokens):
    ids = [int(t) for t in row]
    if eos_id in ids:
      ids = ids[:ids.index(eos_id)]
    out.append(vocab.decode([t for t in ids if t != pad_id]))
  return out


def generate_text(model: T5ForConditionalGeneration, params: Any, vocab, texts: Sequence[str],
                  max_length: int = 20, num_beams: int = 1, length_penalty: float = 1.0,
                  max_input_length: int = 512, pad_to_multiple: int = 16) -> List[str]:
  """Texts in, texts out: each input encoded with `vocab` (a seqio Vocabulary: the run's
  SentencePiece model, or an imported checkpoint's spiece.model) followed by EOS, as T5's
  inputs end; the batch right-padded to a multiple of pad_to_multiple tokens (fewer shapes
  to compile); `generate` (greedy, or the best of num_beams beams); each output decoded up
  to its first EOS. An input longer than max_input_length tokens is a ValueError naming it."""
  cfg = model.config
  if isinstance(texts, str):
    raise TypeError("generate_text: texts must be a sequence of strings, not one string")
  if not texts:
    return []
  ids = [list(vocab.encode(t)) + [cfg.eos_token_id] for t in texts]
  for i, row in enumerate(ids):
    if len(row) > max_input_length:
      raise ValueError(f"generate_text: texts[{i}] is {len(row)} tokens with EOS, more than "
                       f"max_input_length={max_input_length}")
  length = -(-max(len(r) for r in ids) // pad_to_multiple) * pad_to_multiple
  input_ids = np.full((len(ids), length), cfg.pad_token_id, np.int32)
  mask = np.zeros((len(ids), length), np.int32)
  for i, row in enumerate(ids):
    input_ids[i, :len(row)] = row
    mask[i, :len(row)] = 1
  tokens = generate(model, params, jnp.asarray(input_ids), jnp.asarray(mask), max_length,
                    num_beams, jnp.float32(length_penalty))
  return decode_texts(vocab, np.asarray(tokens), cfg.eos_token_id, cfg.pad_token_id)
