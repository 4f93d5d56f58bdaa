"""GPT-2 (tiny) causal LM on the project's pretraining corpus: Gutenberg books + Wikipedia,
evaluated on WikiText-2 raw test.

First learn a byte-level BPE from the corpus (about 2 minutes on 2 CPU cores), then train:
  python -m plm_jax.data.bpe_train --input='../shared/data/pretrain/wiki/enwiki/*/wiki_*.txt' \
      --reader=wikiextractor --out_dir=/tmp/bpe_wiki --vocab_size=8000
  python main.py --config=configs/gpt_books_wiki.py:tiny --workdir=/tmp/gpt_books_wiki \
      --config.data.vocab.path=/tmp/bpe_wiki/vocab.json

Held out: WikiText-2's raw test file (pretrain/wiki/wikitext-2-raw/wiki.test.raw, read
article by article), never trained on. Its own tokenisation (' @-@ ', spaces before
punctuation and clitics, padded quotes) is undone first, as the GPT-2 paper scored WikiText
(reader `wikitext_detok`, plm_jax.data.corpora.detokenize_wikitext; `wikitext=` in
--config.data.corpus.eval_paths scores the text as it is). The text is tokenised with the
learnt BPE, each article starting with </s> (the vocabulary's end-of-text token);
`eval/perplexity` is exp of the mean next-token NLL per BPE token over the rows scored
(eval_steps batches spread over every article). The sliding-window perplexity of the whole
file, beside an add-one unigram fitted on the file itself: plm_jax.objectives.gpt_perplexity
with --detokenize (the command is in README.md's GPT section).
"""
import os

from configs import gpt
from plm_jax.data import paths


def get_config(arg: str = "tiny"):
  c = gpt.get_config(arg)
  pre = os.path.join(paths.data_dir(), "pretrain")
  c.data.corpus.type = "text"
  c.data.corpus.paths = (f"gutenberg={pre}/books/*.txt,"
                         f"wikiextractor={pre}/wiki/enwiki/*/wiki_*")
  c.data.corpus.eval_paths = f"wikitext_detok={pre}/wiki/wikitext-2-raw/wiki.test.raw"
  c.data.vocab.type = "bpe"
  c.data.vocab.path = ""                 # vocab.json of plm_jax.data.bpe_train (merges.txt beside)
  if arg == "tiny":
    c.model.update(hidden_size=128, num_layers=2, num_heads=2, intermediate_size=512,
                   max_position_embeddings=128)
    c.data.update(seq_length=128, shuffle_buffer=2000, group_size=16)
    c.train.update(batch_size=16, num_steps=600, log_every=25, eval_every=100, eval_steps=40,
                   checkpoint_every=100)
    c.optimizer.update(learning_rate=2e-3, warmup_steps=60, decay="cosine")
  return c
