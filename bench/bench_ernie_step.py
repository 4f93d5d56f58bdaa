"""Benchmark: ERNIE 1.0 MLM + NSP train step, plm_jax vs Hugging Face ErnieForPreTraining.

  python bench/bench_ernie_step.py                    # ERNIE 1.0 base (as released) vs HF
  python bench/bench_ernie_step.py --size=tiny --steps=1 --rounds=1 --warmup=1   # quick look

ERNIE 1.0 base as released (12 layers, H 768, 12 heads, ReLU, 513 positions, 18,000
character ids, two segments, no task-type table), float32, batch 8 x 128 with 20 masked
positions by default. The step is BERT's network and losses: knowledge masking changes which
positions are masked, not the step, so the synthetic batches mask random positions. The same
harness as every step bench (bench/harness.py: separate pinned processes, medians, matmul
peak, GEMM floor on both sides); every flag is the harness's.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_bert_step  # pylint: disable=wrong-import-position
import harness  # pylint: disable=wrong-import-position

# The character vocabulary ERNIE 1.0 was released with (PaddlePaddle/ERNIE vocab.txt).
ERNIE_VOCAB = 18000


def _config(size):
  from configs import ernie  # pylint: disable=import-outside-toplevel
  return ernie.get_config(size)


def _objective(config, vocab_size):
  from plm_jax.objectives.ernie_pretrain import ErnieMlmNsp  # pylint: disable=import-outside-toplevel
  return ErnieMlmNsp(config, vocab_size=vocab_size)


def _hf_model(cfg, vocab_size, seq):
  import transformers  # pylint: disable=import-outside-toplevel
  return transformers.ErnieForPreTraining(transformers.ErnieConfig(
      vocab_size=vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
      num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
      hidden_act=cfg.hidden_act, max_position_embeddings=max(seq, cfg.max_position_embeddings),
      type_vocab_size=2, use_task_id=False, layer_norm_eps=cfg.layer_norm_eps,
      hidden_dropout_prob=cfg.hidden_dropout_rate,
      attention_probs_dropout_prob=cfg.attention_dropout_rate))


# ErnieForPreTraining takes BertForPreTraining's inputs and labels.
FAMILY = harness.Family(name="ERNIE", config=_config, objective=_objective, hf_model=_hf_model,
                        hf_inputs=bench_bert_step.BERT.hf_inputs,
                        sentence_label="next_sentence_label",
                        vocab_size=ERNIE_VOCAB)


if __name__ == "__main__":
  sys.exit(harness.main(FAMILY, description=__doc__.split("\n")[0]))
