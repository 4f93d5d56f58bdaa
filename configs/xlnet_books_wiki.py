"""XLNet permutation LM on the project's pretraining corpus: Gutenberg books + Wikipedia.

First learn a SentencePiece model from the corpus, then train (600 steps of the `tiny`
model: H 128, 2 layers, sequence 128 with reuse 64 and memory 96, 21 targets per row):
  python -m plm_jax.data.spm_train --input='../shared/data/pretrain/wiki/enwiki/*/wiki_*.txt' \\
      --reader=wikiextractor --model_prefix=/tmp/spm_wiki --vocab_size=8000
  python main.py --config=configs/xlnet_books_wiki.py:tiny --workdir=/tmp/xlnet_books_wiki \\
      --config.data.vocab.path=/tmp/spm_wiki.model

Corpus and held-out split as configs/bert_books_wiki.py (every 50th document held out).
The SentencePiece model's [SEP] and [CLS] are XLNet's <sep> and <cls>; its word starts
(U+2581) bound the target spans. Evaluation reads held-out rows without memory.
"""
import os

from configs import xlnet
from plm_jax.data import paths


def get_config(arg: str = "tiny"):
  c = xlnet.get_config(arg)
  pre = os.path.join(paths.data_dir(), "pretrain")
  c.data.corpus.type = "text"
  c.data.corpus.paths = (f"gutenberg={pre}/books/*.txt,"
                         f"wikiextractor={pre}/wiki/enwiki/*/wiki_*")
  c.data.corpus.eval_every_nth = 50
  c.data.vocab.type = "sentencepiece"
  c.data.vocab.path = ""                 # <prefix>.model of plm_jax.data.spm_train
  if arg == "tiny":
    c.model.update(hidden_size=128, num_layers=2, num_heads=2, head_dim=64,
                   intermediate_size=512, mem_len=96)
    c.data.update(seq_length=128, reuse_length=64, group_size=16)
    c.train.update(batch_size=16, num_steps=600, log_every=25, eval_every=100, eval_steps=10,
                   checkpoint_every=100)
    c.optimizer.update(learning_rate=1e-3, warmup_steps=60)
  return c
