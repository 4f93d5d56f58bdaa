"""ERNIE 1.0 vs BERT masking on Chinese text: ../shared/data/pretrain/zh (four classic novels).

First a character vocabulary and (optionally) the two lexicons, learnt from the corpus:
  python -m plm_jax.data.zh_vocab --input='../shared/data/pretrain/zh/*.txt' \\
      --out=/tmp/zh_vocab.txt --vocab_size=8000
  python -m plm_jax.data.ernie_lexicon --input='../shared/data/pretrain/zh/*.txt' \\
      --phrases_out=/tmp/zh_phrases.txt --entities_out=/tmp/zh_entities.txt
Then the two runs, equal compute (same model, steps, batch and examples; only the
masking differs, `ernie.masking`):
  python main.py --config=configs/ernie_zh.py:small --workdir=/tmp/ernie_zh_knowledge \\
      --config.data.vocab.path=/tmp/zh_vocab.txt \\
      --config.ernie.phrase_lexicon=/tmp/zh_phrases.txt \\
      --config.ernie.entity_lexicon=/tmp/zh_entities.txt
  python main.py --config=configs/ernie_zh.py:small --workdir=/tmp/ernie_zh_bert \\
      --config.data.vocab.path=/tmp/zh_vocab.txt --config.ernie.masking=bert

Sizes: small (configs/ernie.py:zh_small: H 256, 4 layers, 128 tokens, batch 32, 1,200
steps, lr 1e-3; basic-level masking for steps 1-399, phrase-level 400-799, entity-level from
800), tiny (H 64, 2 layers, 64 tokens; a quick check). Documents are the novels'
paragraphs (blank-line separated); 1 in 100 is held out, and evaluation masks it at the
basic level for both runs (ernie.eval_level). Without lexicon files, phrases are learnt
from the first ernie.learn_phrases_docs training documents and the entity stage has no
entities beyond them.
"""
import os

from configs import ernie
from plm_jax.data import paths


def get_config(arg: str = "small"):
  if arg not in ("small", "tiny"):
    raise ValueError(f"configs/ernie_zh.py: unknown size {arg!r}; choose small or tiny")
  c = ernie.get_config("zh_small" if arg == "small" else "tiny")
  c.data.corpus.type = "text"
  c.data.corpus.paths = os.path.join(paths.data_dir(), "pretrain", "zh", "*.txt")
  c.data.corpus.reader = "plain"
  c.data.corpus.eval_every_nth = 100
  c.data.vocab.type = "wordpiece"
  c.data.vocab.path = "/tmp/zh_vocab.txt"   # python -m plm_jax.data.zh_vocab (above)
  c.data.vocab.lowercase = True
  c.ernie.update(masking="knowledge", phrase_from_step=400, entity_from_step=800,
                 learn_phrases_docs=0, eval_level="basic")
  if arg == "tiny":
    c.data.update(seq_length=64, shuffle_buffer=1000)
    c.train.update(batch_size=16, num_steps=300, log_every=10, eval_every=100, eval_steps=5,
                   checkpoint_every=100)
    c.ernie.update(phrase_from_step=100, entity_from_step=200, learn_phrases_docs=500)
  return c
