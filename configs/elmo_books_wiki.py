"""ELMo biLM on the project's pretraining corpus (Gutenberg books + Wikipedia), evaluated on
WikiText-2 test (raw): forward and backward held-out perplexities.

Run (the `tiny` biLM, 600 steps, about 10 min on 2 CPU cores):
  python main.py --config=configs/elmo_books_wiki.py:tiny --workdir=/tmp/elmo_books_wiki

The word vocabulary (10,000 tokens with <S> </S> <UNK>) is built from 1,000 training
documents spread over the corpus and exported as <workdir>/export/vocab.txt.
"""
import os

from configs import elmo
from plm_jax.data import paths


def get_config(arg: str = "tiny"):
  c = elmo.get_config(arg)
  pre = os.path.join(paths.data_dir(), "pretrain")
  c.data.corpus.type = "text"
  c.data.corpus.paths = (f"gutenberg={pre}/books/*.txt,"
                         f"wikiextractor={pre}/wiki/enwiki/*/wiki_*")
  c.data.corpus.eval_paths = f"wikitext={pre}/wiki/wikitext-2-raw/wiki.test.raw"
  if arg == "tiny":
    c.data.update(vocab_size=10_000, vocab_documents=1000, shuffle_buffer=2000)
    c.train.update(batch_size=32, num_steps=600, log_every=25, eval_every=100, eval_steps=20,
                   checkpoint_every=100)
  return c
