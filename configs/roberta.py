"""RoBERTa pretraining (dynamic MLM on FULL-SENTENCES, no NSP) configurations.

Run:
  python main.py --config=configs/roberta.py:tiny --workdir=/tmp/roberta_tiny

Sizes: tiny (builtin corpus and vocabulary, a few minutes on CPU); small (configs/bert.py's
small: H 256, 4 layers; used by configs/roberta_books_wiki.py); base and
large as in Liu et al. 2019 (Table 9: 8K sequences of 512 tokens, Adam
beta2 0.98, eps 1e-6, weight decay 0.01, peak lr 6e-4 / 4e-4, warmup 24K / 30K,
500K steps) with the byte-level BPE of plm_jax.data.bpe: give its vocab.json
(merges.txt beside it) as --config.data.vocab.path. Every section's keys and
defaults: plm_jax/objectives/roberta_pretrain.py and plm_jax/train/config.py.
"""
import ml_collections

from plm_jax.objectives.roberta_pretrain import RobertaMlm

SIZES = {
    "tiny": dict(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256),
    "small": dict(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024),  # BERT's small
    "base": dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072),
    "large": dict(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096),
}


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
  if arg not in SIZES:
    raise ValueError(f"configs/roberta.py: unknown size {arg!r}; choose one of {sorted(SIZES)}")
  c = RobertaMlm.default_config()        # every section with its defaults
  c.model.update(SIZES[arg])
  c.model.max_position_embeddings = 514  # 512 tokens + the padding id + 1 (HF/fairseq positions)
  c.model.type_vocab_size = 1
  c.model.layer_norm_eps = 1e-5
  c.mlm.update(mask_rate=0.15, mask_token_prob=0.8, random_token_prob=0.1, max_predictions=80)
  c.data.update(seq_length=512, packing="full_sentences", group_size=16)
  c.data.vocab.type = "bpe"
  c.train.update(batch_size=8192, num_steps=500_000, log_every=100, eval_every=10_000,
                 eval_steps=20, checkpoint_every=10_000)
  c.optimizer.update(name="adamw", learning_rate=6e-4 if arg == "base" else 4e-4,
                     warmup_steps=24_000 if arg == "base" else 30_000, decay="linear",
                     weight_decay=0.01, b1=0.9, b2=0.98, eps=1e-6, grad_clip_norm=0.0)
  if arg == "tiny":
    c.model.max_position_embeddings = 130
    c.data.update(seq_length=64, shuffle_buffer=1000)
    c.data.vocab.type = "builtin"
    c.mlm.max_predictions = 10
    c.train.update(batch_size=32, num_steps=3000, log_every=200, eval_every=1000,
                   eval_steps=10, checkpoint_every=1000)
    c.optimizer.update(learning_rate=1e-3, warmup_steps=200)
  return c
