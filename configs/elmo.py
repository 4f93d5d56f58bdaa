"""ELMo biLM pretraining (forward + backward LM over a character CNN) configurations.

Run:
  python main.py --config=configs/elmo.py:tiny --workdir=/tmp/elmo_tiny

Sizes: tiny (builtin corpus, a few minutes on CPU), small, and original: the
paper's 2x4096_512_2048cnn_2xhighway model (2 layers of 4096 cells projected
to 512, char CNN filters [1,32] .. [7,1024], 2 highway layers, cell and
projection clipping 3, skip connections) trained as bilm-tf did: windows of 20
tokens, 128 windows per device batch (3 GPUs in the paper), dropout 0.1,
Adagrad lr 0.2 with accumulators at 1.0, gradient norm clipped at 10, sampled
softmax with 8192 candidates over a 793,471-word vocabulary (give its file as
--config.data.vocab_path). Every section's keys and defaults:
plm_jax/objectives/elmo_pretrain.py and plm_jax/train/config.py.
"""
import ml_collections

from plm_jax.objectives.elmo_pretrain import ElmoBiLMObjective
from plm_jax.models.elmo import PAPER_FILTERS

SIZES = {
    "tiny": dict(char_embedding_dim=8, filters=((1, 16), (2, 16), (3, 32), (4, 64)),
                 n_highway=1, lstm_dim=128, projection_dim=64),
    "small": dict(char_embedding_dim=16, filters=((1, 32), (2, 32), (3, 64), (4, 128),
                                                   (5, 256)),
                  n_highway=2, lstm_dim=1024, projection_dim=128),
    "original": dict(char_embedding_dim=16, filters=PAPER_FILTERS, n_highway=2,
                     lstm_dim=4096, projection_dim=512),
}


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
  if arg not in SIZES:
    raise ValueError(f"configs/elmo.py: unknown size {arg!r}; choose one of {sorted(SIZES)}")
  c = ElmoBiLMObjective.default_config()   # every section with its defaults
  c.model.update(SIZES[arg])
  c.model.update(n_layers=2, cell_clip=3.0, proj_clip=3.0, use_skip_connections=True,
                 activation="relu", dropout=0.1)
  c.lm.update(softmax="sampled", num_samples=8192)
  c.data.update(seq_length=20, shuffle_buffer=10_000, vocab_size=793_471)
  c.train.update(batch_size=384, num_steps=250_000, log_every=100, eval_every=10_000,
                 eval_steps=50, checkpoint_every=10_000)
  c.optimizer.update(name="adagrad", learning_rate=0.2, warmup_steps=0, decay="constant",
                     weight_decay=0.0, grad_clip_norm=10.0, eps=1e-7)
  if arg == "tiny":
    c.lm.update(softmax="full")
    c.data.update(vocab_size=2000, vocab_documents=2000, shuffle_buffer=1000)
    c.train.update(batch_size=32, num_steps=600, log_every=50, eval_every=200, eval_steps=20,
                   checkpoint_every=200)
    c.optimizer.update(name="adamw", learning_rate=2e-3, warmup_steps=50, decay="linear",
                       weight_decay=0.0, grad_clip_norm=10.0, eps=1e-6)
  elif arg == "small":
    c.lm.update(num_samples=1024)
    c.data.update(vocab_size=50_000, vocab_documents=20_000)
    c.train.update(batch_size=128, num_steps=20_000, eval_every=1000, checkpoint_every=1000)
  return c
