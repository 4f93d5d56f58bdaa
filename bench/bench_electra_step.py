"""Benchmark: ELECTRA train step (generator MLM + discriminator RTD), plm_jax vs HF PyTorch.

  python bench/bench_electra_step.py --size=small          # ELECTRA-Small, batch 8 x 128
  python bench/bench_electra_step.py --size=tiny --steps=3 --rounds=1 --fused_ops=on   # quick look

Hugging Face has no ELECTRA pretraining model, so the PyTorch side is built here from
ElectraForMaskedLM (the generator, 1/4 of the width) and ElectraForPreTraining (the
discriminator) sharing one embeddings module: generator MLM loss, tokens sampled from its
softmax at the masked positions without gradient, replaced = sample != original, the
discriminator's loss weighted 50 (as plm_jax.objectives.electra_pretrain). The same harness
as BERT's (bench/harness.py: separate pinned processes, medians, matmul peak, GEMM floor);
every other flag is the harness's. Synthetic batches over 30,522 ids, 19 predictions per
128 tokens (ELECTRA's max_predictions).
"""
import os
import sys
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # pylint: disable=wrong-import-position

VOCAB = 30522


def _config(size):
  from configs import electra  # pylint: disable=import-outside-toplevel
  if size == "bert_small":
    raise SystemExit("bench_electra_step.py: bert_small has no generator; pick tiny, small, "
                     "base or large")
  return electra.get_config(size)


def _generator_fraction(cfg) -> float:
  from configs import electra  # pylint: disable=import-outside-toplevel
  for name, row in electra.SIZES.items():
    if name != "bert_small" and row[1] == cfg.hidden_size:
      return row[5]
  raise ValueError(f"no configs/electra.py size has hidden size {cfg.hidden_size}")


def _objective(config, vocab_size):
  from plm_jax.objectives.electra_pretrain import ElectraRtd  # pylint: disable=import-outside-toplevel
  return ElectraRtd(config, vocab_size=vocab_size)


def _plm_configs(cfg, vocab_size):
  from plm_jax.models.electra import ElectraConfig, generator_config  # pylint: disable=import-outside-toplevel
  keys = ("embedding_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
          "max_position_embeddings", "hidden_dropout_rate", "attention_dropout_rate")
  disc = ElectraConfig(vocab_size=vocab_size, **{k: getattr(cfg, k) for k in keys})
  return disc, generator_config(disc, _generator_fraction(cfg))


def _hf_model(cfg, vocab_size, seq):
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  disc, gen = _plm_configs(cfg, vocab_size)

  def hf_config(c):
    return transformers.ElectraConfig(
        vocab_size=vocab_size, embedding_size=c.embedding_size, hidden_size=c.hidden_size,
        num_hidden_layers=c.num_layers, num_attention_heads=c.num_heads,
        intermediate_size=c.intermediate_size,
        max_position_embeddings=max(seq, c.max_position_embeddings),
        hidden_dropout_prob=c.hidden_dropout_rate,
        attention_probs_dropout_prob=c.attention_dropout_rate)

  class ElectraPretraining(torch.nn.Module):
    """Generator + discriminator with one embeddings module; loss = MLM + 50 RTD."""

    def __init__(self):
      super().__init__()
      self.generator = transformers.ElectraForMaskedLM(hf_config(gen))
      self.discriminator = transformers.ElectraForPreTraining(hf_config(disc))
      self.discriminator.electra.embeddings = self.generator.electra.embeddings

    def forward(self, input_ids, token_type_ids, attention_mask, labels):
      g = self.generator(input_ids=input_ids, attention_mask=attention_mask,
                         token_type_ids=token_type_ids, labels=labels)
      masked = labels != -100
      with torch.no_grad():
        sampled = torch.multinomial(torch.softmax(g.logits[masked], -1), 1)[:, 0]
        original = torch.where(masked, labels, input_ids)
        fake = original.clone()
        fake[masked] = sampled
      d = self.discriminator(input_ids=fake, attention_mask=attention_mask,
                             token_type_ids=token_type_ids, labels=(fake != original).long())
      return SimpleNamespace(loss=g.loss + 50.0 * d.loss)

  return ElectraPretraining()


def _gemms(cfg, vocab, batch, seq, preds):
  """Generator encoder + MLM head at `preds` positions, discriminator encoder + its head."""
  disc, gen = _plm_configs(cfg, vocab)
  factorised = lambda c: c.embedding_size if c.embedding_size != c.hidden_size else None
  out = harness.forward_gemms(gen.hidden_size, gen.num_layers, gen.intermediate_size, vocab,
                              batch, seq, preds, gen.num_heads, factorised(gen),
                              sentence_head=False)
  out += harness.forward_gemms(disc.hidden_size, disc.num_layers, disc.intermediate_size, vocab,
                               batch, seq, 0, disc.num_heads, factorised(disc),
                               sentence_head=False)[:-2]          # no MLM head
  h = disc.hidden_size
  return out + [((), batch * seq, h, h, 1), ((), batch * seq, h, 1, 1)]   # RTD head


FAMILY = harness.Family(
    name="ELECTRA", config=_config, objective=_objective, hf_model=_hf_model,
    sentence_label=None, vocab_size=VOCAB, embedding_size=lambda cfg: cfg.embedding_size,
    hf_inputs=lambda t: dict(input_ids=t["input_ids"], token_type_ids=t["token_type_ids"],
                             attention_mask=t["attention_mask"], labels=t["labels"]),
    gemms=_gemms)


if __name__ == "__main__":
  argv = sys.argv[1:]
  if not any(a.startswith("--size=") for a in argv):
    argv = ["--size=small"] + argv
  if not any(a.startswith("--predictions=") for a in argv):
    argv = ["--predictions=19"] + argv
  sys.exit(harness.main(FAMILY, argv, description=__doc__.split("\n")[0]))
