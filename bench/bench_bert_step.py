"""Benchmark: BERT-base MLM+NSP train step, plm_jax vs Hugging Face PyTorch.

Each implementation runs in its own process (alternating, --rounds times) on
the same CPUs (pinned to --threads cores), float32, batch 8 x 128 by default,
AdamW with global-norm clipping, dropout on (train mode). Every step is timed
on its own and the median over all rounds is used (the machines are noisy). Printed: tokens/s of each and their ratio, and the achieved FLOP/s of
each over a matmul peak measured in the same run (the faster of a large jax
and a large torch float32 matmul).

  python bench/bench_bert_step.py                 # the reference configuration
  python bench/bench_bert_step.py --steps 3 --size small   # quick look
  python bench/bench_bert_step.py --fused_ops on   # plm_jax with model.fused_ops on only

--fused_ops both (default): plm_jax runs with model.fused_ops on (the custom VJPs and
barriers of plm_jax/layers/fused.py) and off (plain jax), each in its own process.

Notes on what differs by design: plm_jax runs the MLM output projection only
at the masked positions (max_predictions per example, BERT's 20 for 128
tokens), as the original BERT code does; Hugging Face's BertForPreTraining
projects every token onto the vocabulary and masks the loss afterwards. The
FLOP counts below count what each implementation executes.

The harness (processes, timing, FLOPs, floor) is bench/harness.py, shared with
the other families' bench entries; this file defines BERT's entry. The last line
is a ceiling measured in the same run: every matrix product of
the plm_jax step timed on its own (jax, same threads), summed. The ratio can
not exceed PyTorch's step time over that sum, and 1.5x leaves the rest of the
step (softmax, LayerNorm, GELU, dropout, layout copies, AdamW) the difference.
"""

import functools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # pylint: disable=wrong-import-position

# BERT's uncased WordPiece vocabulary size (the batches are synthetic ids below it).
BERT_UNCASED_VOCAB = 30522


def _config(size):
  from configs import bert  # pylint: disable=import-outside-toplevel
  return bert.get_config(size)


def _objective(config, vocab_size):
  from plm_jax.objectives.bert_pretrain import BertMlmNsp  # pylint: disable=import-outside-toplevel
  return BertMlmNsp(config, vocab_size=vocab_size)


def _hf_model(cfg, vocab_size, seq):
  import transformers  # pylint: disable=import-outside-toplevel
  return transformers.BertForPreTraining(transformers.BertConfig(
      vocab_size=vocab_size, hidden_size=cfg.hidden_size,
      num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
      intermediate_size=cfg.intermediate_size, max_position_embeddings=max(seq, 512),
      hidden_dropout_prob=cfg.hidden_dropout_rate,
      attention_probs_dropout_prob=cfg.attention_dropout_rate))


def _hf_inputs(t):
  return dict(input_ids=t["input_ids"], token_type_ids=t["token_type_ids"],
              attention_mask=t["attention_mask"], labels=t["labels"],
              next_sentence_label=t["next_sentence_label"])


BERT = harness.Family(name="BERT", config=_config, objective=_objective, hf_model=_hf_model,
                      hf_inputs=_hf_inputs, sentence_label="next_sentence_label",
                      vocab_size=BERT_UNCASED_VOCAB, target=1.5)

# The entry points bench_bert_step_accel.py uses.
make_batch = harness.make_batch
jax_setup = functools.partial(harness.jax_setup, BERT)
jax_step = functools.partial(harness.jax_step, BERT)
torch_step = functools.partial(harness.torch_step, BERT)


if __name__ == "__main__":
  sys.exit(harness.main(BERT, description=__doc__.split("\n")[0]))
