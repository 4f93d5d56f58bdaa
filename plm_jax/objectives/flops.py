"""Training FLOPs of the pretraining networks, counted as the ELECTRA paper counts them.

Clark et al. (2020) compare models at equal pretraining compute (Table 1) with
an analytic count (google-research/electra flops_computation.py); the same
conventions here, for every family, so that a run's figure is comparable with
the paper's and with the other families':
  * a matrix product [m, k] x [k, n] is 2mkn FLOPs; an embedding lookup counts as a
    dense product with a one-hot vector (2 E V per token; positions and token types
    2 E (s + types), as the script), unless `lookups=False` (then a lookup is free,
    as a gather is to XLA's cost analysis);
  * elementwise work with fixed costs per element: dropout 4, LayerNorm 5, RMSNorm 4
    (LayerNorm without the centring), any nonlinearity (GELU, ReLU, tanh, sigmoid) 8,
    softmax 5, and 1 for an add, a multiply, a bias, a scale or a clip; index
    arithmetic (masks, bucket ids, reversal) costs nothing. Dropout is counted
    whatever its rate (the script does), so a family's figure does not depend on it;
  * training = 2 x forward (the paper takes the backward pass as equal to the
    forward pass; a 3 x count would scale every figure by 1.5 alike);
  * an output softmax over V also costs 2 V per scored position (the target's
    log-probability), and runs where the network computes it (the MLM head on the
    predicted tokens only: max_predictions / seq_length of them).
Differences from the paper's script, each < 0.02% of its totals: it counts a LayerNorm
after attention as 5 FLOPs per token instead of 5 per element (a slip; here both
LayerNorms of a layer cost 5 per element); it leaves out the MLM decoder's output bias
(V per predicted token) and the pooler + NSP / SOP classifier, counted here.

This module: the Transformer building blocks and the BERT-style encoders (BERT,
RoBERTa, ALBERT, ERNIE, ELECTRA); plm_jax.objectives.flops_families: GPT, XLNet, T5
and ELMo with the same blocks.

  encoder_forward_flops(...)   forward FLOPs of one sequence through embeddings + layers
  mlm_train_flops / electra_train_flops: per training example (multiply by batch x steps)
"""
from __future__ import annotations

from typing import Optional

DROPOUT, LAYER_NORM, RMS_NORM, ACTIVATION, SOFTMAX = 4, 5, 4, 8, 5
TRAIN_FACTOR = 2.0   # forward + backward, the backward pass counted as one forward


def lookup_flops(width: int, rows: int, tokens: float, lookups: bool = True) -> float:
  """Reading `tokens` rows of a [rows, width] table, as a one-hot product (or free)."""
  return float(2 * width * rows * tokens) if lookups else 0.0


def attention_flops(h: int, inner: int, heads: int, queries: float, keys: int,
                    kv_width: int = 0, bias: bool = True, scale: bool = True,
                    score_terms: int = 0, norm: int = LAYER_NORM) -> float:
  """One residual attention sublayer, forward: `queries` positions attending to `keys`.

  h: the residual width; inner = heads x head_dim (q / k / v width); kv_width: the
  width the keys and values are projected from (cross-attention; default h); bias:
  projection biases; scale: the 1/sqrt(d) multiply; score_terms: extra additions per
  score (a position bias: 1); norm: the sublayer's norm cost per element. The key /
  value projections run over the `keys` positions, everything else per query:
  projections, scores, softmax, dropout, the weighted sum, the output projection, its
  dropout, the residual and the norm.
  """
  kv_width = kv_width or h
  per_query = (2 * h * inner + inner * bias                          # query projection
               + 2 * inner * keys                                    # scores q.k
               + (SOFTMAX + DROPOUT + scale + score_terms) * keys * heads
               + 2 * inner * keys                                    # weighted sum of values
               + 2 * inner * h + h * bias + DROPOUT * h + h + norm * h)   # out, drop, res, norm
  kv = keys * 2 * (2 * kv_width * inner + inner * bias)              # key / value projections
  return float(per_query * queries + kv)


def ffn_flops(h: int, intermediate: int, tokens: float, bias: bool = True,
              gated: bool = False, inner_dropout: bool = False,
              norm: int = LAYER_NORM) -> float:
  """One residual feed-forward sublayer over `tokens` positions: in (two kernels and the
  product of the branches when gated), activation, [dropout,] out, dropout, residual,
  norm."""
  branches = 2 if gated else 1
  per_token = (branches * (2 * h * intermediate + intermediate * bias)
               + ACTIVATION * intermediate + (intermediate if gated else 0)
               + (DROPOUT * intermediate if inner_dropout else 0)
               + 2 * intermediate * h + h * bias + DROPOUT * h + h + norm * h)
  return float(per_token * tokens)


def output_softmax_flops(v: int, positions: float) -> float:
  """Softmax over V and the target's log-probability at `positions` scored positions."""
  return float((SOFTMAX * v + 2 * v) * positions)


def layer_forward_flops(h: int, s: int, intermediate: int, heads: int) -> float:
  """One post-LN Transformer layer (BERT's), forward, over a sequence of s tokens."""
  return attention_flops(h, h, heads, s, s) + ffn_flops(h, intermediate, s)


def embeddings_forward_flops(e: int, h: int, v: int, s: int, lookups: bool = True,
                             type_rows: int = 2, project: Optional[bool] = None) -> float:
  """Token lookup (as a one-hot product), position and type embeddings, LN, dropout, and
  the E -> H projection (project None: when E != H, as ELECTRA; ALBERT: always), over s
  tokens."""
  per_token = 2 * e + LAYER_NORM * e + DROPOUT * e                   # adds, LN, dropout
  if (e != h) if project is None else project:
    per_token += 2 * e * h + h
  return (float(per_token * s) + lookup_flops(e, v, s, lookups)
          + lookup_flops(e, s + type_rows, s, lookups))


def mlm_head_forward_flops(e: int, h: int, v: int, s: int, output_fraction: float) -> float:
  """Transform H -> E, GELU, LN, tied decoder E -> V + its bias, softmax, the target's
  log-prob; on output_fraction of the s tokens."""
  per_token = 2 * h * e + e + ACTIVATION * e + LAYER_NORM * e + 2 * e * v + v
  positions = output_fraction * s
  return float(per_token * positions) + output_softmax_flops(v, positions)


def rtd_head_forward_flops(h: int, s: int) -> float:
  """Discriminator head: dense H -> H, bias, activation, dense H -> 1; every token."""
  return float((2 * h * h + h + ACTIVATION * h + 2 * h) * s)


def sentence_head_forward_flops(h: int) -> float:
  """Pooler (dense H -> H, bias, tanh on [CLS]) and the 2-way classifier (NSP / SOP)."""
  return float(2 * h * h + h + ACTIVATION * h + 2 * h * 2 + 2)


def encoder_layer_applications(cfg) -> int:
  """Layers run per forward pass: num_layers, times inner_group_num for ALBERT (every
  application of a shared layer costs its full FLOPs)."""
  return cfg.num_layers * getattr(cfg, "inner_group_num", 1)


def encoder_forward_flops(cfg, s: int, lookups: bool = True,
                          project: Optional[bool] = None) -> float:
  """Embeddings + layers of a config with hidden_size, num_layers, num_heads,
  intermediate_size, vocab_size and (optionally) embedding_size, type_vocab_size and
  inner_group_num (ALBERT: layer applications = num_layers x inner_group_num)."""
  e = getattr(cfg, "embedding_size", cfg.hidden_size)
  return (embeddings_forward_flops(e, cfg.hidden_size, cfg.vocab_size, s, lookups,
                                   getattr(cfg, "type_vocab_size", 2), project)
          + encoder_layer_applications(cfg) * layer_forward_flops(
              cfg.hidden_size, s, cfg.intermediate_size, cfg.num_heads))


def mlm_forward_flops(cfg, s: int, output_fraction: float, sentence_head: bool = False,
                      lookups: bool = True, project: Optional[bool] = None) -> float:
  """A masked LM's forward pass (BERT, RoBERTa, ALBERT, ERNIE): encoder, MLM head on the
  predicted fraction of the tokens, and the pooler + NSP / SOP classifier if used."""
  e = getattr(cfg, "embedding_size", cfg.hidden_size)
  forward = encoder_forward_flops(cfg, s, lookups, project) + mlm_head_forward_flops(
      e, cfg.hidden_size, cfg.vocab_size, s, output_fraction)
  if sentence_head:
    forward += sentence_head_forward_flops(cfg.hidden_size)
  return forward


def mlm_train_flops(cfg, s: int, output_fraction: float, sentence_head: bool = False) -> float:
  """One training example of a masked LM (BERT's MLM; with sentence_head its NSP / SOP)."""
  return TRAIN_FACTOR * mlm_forward_flops(cfg, s, output_fraction, sentence_head)


def electra_forward_flops(disc, gen, s: int, output_fraction: float,
                          lookups: bool = True) -> float:
  """ELECTRA's forward pass: the generator's MLM plus the discriminator with its
  replaced-token head on every token."""
  disc_forward = (encoder_forward_flops(disc, s, lookups)
                  + rtd_head_forward_flops(disc.hidden_size, s))
  return disc_forward + mlm_forward_flops(gen, s, output_fraction, lookups=lookups)


def electra_train_flops(disc, gen, s: int, output_fraction: float) -> float:
  """One training example of ELECTRA (generator and discriminator, forward + backward)."""
  return TRAIN_FACTOR * electra_forward_flops(disc, gen, s, output_fraction)
