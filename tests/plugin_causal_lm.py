"""A family defined outside plm_jax: a tiny causal LM, as a new family's author would write it.

It uses only the public pieces: the shared layers, the objective contract and
registry, plm_jax.configlib sections with their own defaults, the shared corpus
sources, vocabulary and task registry. Nothing under plm_jax/ knows it exists.

  python tests/plugin_causal_lm.py WORKDIR NUM_STEPS [CHECKPOINT_EVERY [EVAL_EVERY]]

trains it through plm_jax.train.trainer (used by tests/test_plugin_family.py).
"""
import dataclasses
import functools
import sys
from typing import Any, Dict, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import seqio
import tensorflow as tf

from plm_jax.configlib import param
from plm_jax.data import sources, tasks, vocab as vocab_lib
from plm_jax.data.config import CorpusConfig, VocabConfig
from plm_jax.layers.embeddings import Embed
from plm_jax.layers.norms import LayerNorm
from plm_jax.layers.transformer import TransformerLayer, stack_layers
from plm_jax.objectives import base, losses


@dataclasses.dataclass(frozen=True)
class TinyLMConfig:
  """The family's model config (also what its export records)."""
  vocab_size: int = 0
  hidden_size: int = param(32, gt=0)
  num_layers: int = param(2, gt=0)
  num_heads: int = param(2, gt=0)
  max_length: int = param(32, gt=0)


@dataclasses.dataclass(frozen=True)
class TinyLMModelSection:
  hidden_size: int = param(32, gt=0)
  num_layers: int = param(2, gt=0)
  num_heads: int = param(2, gt=0)


@dataclasses.dataclass(frozen=True)
class TinyLMDataSection:
  seq_length: int = param(24, ge=8)
  prompt_length: int = param(16, ge=1)      # eval: decode the rest from this many tokens
  corpus: CorpusConfig = CorpusConfig()
  vocab: VocabConfig = VocabConfig()


class TinyCausalLM(nn.Module):
  """Pre-LN decoder-only LM (GPT-2 shape) from plm_jax's shared layers; tied output embedding.

  decode=True runs one step at position `position` through the key/value cache
  (create it with init(..., decode=True) on a full-length input).
  """
  config: TinyLMConfig

  @nn.compact
  def __call__(self, ids: jax.Array, position: Optional[jax.Array] = None,
               decode: bool = False) -> jax.Array:      # [B, L] -> [B, L, V]
    cfg = self.config
    embed = Embed(cfg.vocab_size, cfg.hidden_size, name="tokens")
    positions = Embed(cfg.max_length, cfg.hidden_size, ("position", "embed"), name="positions")
    pos = jnp.arange(ids.shape[1])[None] + (0 if position is None else position)
    x = embed(ids).astype(jnp.float32) + positions(pos).astype(jnp.float32)
    layer = dict(num_heads=cfg.num_heads, intermediate_size=4 * cfg.hidden_size,
                 norm_position="pre", norm_eps=1e-6, causal=True)
    x = stack_layers(TransformerLayer, layer, cfg.num_layers, x, decode=decode)
    x = LayerNorm(1e-6, name="final_layer_norm")(x)
    return embed.attend(x).astype(jnp.float32)


def _pack(ds: tf.data.Dataset, vocabulary, seq_length: int) -> tf.data.Dataset:
  """Documents -> fixed windows of seq_length token ids (a composable seqio step)."""
  def tokenize(ex):
    return {"targets": tf.cast(vocabulary.encode_tf(ex["text"]), tf.int32)}
  ds = ds.map(tokenize).filter(lambda ex: tf.size(ex["targets"]) >= seq_length)
  return ds.map(lambda ex: {"targets": ex["targets"][:seq_length]})


@base.register("plugin_causal_lm")
class TinyCausalLMObjective(base.Objective):
  """Next-token cross-entropy; eval decodes greedily and scores the continuation on the host."""
  family = "tiny_causal_lm"
  SECTIONS = {"model": TinyLMModelSection, "data": TinyLMDataSection}

  def __init__(self, config):
    super().__init__(config)
    self.data = self.sections["data"]
    self._vocabulary = None

  def vocabulary(self):
    if self._vocabulary is None:
      self._vocabulary = vocab_lib.get_vocabulary(self.data.vocab)
    return self._vocabulary

  def model_config(self) -> TinyLMConfig:
    return TinyLMConfig(vocab_size=int(self.vocabulary().vocab_size),
                        max_length=self.data.seq_length,
                        **dataclasses.asdict(self.sections["model"]))

  def make_model(self):
    return TinyCausalLM(self.model_config())

  def init_params(self, rng):
    return self.make_model().init(rng, jnp.zeros((1, self.data.seq_length), jnp.int32))["params"]

  # ---- data: a task registered once by name from the shared pieces ----------------------
  def feature_converter(self):
    return seqio.DecoderFeatureConverter(pack=False)

  def feature_lengths(self):
    return {"targets": self.data.seq_length}

  def batch_spec(self, batch_size):
    return {"targets": jax.ShapeDtypeStruct((batch_size, self.data.seq_length), jnp.int32)}

  def get_dataset(self, split, batch_size, seed, shard_index=0, num_shards=1, num_epochs=None):
    vocabulary = self.vocabulary()
    name = tasks.task_name("plugin_causal_lm", dataclasses.asdict(self.data))
    task = tasks.get_or_register(name, lambda: dict(
        source=sources.document_source(self.data.corpus),
        preprocessors=sources.text_preprocessors(self.data.corpus) + [
            functools.partial(_pack, vocabulary=vocabulary, seq_length=self.data.seq_length)],
        output_features={"targets": seqio.Feature(vocabulary, add_eos=False)}))
    train = split == "train"
    ds = task.get_dataset(None, split=split, shuffle=train, seed=seed, num_epochs=num_epochs,
                          shard_info=seqio.ShardInfo(shard_index, num_shards),
                          use_cached=False, trim_output_features=False)
    ds = ds.map(lambda ex: {"targets": tf.ensure_shape(ex["targets"], [self.data.seq_length])})
    return ds.batch(batch_size, drop_remainder=train)

  # ---- loss ---------------------------------------------------------------------------------
  def loss_fn(self, params, batch, rng, deterministic, normalizers=None):
    ids = batch["targets"]
    logits = self.make_model().apply({"params": params}, ids)[:, :-1]
    targets = ids[:, 1:]
    w = jnp.broadcast_to(base.example_weights(batch)[:, None], targets.shape)
    nll = losses.softmax_cross_entropy(logits, targets)
    correct = losses.top1_correct(logits, targets)
    total = jnp.sum(w)
    loss = jnp.sum(nll * w) / jnp.maximum(total, 1.0)
    return loss, {"loss": (jnp.sum(nll * w), total), "accuracy": (jnp.sum(correct * w), total)}

  # ---- evaluation by decoding ---------------------------------------------------------------
  def decode(self, params, batch, rng=None, max_length=None):
    """Greedy continuation of the first prompt_length tokens to seq_length, one token per
    step through the attention key/value cache (the prompt is fed the same way)."""
    ids = batch["targets"]
    length, prompt = ids.shape[1], self.data.prompt_length
    model = self.make_model()
    cache = model.init(jax.random.PRNGKey(0), jnp.zeros_like(ids), decode=True)["cache"]

    def step(carry, t):
      tokens, cache = carry
      logits, mutated = model.apply({"params": params, "cache": cache}, tokens[:, t][:, None],
                                    position=t, decode=True, mutable=["cache"])
      nxt = jnp.argmax(logits[:, 0], axis=-1).astype(tokens.dtype)
      keep = jnp.where(t + 1 < prompt, tokens[:, t + 1], nxt)
      return (tokens.at[:, t + 1].set(keep), mutated["cache"]), None

    start = jnp.where(jnp.arange(length) < prompt, ids, 0)
    (out, _), _ = jax.lax.scan(step, (start, cache), jnp.arange(length - 1))
    return out

  def predict_fn(self, params, batch):
    return {"decoded": self.decode(params, batch), "targets": batch["targets"]}

  def compute_metrics(self, predictions: Dict[str, np.ndarray]) -> Dict[str, float]:
    p = self.data.prompt_length
    decoded, targets = predictions["decoded"][:, p:], predictions["targets"][:, p:]
    return {"continuation_accuracy": float(np.mean(decoded == targets)),
            "eval_examples_scored": float(len(targets))}


def config(**train: Any):
  """A complete run config: the objective's own defaults plus the trainer's, then overrides."""
  c = TinyCausalLMObjective.default_config()
  c.train.update(dict(batch_size=8, num_steps=8, log_every=4, eval_every=-1, eval_steps=0,
                      checkpoint_every=4))
  c.train.update(train)
  c.optimizer.update(learning_rate=3e-3, warmup_steps=2)
  c.data.corpus.eval_every_nth = 200        # 20 held-out builtin documents
  return c


if __name__ == "__main__":
  from plm_jax.train import trainer  # pylint: disable=import-outside-toplevel
  workdir, steps = sys.argv[1], int(sys.argv[2])
  every = int(sys.argv[3]) if len(sys.argv) > 3 else 4
  eval_every = int(sys.argv[4]) if len(sys.argv) > 4 else 0
  trainer.train_and_evaluate(config(num_steps=steps, checkpoint_every=every,
                                    eval_every=eval_every), workdir)
