"""T5 pretraining (span corruption, Adafactor, inverse-square-root schedule) configurations.

Run (a SentencePiece vocabulary with T5's special pieces first; the sentinels
<extra_id_0..99> are added on top of it):
  python -m plm_jax.data.spm_train --layout=t5 --input='../shared/data/pretrain/books/*.txt' \
      --reader=gutenberg --model_prefix=/tmp/spm_t5 --vocab_size=8000
  python main.py --config=configs/t5.py:tiny --workdir=/tmp/t5_tiny \
      --config.data.vocab.path=/tmp/spm_t5.model

Sizes: tiny (the builtin corpus, a few minutes on CPU); small, base, large as T5 v1.0
(Raffel et al. 2020: ReLU, tied output, dropout 0.1); v1_1_small, v1_1_base, v1_1_large
as T5 v1.1 (gated-GELU, untied output, no dropout in pretraining). Recipe (section 3.1):
batches of 128 rows of 512 input tokens (114 targets), 2^19 steps, Adafactor, learning
rate 1/sqrt(max(step, 10^4)) (`rsqrt` decay: 0.01 for 10^4 steps), no weight decay or
gradient-norm clipping (Adafactor clips updates). Every key: plm_jax/objectives/
t5_pretrain.py and plm_jax/train/config.py.
"""
import ml_collections

from plm_jax.objectives.t5_pretrain import T5SpanCorruption

V10 = dict(feed_forward_proj="relu", tie_word_embeddings=True, dropout_rate=0.1)
V11 = dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.0)
SIZES = {
    "tiny": dict(V11, hidden_size=64, head_dim=16, num_heads=4, intermediate_size=128,
                 num_layers=2, num_decoder_layers=2),
    "small": dict(V10, hidden_size=512, head_dim=64, num_heads=8, intermediate_size=2048,
                  num_layers=6, num_decoder_layers=6),
    "base": dict(V10, hidden_size=768, head_dim=64, num_heads=12, intermediate_size=3072,
                 num_layers=12, num_decoder_layers=12),
    "large": dict(V10, hidden_size=1024, head_dim=64, num_heads=16, intermediate_size=4096,
                  num_layers=24, num_decoder_layers=24),
    "v1_1_small": dict(V11, hidden_size=512, head_dim=64, num_heads=6, intermediate_size=1024,
                       num_layers=8, num_decoder_layers=8),
    "v1_1_base": dict(V11, hidden_size=768, head_dim=64, num_heads=12, intermediate_size=2048,
                      num_layers=12, num_decoder_layers=12),
    "v1_1_large": dict(V11, hidden_size=1024, head_dim=64, num_heads=16,
                       intermediate_size=2816, num_layers=24, num_decoder_layers=24),
}


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
  if arg not in SIZES:
    raise ValueError(f"configs/t5.py: unknown size {arg!r}; choose one of {sorted(SIZES)}")
  c = T5SpanCorruption.default_config()
  c.model.update(SIZES[arg])
  c.data.update(inputs_length=512, targets_length=114, noise_density=0.15,
                mean_noise_span_length=3.0, pack=True, extra_ids=100)
  c.data.vocab.type = "sentencepiece"
  c.train.update(batch_size=128, num_steps=2 ** 19, log_every=100, eval_every=10_000,
                 eval_steps=20, checkpoint_every=10_000)
  c.optimizer.update(name="adafactor", learning_rate=0.01, warmup_steps=10_000,
                     decay="rsqrt", weight_decay=0.0, grad_clip_norm=0.0)
  if arg == "tiny":
    c.data.update(inputs_length=64, targets_length=16, shuffle_buffer=1000)
    c.train.update(batch_size=32, num_steps=2000, log_every=100, eval_every=500,
                   eval_steps=10, checkpoint_every=500)
    c.optimizer.update(warmup_steps=200)
  return c
