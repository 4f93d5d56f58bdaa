"""T5 span corruption on the project's pretraining corpus: Gutenberg books + Wikipedia.

First learn a SentencePiece vocabulary with T5's special pieces (a few minutes on 2 CPU
cores), then train (the `tiny` model):
  python -m plm_jax.data.spm_train --layout=t5 \
      --input='../shared/data/pretrain/wiki/enwiki/*/wiki_*.txt' --reader=wikiextractor \
      --model_prefix=/tmp/spm_t5_wiki --vocab_size=8000
  python main.py --config=configs/t5_books_wiki.py:tiny --workdir=/tmp/t5_books_wiki \
      --config.data.vocab.path=/tmp/spm_t5_wiki.model

Corpus and held-out split as configs/bert_books_wiki.py (every 50th document held out).
"""
import os

from configs import t5
from plm_jax.data import paths


def get_config(arg: str = "tiny"):
  c = t5.get_config(arg)
  pre = os.path.join(paths.data_dir(), "pretrain")
  c.data.corpus.type = "text"
  c.data.corpus.paths = (f"gutenberg={pre}/books/*.txt,"
                         f"wikiextractor={pre}/wiki/enwiki/*/wiki_*")
  c.data.corpus.eval_every_nth = 50
  c.data.vocab.path = ""                 # a .model of plm_jax.data.spm_train --layout=t5
  c.data.update(inputs_length=128, targets_length=30, shuffle_buffer=2000)
  c.train.update(batch_size=32, num_steps=600, log_every=25, eval_every=100, eval_steps=10,
                 checkpoint_every=100)
  c.optimizer.update(learning_rate=0.01, warmup_steps=100)
  return c
