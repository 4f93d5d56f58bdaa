"""ERNIE 1.0 pretraining (BERT's MLM + NSP with knowledge masking) configurations.

Run:
  python main.py --config=configs/ernie.py:tiny --workdir=/tmp/ernie_tiny

Sizes:
  tiny      builtin corpus and vocabulary (English, synthetic), phrases learnt from it
            by PMI, the three stages at steps 0 / 1000 / 2000 of 3000; a few minutes on CPU
  zh_small  H 256, 4 layers, the Chinese comparison size (configs/ernie_zh.py trains it
            on ../shared/data/pretrain/zh)
  base      ERNIE 1.0 as released (Sun et al. 2019; PaddlePaddle/ERNIE ernie_config.json):
            12 layers, H 768, 12 heads, ReLU, 513 positions, a Chinese character vocabulary
            (18,000 tokens released; give yours as --config.data.vocab.path), 512 tokens;
            stages switch at 1/3 and 2/3 of the steps (the paper gives no step counts).
            The optimizer follows BERT's recipe (the paper does not state its own).
Every section's keys and defaults: plm_jax/objectives/ernie_pretrain.py and
plm_jax/train/config.py (--config_help lists them).
"""
import ml_collections

from plm_jax.objectives.ernie_pretrain import ErnieMlmNsp

SIZES = {
    "tiny": dict(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=256),
    "zh_small": dict(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024),
    "base": dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072,
                 hidden_act="relu", max_position_embeddings=513),
}


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
  if arg not in SIZES:
    raise ValueError(f"configs/ernie.py: unknown size {arg!r}; choose one of {sorted(SIZES)}")
  c = ErnieMlmNsp.default_config()        # every section with its defaults
  c.model.update(SIZES[arg])
  c.mlm.update(mask_rate=0.15, mask_token_prob=0.8, random_token_prob=0.1)
  if arg == "base":
    c.data.update(seq_length=512)
    c.mlm.max_predictions = 80
    c.train.update(batch_size=256, num_steps=1_000_000, log_every=100, eval_every=10_000,
                   eval_steps=20, checkpoint_every=10_000)
    c.optimizer.update(name="adamw", learning_rate=1e-4, warmup_steps=10_000,
                       weight_decay=0.01)
    c.ernie.update(phrase_from_step=333_333, entity_from_step=666_667)
    return c
  c.model.max_position_embeddings = 128
  if arg == "tiny":
    c.data.update(seq_length=64, shuffle_buffer=1000)
    c.mlm.max_predictions = 10
    c.train.update(batch_size=32, num_steps=3000, log_every=200, eval_every=1000,
                   eval_steps=10, checkpoint_every=1000)
    c.optimizer.update(learning_rate=1e-3, warmup_steps=200)
    c.ernie.update(phrase_from_step=1000, entity_from_step=2000, learn_phrases_docs=300,
                   phrase_min_count=3, phrase_min_pmi=1.0)
  else:   # zh_small
    c.data.update(seq_length=128)
    c.mlm.max_predictions = 20
    c.train.update(batch_size=32, num_steps=1200, log_every=50, eval_every=200,
                   eval_steps=20, checkpoint_every=200)
    c.optimizer.update(learning_rate=1e-3, warmup_steps=120)
  return c
