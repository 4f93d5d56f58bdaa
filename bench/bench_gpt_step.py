"""Benchmark: GPT-2 causal LM train step, plm_jax vs Hugging Face PyTorch GPT2LMHeadModel.

  python bench/bench_gpt_step.py                      # GPT-2 small (124M), batch 8 x 128
  python bench/bench_gpt_step.py --size=medium --batch=4 --seq=256
  python bench/bench_gpt_step.py --quick              # tiny model, a few steps: does it run

The shared harness (bench/harness.py: separate pinned processes, medians, matmul peak,
GEMM floor); it prints tokens/s of both sides and their ratio (the issue's target: at least
1.3x PyTorch) and the plm_jax step over its GEMM floor (target: within 1.2x); every other flag is the harness's (--batch, --seq, --steps, --rounds,
--fused_ops ...). Synthetic packed rows over GPT-2's 50,257 ids; both sides project
every token onto the vocabulary (the tied output layer) and use PyTorch's default
attention for HF (scaled_dot_product_attention).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # pylint: disable=wrong-import-position

QUICK = ["--size=tiny", "--batch=2", "--seq=32", "--steps=2", "--rounds=1", "--warmup=1",
         "--fused_ops=on"]


def _config(size):
  from configs import gpt  # pylint: disable=import-outside-toplevel
  c = gpt.get_config(size)
  # The bench feeds synthetic ids over GPT-2's 50,257 (vocab_size below): no vocabulary file,
  # but the paper sizes name a BPE one that must exist, so the config's check would refuse.
  c.data.vocab.type = "builtin"
  return c


def _objective(config, vocab_size):
  from plm_jax.objectives.gpt_lm import GptCausalLm  # pylint: disable=import-outside-toplevel
  return GptCausalLm(config, vocab_size=vocab_size)


def _hf(cfg, vocab_size, seq):
  import transformers  # pylint: disable=import-outside-toplevel
  return transformers.GPT2LMHeadModel(transformers.GPT2Config(
      vocab_size=vocab_size, n_positions=max(seq, cfg.max_position_embeddings),
      n_embd=cfg.hidden_size, n_layer=cfg.num_layers, n_head=cfg.num_heads,
      n_inner=cfg.intermediate_size, activation_function="gelu_new",
      layer_norm_epsilon=cfg.layer_norm_eps, resid_pdrop=cfg.hidden_dropout_rate,
      embd_pdrop=cfg.embedding_dropout_rate, attn_pdrop=cfg.attention_dropout_rate))


GPT2 = harness.Family(
    name="gpt", config=_config, objective=_objective, hf_model=_hf, sentence_label=None,
    vocab_size=50257, token_types=False, causal_lm=True, floor_target=1.2,
    hf_inputs=lambda t: dict(input_ids=t["input_ids"], labels=t["labels"]))


if __name__ == "__main__":
  argv = sys.argv[1:]
  if "--quick" in argv:
    argv = QUICK + [a for a in argv if a != "--quick"]
  if not any(a.startswith("--size") for a in argv):
    argv = ["--size=small"] + argv
  sys.exit(harness.main(GPT2, argv, description=__doc__.split("\n")[0]))
