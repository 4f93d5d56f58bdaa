"""ELMo biLM pretraining: forward and backward language-model losses (Peters et al., 2018).

The loss of a window of T tokens is bilm-tf's: the mean of the forward LM's
cross-entropy (position t predicts token t + 1) and the backward LM's
(position t predicts token t - 1), each averaged over its T - 1 predictions;
i.e. maximising the sum of the two log-likelihoods (paper eq. before section
3.2). The softmax is shared; `lm.softmax='sampled'` trains with a sampled
softmax (Jean et al. 2015, as bilm-tf for large vocabularies: log-uniform
candidates, corrected by their log expected count, accidental hits removed);
evaluation always uses the full softmax.

Metrics: forward_nll / backward_nll (mean per prediction), and at evaluation
forward_perplexity / backward_perplexity = exp(total nll / predictions) over
the whole eval set (host-side, from predict_fn).

Config sections (owned here): `model` (ElmoConfig without vocab_size, which comes
from the word vocabulary), `lm` (ElmoLmConfig), `data` (ElmoDataConfig). Batches:
input_ids int32 [B, T], char_ids int32 [B, T, C] (plm_jax.data.elmo_pretrain).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from plm_jax.configlib import ConfigError, fail, param
from plm_jax.data.config import CorpusConfig
from plm_jax.models.elmo import ElmoBiLM, ElmoConfig
from plm_jax.objectives import flops_families
from plm_jax.objectives import losses
from plm_jax.objectives.base import Batch, Metrics, Objective, example_weights, register


def _model_section():
  fields = [(f.name, f.type, f.default) for f in dataclasses.fields(ElmoConfig)
            if f.name != "vocab_size"]
  return dataclasses.make_dataclass("ElmoModelConfig", fields, frozen=True)


ElmoModelConfig = _model_section()


@dataclasses.dataclass(frozen=True)
class ElmoLmConfig:
  softmax: str = param("full", choices=("full", "sampled"))
  num_samples: int = param(8192, gt=0)     # sampled: negative candidates per batch
  init_from: str = ""                      # a bilm-tf model directory (options.json +
                                           # lm_weights.hdf5) to continue training from


@dataclasses.dataclass(frozen=True)
class ElmoDataConfig:
  seq_length: int = param(20, ge=2)            # tokens per window (bilm-tf unroll_steps: 20)
  shuffle_buffer: int = param(10_000, ge=0)    # window-level shuffle buffer (0: off)
  vocab_path: str = ""                         # a bilm-tf vocabulary file (one token a line,
                                               # with <S> </S> <UNK>); empty: build one
  vocab_size: int = param(10_000, ge=4)        # built: the most frequent tokens, specials included
  vocab_documents: int = param(2_000, gt=0)    # built: from N training documents spread
                                               # evenly over the corpus
  corpus: CorpusConfig = CorpusConfig()


@register("elmo_bilm")
class ElmoBiLMObjective(Objective):
  """Forward + backward LM on ElmoBiLM with a shared char encoder and softmax."""
  family = "elmo"
  SECTIONS = {"model": ElmoModelConfig, "lm": ElmoLmConfig, "data": ElmoDataConfig}

  def __init__(self, config, vocab=None):
    """vocab: a plm_jax.data.elmo_chars.WordVocab to use instead of data.vocab_path / building."""
    super().__init__(config)
    self.data, self.lm = self.sections["data"], self.sections["lm"]
    self._vocab = vocab
    try:
      dataclasses.replace(self.model_config_without_vocab(), vocab_size=1).check()
    except ValueError as e:
      raise ConfigError(str(e).replace("ElmoConfig.", "config.model.")) from None
    if self.data.vocab_path and not os.path.isfile(self.data.vocab_path):
      fail("config.data.vocab_path", self.data.vocab_path, "no such file")

  def model_config_without_vocab(self) -> ElmoConfig:
    return ElmoConfig(**dataclasses.asdict(self.sections["model"]))

  def vocab(self):
    """The word vocabulary: data.vocab_path's, or built once from the training documents."""
    if self._vocab is None:
      from plm_jax.data import elmo_chars, sources  # pylint: disable=import-outside-toplevel
      if self.data.vocab_path:
        self._vocab = elmo_chars.WordVocab.from_file(self.data.vocab_path)
      else:
        docs = sources.load_documents(self.data.corpus, "train")
        docs = docs[::max(1, len(docs) // self.data.vocab_documents)][:self.data.vocab_documents]
        self._vocab = elmo_chars.build_vocab(docs, self.data.vocab_size)
    return self._vocab

  def vocabulary(self):
    """The word vocabulary; the export writes it as vocab.txt (bilm-tf's format)."""
    return self.vocab()

  def model_config(self) -> ElmoConfig:
    return dataclasses.replace(self.model_config_without_vocab(), vocab_size=self.vocab().size)

  def make_model(self) -> ElmoBiLM:
    return ElmoBiLM(self.model_config())

  def batch_spec(self, batch_size: int) -> Dict[str, jax.ShapeDtypeStruct]:
    t, c = self.data.seq_length, self.sections["model"].max_characters_per_token
    return {"input_ids": jax.ShapeDtypeStruct((batch_size, t), jnp.int32),
            "char_ids": jax.ShapeDtypeStruct((batch_size, t, c), jnp.int32)}

  def forward_flops_per_example(self, lookups: bool = True) -> float:
    """A window of data.seq_length tokens through both directions and the training loss's
    softmax (lm.softmax: full over the vocabulary, or sampled with lm.num_samples)."""
    samples = self.lm.num_samples if self.lm.softmax == "sampled" else 0
    return flops_families.elmo_forward_flops(self.model_config(), self.data.seq_length,
                                             samples, lookups)

  def input_ranges(self) -> Dict[str, int]:
    return {"input_ids": self.vocab().size, "char_ids": self.sections["model"].n_characters}

  def init_params(self, rng: jax.Array) -> Any:
    spec = self.batch_spec(1)
    return self.make_model().init(rng, jnp.ones(spec["char_ids"].shape, jnp.int32))["params"]

  def initial_params(self):
    """The bilm-tf model in lm.init_from, whose options must equal config.model's sizes; a
    file without a softmax keeps the fresh one (the trainer fills what is missing)."""
    if not self.lm.init_from:
      return None
    from plm_jax.convert import bilm_hdf5  # pylint: disable=import-outside-toplevel
    options = os.path.join(self.lm.init_from, "options.json")
    cfg = bilm_hdf5.load_options(options)
    mine = self.model_config()
    for f in dataclasses.fields(ElmoConfig):
      if f.name in ("vocab_size", "dropout") or getattr(cfg, f.name) == getattr(mine, f.name):
        continue
      raise ConfigError(f"config.model.{f.name}={getattr(mine, f.name)!r}: {options} has "
                        f"{getattr(cfg, f.name)!r} (config.lm.init_from)")
    if cfg.vocab_size not in (0, mine.vocab_size):
      raise ConfigError(f"config.lm.init_from={self.lm.init_from!r}: its softmax has "
                        f"{cfg.vocab_size} words, the word vocabulary {mine.vocab_size}")
    return bilm_hdf5.load_weights(os.path.join(self.lm.init_from, "lm_weights.hdf5"), cfg)

  def get_dataset(self, split: str, batch_size: int, seed: int, shard_index: int = 0,
                  num_shards: int = 1, num_epochs: Optional[int] = None):
    from plm_jax.data import elmo_pretrain  # pylint: disable=import-outside-toplevel
    return elmo_pretrain.get_dataset(self.data, self.vocab(),
                                     self.sections["model"].max_characters_per_token, split,
                                     batch_size, seed, shard_index, num_shards, num_epochs)

  # ---- loss ---------------------------------------------------------------------------------
  def _outputs(self, params, batch, rng, deterministic, logits: bool):
    rngs = {} if (deterministic or rng is None) else {"dropout": rng}
    return self.make_model().apply({"params": params}, batch["char_ids"],
                                   deterministic=deterministic, logits=logits, rngs=rngs)

  def _nll(self, params, batch, rng, deterministic) -> Tuple[jax.Array, jax.Array]:
    """Per-prediction nll of the forward [B, T-1] and backward [B, T-1] LMs."""
    ids = batch["input_ids"]
    sampled = self.lm.softmax == "sampled" and not deterministic
    out = self._outputs(params, batch, rng, deterministic, logits=not sampled)
    if not sampled:
      fwd = losses.softmax_cross_entropy(out["forward_logits"][:, :-1], ids[:, 1:])
      bwd = losses.softmax_cross_entropy(out["backward_logits"][:, 1:], ids[:, :-1])
      return fwd, bwd
    soft = params["softmax"]
    key = jax.random.fold_in(rng, 1) if rng is not None else jax.random.PRNGKey(0)
    cands = log_uniform_samples(key, self.lm.num_samples, soft["kernel"].shape[0])
    fwd = sampled_softmax_nll(out["forward"][-1][:, :-1], ids[:, 1:], soft, cands)
    bwd = sampled_softmax_nll(out["backward"][-1][:, 1:], ids[:, :-1], soft, cands)
    return fwd, bwd

  def loss_fn(self, params, batch: Batch, rng, deterministic: bool,
              normalizers: Optional[Dict[str, jax.Array]] = None) -> Tuple[jax.Array, Metrics]:
    del normalizers   # one mean over windows: micro-batches weigh by the 'loss' weight
    fwd, bwd = self._nll(params, batch, rng, deterministic)
    w = example_weights(batch)[:, None] * jnp.ones_like(fwd)
    n = jnp.sum(w)
    f_sum, b_sum = jnp.sum(fwd * w), jnp.sum(bwd * w)
    loss = 0.5 * (f_sum + b_sum) / jnp.maximum(n, 1.0)
    return loss, {"loss": (0.5 * (f_sum + b_sum), n), "forward_nll": (f_sum, n),
                  "backward_nll": (b_sum, n)}

  def predict_fn(self, params, batch: Batch) -> Dict[str, jax.Array]:
    fwd, bwd = self._nll(params, batch, None, True)
    return {"forward_nll": jnp.sum(fwd, axis=1), "backward_nll": jnp.sum(bwd, axis=1),
            "predictions": jnp.full(fwd.shape[:1], fwd.shape[1], jnp.float32)}

  def compute_metrics(self, predictions: Dict[str, np.ndarray]) -> Dict[str, float]:
    n = float(np.sum(predictions["predictions"]))
    out = {"predictions": n}
    for d in ("forward", "backward"):
      out[f"{d}_perplexity"] = float(np.exp(np.sum(predictions[f"{d}_nll"], dtype=np.float64)
                                            / max(n, 1.0)))
    return out


def log_uniform_samples(key: jax.Array, num: int, vocab_size: int) -> jax.Array:
  """num ids drawn (with replacement) from P(k) = log((k + 2) / (k + 1)) / log(V + 1)."""
  u = jax.random.uniform(key, (num,))
  k = jnp.floor(jnp.exp(u * jnp.log(vocab_size + 1.0))) - 1
  return jnp.clip(k, 0, vocab_size - 1).astype(jnp.int32)


def sampled_softmax_nll(h: jax.Array, targets: jax.Array, softmax: Dict[str, jax.Array],
                        candidates: jax.Array) -> jax.Array:
  """h [B, T, P], targets [B, T], candidates [K] -> nll [B, T] of the target among itself and
  the candidates; logits corrected by -log(K Q(id)) (log-uniform Q), accidental hits removed."""
  w, b = softmax["kernel"], softmax["bias"]
  vocab_size, num = w.shape[0], candidates.shape[0]

  def log_q(ids):
    ids = ids.astype(jnp.float32)
    return jnp.log(num * (jnp.log(ids + 2.0) - jnp.log(ids + 1.0)) / jnp.log(vocab_size + 1.0))
  true = jnp.einsum("btp,btp->bt", h, w[targets]) + b[targets] - log_q(targets)
  other = jnp.einsum("btp,kp->btk", h, w[candidates]) + b[candidates] - log_q(candidates)
  other = jnp.where(candidates[None, None, :] == targets[..., None], -1e9, other)
  logits = jnp.concatenate([true[..., None], other], axis=-1)
  return jax.nn.logsumexp(logits, axis=-1) - true
