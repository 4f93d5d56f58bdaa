"""Training FLOPs of Transformer encoders, counted as the ELECTRA paper counts them.

Clark et al. (2020) compare models at equal pretraining compute (Table 1) with
an analytic count (google-research/electra flops_computation.py); the same
conventions here, so that a run's figure is comparable with the paper's:
  * a matrix product [m, k] x [k, n] is 2mkn FLOPs; the embedding lookup counts
    as a dense product with a one-hot vector (2 E V per token);
  * elementwise work at O(hidden) per token with fixed costs: dropout 4,
    LayerNorm 5, GELU 8, softmax 5 FLOPs per element;
  * training = 2 x forward (the paper takes the backward pass as equal to the
    forward pass; a 3 x count would scale every figure by 1.5 alike);
  * the MLM output (transform, LN, softmax over V) runs on a fraction of the
    tokens (the predicted ones: max_predictions / seq_length here).
One difference: the paper's script counts a LayerNorm after attention as 5 FLOPs
per token instead of 5 per element (a slip that changes its totals by < 0.01%);
here both LayerNorms of a layer cost 5 per element.

  encoder_forward_flops(...)   forward FLOPs of one sequence through embeddings + layers
  mlm_train_flops / electra_train_flops: per training example (multiply by batch x steps)
"""
from __future__ import annotations

DROPOUT, LAYER_NORM, ACTIVATION, SOFTMAX = 4, 5, 8, 5


def layer_forward_flops(h: int, s: int, intermediate: int, heads: int) -> float:
  """One post-LN Transformer layer, forward, over a sequence of s tokens."""
  per_token = (
      3 * 2 * h * h + 3 * h                       # query / key / value projections + biases
      + 2 * h * s                                 # attention scores q.k
      + (SOFTMAX + DROPOUT + 1) * s * heads       # softmax, dropout, 1/sqrt(d) scale
      + 2 * h * s                                 # weighted sum of the values
      + 2 * h * h + h + DROPOUT * h + h + LAYER_NORM * h   # output proj, dropout, residual, LN
      + 2 * h * intermediate + intermediate + ACTIVATION * intermediate   # FFN in, bias, GELU
      + 2 * intermediate * h + h + DROPOUT * h + h + LAYER_NORM * h)      # FFN out, ..., LN
  return float(per_token * s)


def embeddings_forward_flops(e: int, h: int, v: int, s: int) -> float:
  """Token lookup (as a one-hot product), position and type embeddings, LN, dropout, and
  the E -> H projection when E != H, over s tokens."""
  per_token = (2 * e * v + 2 * e * (s + 2) + 2 * e + LAYER_NORM * e + DROPOUT * e)
  if e != h:
    per_token += 2 * e * h + h
  return float(per_token * s)


def mlm_head_forward_flops(e: int, h: int, v: int, s: int, output_fraction: float) -> float:
  """Transform H -> E, GELU, LN, tied decoder E -> V, softmax, the target's log-prob; on
  output_fraction of the s tokens."""
  per_token = (2 * h * e + e + ACTIVATION * e + LAYER_NORM * e + 2 * e * v + SOFTMAX * v + 2 * v)
  return float(output_fraction * per_token * s)


def rtd_head_forward_flops(h: int, s: int) -> float:
  """Discriminator head: dense H -> H, bias, activation, dense H -> 1; every token."""
  return float((2 * h * h + h + ACTIVATION * h + 2 * h) * s)


def encoder_forward_flops(cfg, s: int) -> float:
  """Embeddings + layers of a config with hidden_size, num_layers, num_heads,
  intermediate_size, vocab_size and (optionally) embedding_size; layer applications =
  num_layers x inner_group_num when the config shares layers (ALBERT)."""
  e = getattr(cfg, "embedding_size", cfg.hidden_size)
  layers = cfg.num_layers * getattr(cfg, "inner_group_num", 1)
  return (embeddings_forward_flops(e, cfg.hidden_size, cfg.vocab_size, s)
          + layers * layer_forward_flops(cfg.hidden_size, s, cfg.intermediate_size,
                                         cfg.num_heads))


def mlm_train_flops(cfg, s: int, output_fraction: float) -> float:
  """One training example of a masked LM (BERT's MLM; NSP/SOP heads are negligible)."""
  e = getattr(cfg, "embedding_size", cfg.hidden_size)
  forward = encoder_forward_flops(cfg, s) + mlm_head_forward_flops(
      e, cfg.hidden_size, cfg.vocab_size, s, output_fraction)
  return 2.0 * forward


def electra_train_flops(disc, gen, s: int, output_fraction: float) -> float:
  """One training example of ELECTRA: the generator's MLM plus the discriminator with its
  replaced-token head on every token."""
  disc_forward = encoder_forward_flops(disc, s) + rtd_head_forward_flops(disc.hidden_size, s)
  return 2.0 * disc_forward + mlm_train_flops(gen, s, output_fraction)
