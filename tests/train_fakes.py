"""A tiny stand-in Objective for trainer tests (not registered in the package).

A one-layer model with logically-named parameters and a classification loss
over fixed-shape token batches; its data stream is deterministic given
(seed, shard), like the real pipelines.
"""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorflow as tf

from plm_jax.objectives import base

VOCAB, LENGTH = 64, 16


@dataclasses.dataclass(frozen=True)
class FakeModelConfig:
  """What the fake family's export records."""
  vocab_size: int = VOCAB
  hidden: int = 32


class _TinyModel(nn.Module):
  hidden: int = 32

  @nn.compact
  def __call__(self, ids):                                   # [B, L]
    emb = self.param("embedding", nn.with_logical_partitioning(
        nn.initializers.normal(0.02), ("vocab", "embed")), (VOCAB, self.hidden))
    x = jnp.take(emb, ids, axis=0)                            # [B, L, H]
    x = nn.Dense(4 * self.hidden, kernel_init=nn.with_logical_partitioning(
        nn.initializers.normal(0.02), ("embed", "mlp")), name="up")(x)
    x = nn.gelu(x)
    x = nn.Dense(self.hidden, kernel_init=nn.with_logical_partitioning(
        nn.initializers.normal(0.02), ("mlp", "embed")), name="down")(x)
    return x @ emb.T                                          # [B, L, V]


@base.register("fake_tiny_lm")
class FakeObjective(base.Objective):
  family = "fake"

  def make_model(self):
    return _TinyModel()

  def model_config(self):
    return FakeModelConfig()

  def batch_spec(self, batch_size):
    return {"ids": jax.ShapeDtypeStruct((batch_size, LENGTH), jnp.int32),
            "weights": jax.ShapeDtypeStruct((batch_size, LENGTH), jnp.float32)}

  def init_params(self, rng):
    return self.make_model().init(rng, jnp.zeros((1, LENGTH), jnp.int32))["params"]

  def loss_fn(self, params, batch, rng, deterministic):
    logits = self.make_model().apply({"params": params}, batch["ids"])
    logp = jax.nn.log_softmax(logits.astype(jnp.float32))
    target = jnp.roll(batch["ids"], -1, axis=1)
    nll = -jnp.take_along_axis(logp, target[..., None], axis=-1)[..., 0]
    w = batch["weights"] * base.example_weights(batch)[:, None]
    correct = (jnp.argmax(logits, -1) == target).astype(jnp.float32)
    loss = jnp.sum(nll * w) / jnp.maximum(jnp.sum(w), 1e-8)
    return loss, {"loss": (jnp.sum(nll * w), jnp.sum(w)),
                  "accuracy": (jnp.sum(correct * w), jnp.sum(w))}

  def get_dataset(self, split, batch_size, seed, shard_index=0, num_shards=1, num_epochs=None):
    rs = np.random.RandomState(seed + (0 if split == "train" else 1000))
    n = 64 * batch_size
    ids = rs.randint(0, VOCAB, size=(n, LENGTH)).astype(np.int32)
    weights = (rs.rand(n, LENGTH) < 0.7).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices({"ids": ids, "weights": weights})
    ds = ds.shard(num_shards, shard_index).repeat(num_epochs)
    ds = ds.batch(batch_size, drop_remainder=split == "train")
    return ds


def fake_config(**train) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.objective = "fake_tiny_lm"
  c.seed = 0
  c.train = ml_collections.ConfigDict(dict(
      batch_size=8, grad_accum_steps=1, num_steps=6, log_every=2, eval_every=-1, eval_steps=1,
      checkpoint_every=3, keep_checkpoints=3, params_export=True))
  c.train.update(train)
  c.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", learning_rate=1e-2, warmup_steps=2, decay="linear", end_learning_rate=0.0,
      weight_decay=0.01, b1=0.9, b2=0.999, eps=1e-6, grad_clip_norm=1.0))
  c.mesh = ml_collections.ConfigDict(dict(
      shape=(-1, 1, 1), axis_names=("data", "fsdp", "tensor"),
      rules=(("activation_batch", ("data", "fsdp")), ("embed", "fsdp"), ("vocab", "tensor"),
             ("mlp", "tensor"))))
  return c


# ---- tiny BERT on synthetic batches (no data pipeline needed) -------------------------

from configs import bert as bert_configs  # noqa: E402
from plm_jax.objectives.bert_pretrain import BertMlmNsp  # noqa: E402

BERT_VOCAB = 96


class FixedVocabBert(BertMlmNsp):
  """BertMlmNsp with a fixed vocabulary size instead of the data pipeline's."""

  def __init__(self, config):
    super().__init__(config, vocab_size=BERT_VOCAB)


def tiny_bert_config(**train) -> ml_collections.ConfigDict:
  """configs/bert.py:tiny shrunk to test size: hidden 32, 2 layers, seq 32, batch 8."""
  c = bert_configs.get_config("tiny")
  c.model.update(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                 max_position_embeddings=32, hidden_dropout_rate=0.0,
                 attention_dropout_rate=0.0)
  c.data.seq_length = 32
  c.mlm.max_predictions = 5
  c.train.update(dict(batch_size=8, num_steps=5, log_every=1, eval_every=-1, eval_steps=0,
                      checkpoint_every=0, grad_accum_steps=1))
  c.train.update(train)
  c.optimizer.update(learning_rate=1e-3, warmup_steps=1)
  return c


def bert_batches(num: int, batch_size: int = 8, length: int = 32, preds: int = 5,
                 seed: int = 0):
  """Random but well-formed MLM+NSP batches (numpy), with varying padding."""
  rs = np.random.RandomState(seed)
  out = []
  for _ in range(num):
    lengths = rs.randint(length // 2, length + 1, size=batch_size)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype(np.int32)
    ids = rs.randint(5, BERT_VOCAB, size=(batch_size, length)).astype(np.int32) * mask
    types = ((np.arange(length)[None, :] >= (lengths[:, None] // 2)) * mask).astype(np.int32)
    positions = np.stack([np.sort(rs.choice(np.arange(1, l), preds, replace=False))
                          for l in lengths]).astype(np.int32)
    num_real = rs.randint(1, preds + 1, size=batch_size)
    weights = (np.arange(preds)[None, :] < num_real[:, None]).astype(np.float32)
    out.append({
        "input_ids": ids, "token_type_ids": types, "attention_mask": mask,
        "masked_lm_positions": positions * weights.astype(np.int32),
        "masked_lm_ids": rs.randint(5, BERT_VOCAB, size=(batch_size, preds)).astype(np.int32)
                         * weights.astype(np.int32),
        "masked_lm_weights": weights,
        "next_sentence_label": rs.randint(0, 2, size=batch_size).astype(np.int32),
    })
  return out


@base.register("fake_generator_lm")
class FakeGeneratorObjective(FakeObjective):
  """FakeObjective's batches, read through tf.data.Dataset.from_generator: a source whose
  iterator tf.data cannot checkpoint (its position lives in a Python generator)."""

  def get_dataset(self, split, batch_size, seed, shard_index=0, num_shards=1, num_epochs=None):
    ds = super().get_dataset(split, batch_size, seed, shard_index, num_shards, num_epochs)
    batches = list(ds.take(32).as_numpy_iterator())
    return tf.data.Dataset.from_generator(lambda: iter(batches),
                                          output_signature=ds.element_spec)
