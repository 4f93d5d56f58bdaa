"""ALBERT pretraining (n-gram MLM + sentence-order prediction) configurations.

Run:
  python main.py --config=configs/albert.py:tiny --workdir=/tmp/albert_tiny

Sizes: tiny (builtin corpus and vocabulary), base, large, xlarge and xxlarge as
in Lan et al. 2020 (Table 1: E = 128, all layers shared; section 4.1: 4096
sequences of 512 tokens, LAMB with lr 0.00176, 125K steps, n-gram masking n <= 3,
SentencePiece vocabulary of 30K). Point --config.data.vocab.path at a
SentencePiece model (python -m plm_jax.data.spm_train ...). Every section's
keys and defaults: plm_jax/objectives/albert_pretrain.py, plm_jax/train/config.py.
"""
import ml_collections

from plm_jax.objectives.albert_pretrain import AlbertMlmSop

SIZES = {
    "tiny": dict(embedding_size=32, hidden_size=64, num_layers=4, num_heads=2,
                 intermediate_size=256),
    "base": dict(embedding_size=128, hidden_size=768, num_layers=12, num_heads=12,
                 intermediate_size=3072),
    "large": dict(embedding_size=128, hidden_size=1024, num_layers=24, num_heads=16,
                  intermediate_size=4096),
    "xlarge": dict(embedding_size=128, hidden_size=2048, num_layers=24, num_heads=16,
                   intermediate_size=8192),
    "xxlarge": dict(embedding_size=128, hidden_size=4096, num_layers=12, num_heads=64,
                    intermediate_size=16384),
}


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
  if arg not in SIZES:
    raise ValueError(f"configs/albert.py: unknown size {arg!r}; choose one of {sorted(SIZES)}")
  c = AlbertMlmSop.default_config()      # every section with its defaults
  c.model.update(SIZES[arg])
  c.model.update(share_mode="all", num_hidden_groups=1, inner_group_num=1,
                 hidden_act="gelu_tanh", max_position_embeddings=512,
                 hidden_dropout_rate=0.0, attention_dropout_rate=0.0)
  c.mlm.update(mask_rate=0.15, max_predictions=20, max_ngram=3, sop=True)
  c.data.update(seq_length=512)
  c.data.vocab.type = "sentencepiece"
  c.train.update(batch_size=4096, num_steps=125_000, log_every=100, eval_every=10_000,
                 eval_steps=20, checkpoint_every=10_000)
  c.optimizer.update(name="lamb", learning_rate=0.00176, warmup_steps=3125, decay="linear",
                     weight_decay=0.01, b1=0.9, b2=0.999, eps=1e-6, grad_clip_norm=1.0)
  if arg == "tiny":
    c.model.max_position_embeddings = 128
    c.data.update(seq_length=64, shuffle_buffer=1000)
    c.data.vocab.type = "builtin"
    c.mlm.max_predictions = 10
    c.train.update(batch_size=32, num_steps=3000, log_every=200, eval_every=1000,
                   eval_steps=10, checkpoint_every=1000)
    c.optimizer.update(learning_rate=1e-2, warmup_steps=200)   # LAMB: a relative step size
  return c
