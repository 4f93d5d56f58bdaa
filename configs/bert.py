r"""BERT pretraining (MLM + NSP) configurations.

Run:
  python main.py --config=configs/bert.py:tiny --workdir=/tmp/bert_tiny
  python main.py --config=configs/bert.py:base --workdir=/tmp/bert_base \
      --config.train.batch_size=8 --config.train.num_steps=100

The argument after ':' picks a size: tiny, small, base, large (base and large
as in Devlin et al. 2019, Table/section 3). Any field can be overridden on the
command line, e.g. --config.train.num_steps=100; `python main.py
--config=configs/bert.py:base --config_help` lists every key with its value and
comment. Other corpora: --config.data.corpus.type=text with corpus.paths and
corpus.reader, or type=tfds with corpus.tfds_name (e.g. wikipedia/20230601.en,
which needs internet or a prepared tfds_data_dir).
"""
import ml_collections

# (hidden, layers, heads, intermediate) per size. base/large follow the BERT paper.
SIZES = {
    "tiny": dict(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256),
    "small": dict(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024),
    "base": dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072),
    "large": dict(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=4096),
}


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
  if arg not in SIZES:
    raise ValueError(f"configs/bert.py: unknown size {arg!r}; choose one of {sorted(SIZES)}")
  c = ml_collections.ConfigDict()
  c.objective = "bert_mlm_nsp"           # objective (registry key in plm_jax.objectives); owns
                                         # the model / mlm / data sections and their defaults
  c.seed = 0                             # one seed for init, dropout and data order/masking

  # ---- model: fields of plm_jax.models.bert.BertConfig -----------------------------
  m = c.model = ml_collections.ConfigDict()
  m.hidden_size = SIZES[arg]["hidden_size"]               # H: width of every layer
  m.num_layers = SIZES[arg]["num_layers"]                 # L: Transformer layers
  m.num_heads = SIZES[arg]["num_heads"]                   # A: attention heads (divides H)
  m.intermediate_size = SIZES[arg]["intermediate_size"]   # feed-forward width (4H in BERT)
  m.hidden_act = "gelu"                  # exact (erf) GELU as in BERT; "gelu_tanh" for the approximation
  m.max_position_embeddings = 512       # longest input the position table holds
  m.type_vocab_size = 2                  # token types (segments A and B)
  m.layer_norm_eps = 1e-12               # LayerNorm epsilon
  m.hidden_dropout_rate = 0.1            # dropout on embeddings and sublayer outputs
  m.attention_dropout_rate = 0.1         # dropout on attention probabilities
  m.initializer_range = 0.02             # stddev of the truncated-normal weight init
  m.dtype = "float32"                    # compute dtype: float32 or bfloat16 (params stay float32)
  m.scan_layers = False                  # nn.scan over the layer stack (flat compile time in depth)
  m.remat_policy = "none"                # none | full | dots_saveable | dots_with_no_batch_dims_saveable
  m.fused_ops = True                     # CPU custom VJPs + gradient barriers (plm_jax/layers/fused.py)
  m.check_inputs = False                 # True: out-of-range ids / token types raise (id and position)

  # ---- objective: MLM + NSP -----------------------------------------------------------
  o = c.mlm = ml_collections.ConfigDict()
  o.mask_rate = 0.15                     # fraction of (non-special) tokens chosen for prediction
  o.mask_token_prob = 0.8                # of the chosen: replaced with [MASK]
  o.random_token_prob = 0.1              # of the chosen: replaced with a random token (rest kept)
  o.max_predictions = 20                 # fixed size of the masked-position list (BERT: 20 for 128 tokens)
  o.whole_word_masking = False           # mask all wordpieces of a word together
  o.nsp = True                           # next-sentence prediction (50% actual next, 50% random)
  o.short_seq_prob = 0.1                 # BERT: chance of a shorter target length

  # ---- data ---------------------------------------------------------------------------
  d = c.data = ml_collections.ConfigDict()
  d.seq_length = 128                     # tokens per example, [CLS] A [SEP] B [SEP]
  d.shuffle_buffer = 10_000              # example-level shuffle buffer (0 disables)
  d.group_size = 16                      # documents grouped to draw NSP random segments from
  d.corpus = ml_collections.ConfigDict()
  d.corpus.type = "builtin"              # builtin | text | tfds
  d.corpus.paths = ""                    # text: comma-separated globs
  d.corpus.reader = "plain"              # text: plain | gutenberg | wikiextractor | wikitext
  d.corpus.doc_separator = "blank_line"  # plain reader: blank_line | line
  d.corpus.eval_paths = ""               # text: held-out globs; empty -> every eval_every_nth doc held out
  d.corpus.eval_every_nth = 100          # hold out 1 of every N documents when eval_paths is empty
  d.corpus.max_sentences_per_doc = 256   # long documents (books) are cut into pieces of this many sentences
  d.corpus.on_bad_file = "error"         # text: a binary/undecodable file stops the run; "skip": skip it, counted
  d.corpus.tfds_name = ""                # tfds: e.g. wikipedia/20230601.en
  d.corpus.tfds_text_key = "text"       # tfds: the feature holding the text
  d.corpus.tfds_train_split = "train[:99%]"   # tfds: training split (TFDS slicing syntax)
  d.corpus.tfds_eval_split = "train[99%:]"    # tfds: held-out split
  d.corpus.tfds_data_dir = ""            # tfds: where prepared datasets live ('': TFDS default)
  d.vocab = ml_collections.ConfigDict()
  d.vocab.type = "auto"                  # auto (from path: *.model sentencepiece, *.txt
                                         # wordpiece; empty path: builtin) | builtin | wordpiece | sentencepiece
  d.vocab.path = ""                      # wordpiece: vocab.txt; sentencepiece: .model
  d.vocab.lowercase = True               # wordpiece: uncased (True) or cased (False)

  # ---- training -----------------------------------------------------------------------
  t = c.train = ml_collections.ConfigDict()
  t.batch_size = 256                     # global batch (examples per optimizer step)
  t.grad_accum_steps = 1                 # micro-batches per step; batch_size must divide evenly
  t.num_steps = 1_000_000                # optimizer steps in all (a rerun resumes up to this)
  t.log_every = 100                      # console + TensorBoard scalars
  t.eval_every = 10_000                  # 0: evaluate only at the end; -1: never
  t.eval_steps = 20                      # eval batches per evaluation (0: the whole eval set)
  t.checkpoint_every = 10_000            # steps between checkpoints (and one at the end)
  t.keep_checkpoints = 3                 # last N checkpoints kept
  t.params_export = True                 # also write params-only export at the end (workdir/export)
  t.num_epochs = 0.0                     # > 0: num_steps from epochs (fine-tuning; not a corpus)
  t.best_metric = ""                     # eval metric whose best params go to workdir/best
  t.best_mode = "max"                    # max | min: which direction of best_metric is better
  t.allow_fresh_start = False            # True: start over in a workdir whose checkpoints are all unreadable
  t.data_shards = 0                      # logical shards of the train stream (0: one per host);
                                         # fixed, the batches are the same on any host count dividing it

  opt = c.optimizer = ml_collections.ConfigDict()
  opt.name = "adamw"                     # adamw | lamb
  opt.learning_rate = 1e-4               # peak learning rate, reached after warmup
  opt.warmup_steps = 10_000              # linear warmup from 0
  opt.warmup_ratio = 0.0                 # > 0 (instead of warmup_steps): share of num_steps
  opt.decay = "linear"                   # linear | cosine | constant (after warmup)
  opt.end_learning_rate = 0.0            # learning rate at the last step
  opt.weight_decay = 0.01                # not applied to biases and LayerNorm parameters
  opt.b1 = 0.9                           # Adam beta1
  opt.b2 = 0.999                         # Adam beta2
  opt.eps = 1e-6                         # Adam epsilon
  opt.grad_clip_norm = 1.0               # global-norm clipping; 0 disables
  opt.layer_decay = 1.0                  # layer-wise lr decay (fine-tuning objectives); 1: off

  mesh = c.mesh = ml_collections.ConfigDict()
  mesh.shape = (-1, 1, 1)                # (data, fsdp, tensor); -1 takes the remaining devices
  mesh.axis_names = ("data", "fsdp", "tensor")   # fixed names of the three mesh axes
  # Logical axis name -> mesh axes (None = replicated); plm_jax/sharding.py. A dim
  # that does not divide evenly over its mesh axes is replicated instead.
  mesh.rules = (
      ("activation_batch", ("data", "fsdp")),
      ("activation_length", None),
      ("activation_embed", None),
      ("activation_mlp", "tensor"),
      ("activation_heads", "tensor"),
      ("activation_kv", None),
      ("embed", "fsdp"),
      ("vocab", "tensor"),
      ("heads", "tensor"),
      ("mlp", "tensor"),
      ("kv", None),
      ("position", None),
      ("type_vocab", None),
      ("layers", None),
  )
  # Also apply the model's logical activation constraints (trace under the mesh,
  # trainer.mesh_context); every kernel is created at its full logical shape.
  mesh.activation_constraints = True

  if arg == "tiny":
    m.max_position_embeddings = 128
    d.seq_length = 64
    o.max_predictions = 10
    # `python main.py` default: about 2.5-3 min on 2 CPU cores.
    t.batch_size = 32
    t.num_steps = 3000
    t.log_every = 200
    t.eval_every = 1000
    t.eval_steps = 10
    t.checkpoint_every = 1000
    opt.learning_rate = 1e-3
    opt.warmup_steps = 200
  elif arg == "small":
    d.seq_length = 128
    t.batch_size = 64
    t.num_steps = 20_000
    t.log_every = 50
    t.eval_every = 500
    t.checkpoint_every = 1000
    opt.learning_rate = 5e-4
    opt.warmup_steps = 500
  return c
