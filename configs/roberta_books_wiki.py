"""RoBERTa MLM on the project's pretraining corpus: Gutenberg books + Wikipedia.

First learn a byte-level BPE from the corpus (about 2 minutes on 2 CPU cores), then train
(600 steps of the `tiny` model, about 10 min on 2 CPU cores):
  python -m plm_jax.data.bpe_train --input='../shared/data/pretrain/wiki/enwiki/*/wiki_*.txt' \
      --reader=wikiextractor --out_dir=/tmp/bpe_wiki --vocab_size=8000
  python main.py --config=configs/roberta_books_wiki.py:tiny --workdir=/tmp/roberta_books_wiki \
      --config.data.vocab.path=/tmp/bpe_wiki/vocab.json
`:small` (H 256, 4 layers, as configs/bert_books_wiki.py:small) runs the same 600 steps.

Corpus and held-out split as configs/bert_books_wiki.py (every 50th document held out).
"""
import os

from configs import roberta
from plm_jax.data import paths


def get_config(arg: str = "tiny"):
  c = roberta.get_config(arg)
  pre = os.path.join(paths.data_dir(), "pretrain")
  c.data.corpus.type = "text"
  c.data.corpus.paths = (f"gutenberg={pre}/books/*.txt,"
                         f"wikiextractor={pre}/wiki/enwiki/*/wiki_*")
  c.data.corpus.eval_every_nth = 50
  c.data.vocab.type = "bpe"
  c.data.vocab.path = ""                 # vocab.json of plm_jax.data.bpe_train (merges.txt beside)
  c.data.update(seq_length=128, shuffle_buffer=2000)
  c.model.max_position_embeddings = 130  # 128 + pad id 1 + 1
  c.mlm.max_predictions = 20
  c.train.update(batch_size=32, num_steps=600, log_every=25, eval_every=100, eval_steps=10,
                 checkpoint_every=100)
  c.optimizer.update(learning_rate=1e-3, warmup_steps=60)
  return c
