"""GPT-1 and GPT-2 causal LM pretraining configurations.

Run:
  python main.py --config=configs/gpt.py:tiny --workdir=/tmp/gpt_tiny

Sizes: tiny (GPT-2 shape, builtin corpus and vocabulary, a few minutes on CPU);
gpt1 (Radford et al. 2018: 12 post-LN layers, 768 wide, 12 heads, 3072 inner, 512
positions; Adam, lr 2.5e-4 warmed up over 2,000 steps then cosine to 0, batch 64 x 512,
dropout 0.1, weight decay 0.01, 100 epochs of BooksCorpus); small / medium / large / xl
(GPT-2 124M / 355M / 774M / 1.5B, Radford et al. 2019 Table 2: 12 / 24 / 36 / 48 pre-LN
layers of width 768 / 1024 / 1280 / 1600, 1,024 positions, batch 512; the paper tunes the
learning rate per size and does not list it: 2.5e-4 here). A byte-level BPE vocab.json
(merges.txt beside it) goes in --config.data.vocab.path for every size but tiny.
Every section's keys and defaults: plm_jax/objectives/gpt_lm.py and plm_jax/train/config.py.
"""
import ml_collections

from plm_jax.objectives.gpt_lm import GptCausalLm

GPT2_SIZES = {
    "small": dict(hidden_size=768, num_layers=12, num_heads=12),
    "medium": dict(hidden_size=1024, num_layers=24, num_heads=16),
    "large": dict(hidden_size=1280, num_layers=36, num_heads=20),
    "xl": dict(hidden_size=1600, num_layers=48, num_heads=25),
}
SIZES = ("tiny", "gpt1") + tuple(GPT2_SIZES)


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
  if arg not in SIZES:
    raise ValueError(f"configs/gpt.py: unknown size {arg!r}; choose one of {list(SIZES)}")
  c = GptCausalLm.default_config()       # every section with its defaults (GPT-2 small)
  c.data.vocab.type = "bpe"
  c.optimizer.update(name="adamw", learning_rate=2.5e-4, warmup_steps=2000, decay="cosine",
                     weight_decay=0.01, b1=0.9, b2=0.999, eps=1e-8, grad_clip_norm=1.0)
  if arg == "gpt1":
    c.model.update(architecture="openai-gpt", norm_position="post", scale_residual_init=False,
                   max_position_embeddings=512, hidden_size=768, num_layers=12, num_heads=12,
                   intermediate_size=3072)
    c.data.seq_length = 512
    c.train.update(batch_size=64, num_steps=1_000_000)
  elif arg in GPT2_SIZES:
    size = GPT2_SIZES[arg]
    c.model.update(size, intermediate_size=4 * size["hidden_size"], max_position_embeddings=1024)
    c.data.seq_length = 1024
    c.train.update(batch_size=512, num_steps=1_000_000)
  else:   # tiny
    c.model.update(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256,
                   max_position_embeddings=64)
    c.data.update(seq_length=64, shuffle_buffer=1000, group_size=16)
    c.data.vocab.type = "builtin"
    c.train.update(batch_size=16, num_steps=300, log_every=50, eval_every=150, eval_steps=10,
                   checkpoint_every=150)
    c.optimizer.update(learning_rate=1e-3, warmup_steps=30)
  return c
