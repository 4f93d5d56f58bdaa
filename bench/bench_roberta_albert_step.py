"""Benchmark: RoBERTa (MLM) and ALBERT (MLM + SOP) train steps, plm_jax vs Hugging Face PyTorch.

  python bench/bench_roberta_albert_step.py --family=roberta     # RoBERTa-base vs RobertaForMaskedLM
  python bench/bench_roberta_albert_step.py --family=albert      # ALBERT-base vs AlbertForPreTraining
  python bench/bench_roberta_albert_step.py --family=albert --size=tiny --steps=3   # quick look

The same harness as BERT's (bench/harness.py: separate pinned processes, medians, matmul
peak, GEMM floor); every other flag is the harness's (--batch, --seq, --steps, --rounds,
--fused_ops ...). Synthetic batches over RoBERTa's 50,265 and ALBERT's 30,000 ids.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # pylint: disable=wrong-import-position


def _roberta_config(size):
  from configs import roberta  # pylint: disable=import-outside-toplevel
  return roberta.get_config(size)


def _roberta_objective(config, vocab_size):
  from plm_jax.objectives.roberta_pretrain import RobertaMlm  # pylint: disable=import-outside-toplevel
  return RobertaMlm(config, vocab_size=vocab_size, pad_token_id=1)


def _roberta_hf(cfg, vocab_size, seq):
  import transformers  # pylint: disable=import-outside-toplevel
  return transformers.RobertaForMaskedLM(transformers.RobertaConfig(
      vocab_size=vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
      num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
      max_position_embeddings=max(seq + 2, cfg.max_position_embeddings), type_vocab_size=1,
      layer_norm_eps=cfg.layer_norm_eps, pad_token_id=1,
      hidden_dropout_prob=cfg.hidden_dropout_rate,
      attention_probs_dropout_prob=cfg.attention_dropout_rate))


def _albert_config(size):
  from configs import albert  # pylint: disable=import-outside-toplevel
  return albert.get_config(size)


def _albert_objective(config, vocab_size):
  from plm_jax.objectives.albert_pretrain import AlbertMlmSop  # pylint: disable=import-outside-toplevel
  return AlbertMlmSop(config, vocab_size=vocab_size)


def _albert_hf(cfg, vocab_size, seq):
  import transformers  # pylint: disable=import-outside-toplevel
  return transformers.AlbertForPreTraining(transformers.AlbertConfig(
      vocab_size=vocab_size, embedding_size=cfg.embedding_size, hidden_size=cfg.hidden_size,
      num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
      intermediate_size=cfg.intermediate_size, num_hidden_groups=cfg.num_hidden_groups,
      inner_group_num=cfg.inner_group_num, hidden_act="gelu_new",
      max_position_embeddings=max(seq, cfg.max_position_embeddings),
      hidden_dropout_prob=cfg.hidden_dropout_rate,
      attention_probs_dropout_prob=cfg.attention_dropout_rate,
      classifier_dropout_prob=cfg.classifier_dropout_rate))


FAMILIES = {
    "roberta": harness.Family(
        name="RoBERTa", config=_roberta_config, objective=_roberta_objective,
        hf_model=_roberta_hf, sentence_label=None, vocab_size=50265, pad_id=1, token_types=False,
        hf_inputs=lambda t: dict(input_ids=t["input_ids"], attention_mask=t["attention_mask"],
                                 labels=t["labels"])),
    "albert": harness.Family(
        name="ALBERT", config=_albert_config, objective=_albert_objective, hf_model=_albert_hf,
        sentence_label="sentence_order_label", vocab_size=30000,
        embedding_size=lambda cfg: cfg.embedding_size,
        hf_inputs=lambda t: dict(input_ids=t["input_ids"], token_type_ids=t["token_type_ids"],
                                 attention_mask=t["attention_mask"], labels=t["labels"],
                                 sentence_order_label=t["sentence_order_label"])),
}


if __name__ == "__main__":
  family = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--family=")), "")
  if family not in FAMILIES:
    sys.exit("bench_roberta_albert_step.py: give --family=roberta or --family=albert")
  argv = [a for a in sys.argv[1:] if not a.startswith("--family=")]
  sys.exit(harness.main(FAMILIES[family], argv, description=__doc__.split("\n")[0],
                        worker_args=[f"--family={family}"]))
