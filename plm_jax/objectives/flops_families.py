"""Forward FLOPs of the GPT, XLNet, T5 and ELMo networks, with the conventions and blocks of
plm_jax.objectives.flops (2mkn per matrix product, one-hot lookups unless lookups=False,
fixed elementwise costs; training = flops.TRAIN_FACTOR x forward).

Each function counts one example (one row) as the model in plm_jax.models computes it,
shapes included: what a layer computes and then masks (causal attention's hidden half,
the query stream's rows that predict nothing) is counted, as the ELECTRA script counts a
padded sequence. Work the model does once per batch and shares between its rows (XLNet's
relative-position projection, T5's position-bias lookup) is counted per row: an upper
bound, exact for a batch of one row and a small share of a layer otherwise.
"""
from __future__ import annotations

from plm_jax.objectives.flops import (ACTIVATION, DROPOUT, LAYER_NORM, RMS_NORM, SOFTMAX,
                                      attention_flops, ffn_flops, lookup_flops,
                                      output_softmax_flops)


# ---- GPT-1 / GPT-2 ------------------------------------------------------------------------
def gpt_forward_flops(cfg, s: int, lookups: bool = True) -> float:
  """A causal LM (plm_jax.models.gpt) over a row of s tokens: token + position lookups, their
  sum and dropout, num_layers causal layers (post-LN GPT-1 and pre-LN GPT-2 cost the same;
  GPT-2 adds its final LayerNorm), the tied LM head over every position, and the softmax
  over V at the s - 1 positions with a next token. Causal attention computes all s x s
  scores and masks half of them: all are counted."""
  h, v = cfg.hidden_size, cfg.vocab_size
  embed = lookup_flops(h, v, s, lookups) + lookup_flops(h, s, s, lookups) + (h + DROPOUT * h) * s
  layer = (attention_flops(h, h, cfg.num_heads, s, s)
           + ffn_flops(h, cfg.intermediate_size, s))
  final = LAYER_NORM * h * s if cfg.norm_position == "pre" else 0
  head = 2 * h * v * s + output_softmax_flops(v, s - 1)
  return float(embed + cfg.num_layers * layer + final + head)


# ---- XLNet --------------------------------------------------------------------------------
def _xlnet_core_flops(inner: int, heads: int, queries: int, keys: int, positions: int,
                      segments: bool) -> float:
  """Relative attention of `queries` rows (plm_jax.models.xlnet RelativeAttention.core):
  content (q + r_w).k, position (q + r_r).kr over the relative positions (then shifted),
  segment (q + r_s).seg_embed picked per key, their sum, scale, softmax, dropout, values."""
  per_query = (inner + 2 * inner * keys                      # + r_w_bias, content scores
               + inner + 2 * inner * positions               # + r_r_bias, position scores
               + heads * keys                                # content + position
               + (SOFTMAX + DROPOUT + 1) * heads * keys      # scale, softmax, dropout
               + 2 * inner * keys)                           # weighted sum of the values
  if segments:
    per_query += inner + 2 * inner * 2 + heads * keys        # + r_s_bias, 2 segment scores, add
  return float(per_query * queries)


def _xlnet_post_flops(h: int, inner: int, tokens: int) -> float:
  """Output projection, dropout, residual, LayerNorm of the attention sublayer."""
  return float((2 * inner * h + DROPOUT * h + h + LAYER_NORM * h) * tokens)


def xlnet_forward_flops(cfg, s: int, num_predict: int, mem_len: int = 0,
                        segments: bool = True, content_output: bool = False,
                        lookups: bool = True) -> float:
  """Two-stream XLNet (plm_jax.models.xlnet XLNetLMHeadModel) over a row of s tokens with
  mem_len memory positions and num_predict targets.

  Per layer: key / value projections over memory + row (klen), the position projection
  of the klen + s relative positions (klen + 1 for attn_type 'uni'), the content stream's
  query projection and attention over klen keys for every token; the query stream's
  projection on the num_predict targets, spread to the s rows by target_mapping (a
  [P, s] product), attention for all s rows as the model computes it (the released
  code's layout), gathered back (another [P, s] product); output projection, LN and the
  FFN (dropout after its activation) on the s + num_predict states of both streams. Then
  the head: tied decoder + bias and the softmax over V on the targets only.
  content_output False (the permutation LM: the loss reads the query stream, the next
  memory the layers' inputs): the last layer's content stream (its queries, attention,
  output and FFN) feeds nothing, and the compiled step (like the released code's
  TensorFlow graph) does not run it; it is not counted.
  """
  h, v, heads = cfg.hidden_size, cfg.vocab_size, cfg.num_heads
  inner = heads * cfg.head_dim
  klen = mem_len + s
  positions = klen + (s if cfg.attn_type == "bi" else 1)
  p = num_predict
  embed = (lookup_flops(h, v, s, lookups) + DROPOUT * h * s + DROPOUT * h * p
           + (h // 2 + ACTIVATION * h + DROPOUT * h) * positions)   # sinusoids, dropout
  content = (2 * h * inner * s                                      # content queries
             + _xlnet_core_flops(inner, heads, s, klen, positions, segments)
             + _xlnet_post_flops(h, inner, s)
             + ffn_flops(h, cfg.intermediate_size, s, inner_dropout=True))
  query = (2 * 2 * h * inner * klen                                 # keys, values
           + 2 * h * inner * positions                              # kr
           + 2 * h * inner * p                                      # query-stream queries
           + 2 * 2 * p * s * inner                                  # target_mapping, twice
           + _xlnet_core_flops(inner, heads, s, klen, positions, segments)
           + _xlnet_post_flops(h, inner, p)
           + ffn_flops(h, cfg.intermediate_size, p, inner_dropout=True))
  layers = cfg.num_layers * query + (cfg.num_layers - (not content_output)) * content
  head = DROPOUT * h * p + (2 * h * v + v) * p + output_softmax_flops(v, p)
  return float(embed + layers + head)


# ---- T5 -----------------------------------------------------------------------------------
def _t5_stack_extras(cfg, length: int, lookups: bool) -> float:
  """A stack's token lookup, embedding dropout, relative-position-bias lookup ([buckets,
  heads] table read for every query-key pair), final RMSNorm and dropout."""
  h = cfg.hidden_size
  return (lookup_flops(h, cfg.vocab_size, length, lookups)
          + lookup_flops(cfg.num_heads, cfg.relative_attention_num_buckets, length * length,
                         lookups)
          + (DROPOUT + RMS_NORM + DROPOUT) * h * length)


def t5_forward_flops(cfg, inputs_length: int, targets_length: int,
                     lookups: bool = True) -> float:
  """T5 (plm_jax.models.t5 T5ForConditionalGeneration) on a row of inputs_length encoder and
  targets_length decoder tokens: pre-RMSNorm layers without biases or attention scaling,
  the relative position bias added to every self-attention score; the encoder's
  self-attention and FFN; the decoder's causal self-attention, cross-attention (keys and
  values projected from the encoder outputs in every layer) and FFN; FFN plain or gated as
  cfg.feed_forward_proj says; the output layer (tied: with the hidden_size**-0.5 rescale;
  or lm_head) and the softmax over V at every target position."""
  h, v, heads = cfg.hidden_size, cfg.vocab_size, cfg.num_heads
  inner = heads * cfg.head_dim
  gated = cfg.feed_forward_proj.startswith("gated-")
  s, t = inputs_length, targets_length
  attn = dict(bias=False, scale=False, norm=RMS_NORM)
  ffn = dict(bias=False, gated=gated, norm=RMS_NORM)
  encoder_layer = (attention_flops(h, inner, heads, s, s, score_terms=1, **attn)
                   + ffn_flops(h, cfg.intermediate_size, s, **ffn))
  decoder_layer = (attention_flops(h, inner, heads, t, t, score_terms=1, **attn)
                   + attention_flops(h, inner, heads, t, s, **attn)
                   + ffn_flops(h, cfg.intermediate_size, t, **ffn))
  head = (h * t if cfg.tie_word_embeddings else 0) + 2 * h * v * t + output_softmax_flops(v, t)
  return float(_t5_stack_extras(cfg, s, lookups) + cfg.num_layers * encoder_layer
               + _t5_stack_extras(cfg, t, lookups) + cfg.num_decoder_layers * decoder_layer
               + head)


# ---- ELMo ---------------------------------------------------------------------------------
def elmo_token_encoder_flops(cfg, lookups: bool = True) -> float:
  """The char CNN of one token (plm_jax.models.elmo CharEncoder): char lookups, each filter's
  VALID convolution over the max_characters_per_token characters, bias, max over positions
  and activation; highway layers (carry and transform products, biases, sigmoid, ReLU, the
  gated mix); the projection to projection_dim when the filters do not add up to it."""
  c, d, f, p = (cfg.max_characters_per_token, cfg.char_embedding_dim, cfg.n_filters,
                cfg.projection_dim)
  total = lookup_flops(d, cfg.n_characters, c, lookups)
  for width, num in cfg.filters:
    outputs = c - width + 1
    total += 2 * width * d * num * outputs + 2 * num * outputs + ACTIVATION * num
  total += cfg.n_highway * (2 * (2 * f * f + f) + 2 * ACTIVATION * f + 4 * f)
  if f != p:
    total += 2 * f * p + p
  return float(total)


def lstm_step_flops(input_size: int, cell: int, proj: int, cell_clip: bool,
                    proj_clip: bool) -> float:
  """One step of plm_jax.layers.lstm's cell: the 4 gates from [x, h] (input and recurrent
  products, bias, their sum), forget bias, 3 sigmoids and 2 tanh, the cell update, the
  output gate, clipping, and the projection cell -> proj when proj < cell."""
  flops = (2 * input_size * 4 * cell + 4 * cell + 2 * proj * 4 * cell + 4 * cell
           + cell + 5 * ACTIVATION * cell + 3 * cell + cell + cell * cell_clip)
  if proj < cell:
    flops += 2 * cell * proj
  return float(flops + proj * proj_clip)


def elmo_forward_flops(cfg, seq_length: int, num_samples: int = 0,
                       lookups: bool = True) -> float:
  """The biLM (plm_jax.models.elmo ElmoBiLM) and its LM losses on a window of seq_length
  tokens: the char CNN per token; per direction, n_layers LSTM layers with projection
  (dropout on each layer's input, skip connections after the first); per direction the
  softmax, shared: num_samples == 0: dropout, logits over V at every position (+ bias)
  and the softmax at the seq_length - 1 scored ones; num_samples K > 0 (sampled
  softmax, training): at the scored positions the target's and the K candidates' logits
  (+ bias, - log expected count) and a softmax over those K + 1 (rows of the softmax
  matrix are gathered, not looked up: no one-hot cost)."""
  t, p, v = seq_length, cfg.projection_dim, cfg.vocab_size
  step = lstm_step_flops(p, cfg.lstm_dim, p, cfg.cell_clip > 0, cfg.proj_clip > 0)
  skip = 2 * p if cfg.use_skip_connections else 0
  direction = cfg.n_layers * (DROPOUT * p + step) + (cfg.n_layers - 1) * skip
  scored = t - 1
  if num_samples > 0:
    k = num_samples + 1
    softmax = scored * (2 * p * k + 2 * k + 1) + SOFTMAX * k * scored
  else:
    softmax = t * (DROPOUT * p + 2 * p * v + v) + output_softmax_flops(v, scored)
  return float(t * elmo_token_encoder_flops(cfg, lookups) + 2 * (t * direction + softmax))
