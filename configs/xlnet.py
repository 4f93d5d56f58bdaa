"""XLNet permutation-LM pretraining configurations (Yang et al. 2019).

Run:
  python main.py --config=configs/xlnet.py:tiny --workdir=/tmp/xlnet_tiny

Sizes:
  tiny   builtin corpus and vocabulary: H 64, 2 layers, 2 heads, sequence 64 (reuse 32,
         memory 48, 11 targets), a few minutes on CPU
  base   XLNet-Base: 12 layers, 768 wide, 12 heads of 64, FFN 3072 (BERT-Base's shape)
  large  XLNet-Large (paper Table 7 / the released train_tpu.py flags): 24 layers, 1024
         wide, 16 heads of 64, FFN 4096; sequence 512, reuse 256, memory 384, 85 targets
         (K = 6), bi_data, batch 8192, 500K steps, Adam lr 4e-4 (eps 1e-6), 40K warmup
         then linear decay, weight decay 0.01, gradient clipping 1.0, dropout 0.1
base and large read a SentencePiece model (--config.data.vocab.path; learn one with
plm_jax.data.spm_train, see configs/xlnet_books_wiki.py). The keys and defaults of every
section: plm_jax/objectives/xlnet_pretrain.py and plm_jax/train/config.py.
"""
import ml_collections

from plm_jax.objectives.xlnet_pretrain import XlnetPermutationLm

SIZES = {"base": dict(hidden_size=768, num_layers=12, num_heads=12, head_dim=64,
                      intermediate_size=3072),
         "large": dict(hidden_size=1024, num_layers=24, num_heads=16, head_dim=64,
                       intermediate_size=4096)}


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
  if arg not in ("tiny",) + tuple(SIZES):
    raise ValueError(f"configs/xlnet.py: unknown size {arg!r}; choose one of "
                     f"{['tiny'] + list(SIZES)}")
  c = XlnetPermutationLm.default_config()
  c.optimizer.update(name="adamw", learning_rate=4e-4, warmup_steps=40_000, decay="linear",
                     weight_decay=0.01, b1=0.9, b2=0.999, eps=1e-6, grad_clip_norm=1.0)
  if arg in SIZES:
    c.model.update(SIZES[arg], mem_len=384, bi_data=True)
    c.data.update(seq_length=512, reuse_length=256, num_predict=85, bi_data=True)
    c.data.vocab.type = "sentencepiece"
    c.train.update(batch_size=8192 if arg == "large" else 256, num_steps=500_000)
  else:   # tiny
    c.model.update(hidden_size=64, num_layers=2, num_heads=2, head_dim=32,
                   intermediate_size=256, mem_len=48)
    c.data.update(seq_length=64, reuse_length=32, group_size=64)
    c.data.vocab.type = "builtin"
    c.train.update(batch_size=8, num_steps=300, log_every=20, eval_every=150, eval_steps=10,
                   checkpoint_every=150)
    c.optimizer.update(learning_rate=1e-3, warmup_steps=30)
  return c
