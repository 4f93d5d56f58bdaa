"""ELECTRA pretraining objective: replaced-token detection with a jointly trained generator.

Clark et al. (2020), section 2, and google-research/electra run_pretraining.py:
  1. mask: 15% of the real tokens ([CLS]/[SEP]/padding never) are chosen; 85% of those
     become [MASK], 15% stay (no random tokens) (mlm section; masks drawn anew per row);
  2. the generator (an MLM of round(H * hidden_fraction) width sharing the discriminator's
     embeddings) predicts the chosen tokens: MLM loss, cross-entropy averaged over them;
  3. every chosen position is filled with a token sampled from the generator's softmax
     (logits / temperature), with no gradient through the sampling (stop_gradient on the
     logits; the sample is discrete anyway);
  4. the discriminator sees the corrupted row; a token is "replaced" iff the sampled token
     differs from the original (a sample equal to the original counts as original);
     loss: sigmoid cross-entropy over every non-padding token, averaged;
  5. loss = gen_weight * MLM + disc_weight * RTD (1 and 50), one optimizer over both.
The only gradient from the RTD loss into the generator's side is through the shared
embeddings, which both networks train (the paper's "tied embeddings").

electra.rtd=False trains the masked LM alone at the discriminator's size (the
released code's electra_objective=False: the BERT-Small / -Base baselines of Table 1,
same masking, inputs and embedding factorisation).

Inputs: RoBERTa's pipeline (plm_jax.data.roberta_pretrain) with DOC-SENTENCES rows by
default (ELECTRA's examples do not cross a document; its two-segment split is not
reproduced: one segment, token type 0). Batch format: MlmFeatureConverter.
Config sections: model (ElectraConfig = the discriminator, without vocab_size /
pretraining_head), generator, electra, mlm, data.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from plm_jax.configlib import ConfigError, fail, param
from plm_jax.data.config import CorpusConfig, VocabConfig
from plm_jax.models import electra as electra_lib
from plm_jax.models.electra import ElectraConfig
from plm_jax.objectives import flops as flops_lib
from plm_jax.objectives import losses
from plm_jax.objectives.base import Batch, Metrics, example_weights, register
from plm_jax.objectives.bert_pretrain import BertMlmNsp, MlmConfig, check_bert_model
from plm_jax.objectives.roberta_pretrain import PACKINGS

EVAL_SAMPLE_SEED = 0   # evaluation samples replacements with a fixed key: repeatable metrics


@dataclasses.dataclass(frozen=True)
class ElectraMlmConfig:
  mask_rate: float = param(0.15, gt=0.0, lt=1.0)         # fraction of tokens chosen (large: 0.25)
  mask_token_prob: float = param(0.85, ge=0.0, le=1.0)   # of the chosen: [MASK] (ELECTRA: 85%)
  random_token_prob: float = param(0.0, ge=0.0, le=1.0)  # of the chosen: random (ELECTRA: none)
  max_predictions: int = param(19, gt=0)                 # int((mask_rate + 0.005) * seq_length)
  whole_word_masking: bool = False

  def check(self, prefix: str) -> None:
    MlmConfig.check(self, prefix)


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
  hidden_fraction: float = param(0.25, gt=0.0, le=1.0)   # generator width / discriminator's
  layers_fraction: float = param(1.0, gt=0.0, le=1.0)    # generator depth / discriminator's
  num_heads: int = param(0, ge=0)                        # 0: max(1, hidden // 64) (released code)


@dataclasses.dataclass(frozen=True)
class ElectraLossConfig:
  gen_weight: float = param(1.0, ge=0.0)      # weight of the generator's MLM loss
  disc_weight: float = param(50.0, ge=0.0)    # weight of the discriminator's RTD loss
  temperature: float = param(1.0, gt=0.0)     # sampling temperature of the generator
  rtd: bool = True                            # False: MLM only at the discriminator's size
  init_discriminator: str = ""                # start from an ElectraForPreTraining dir / export
  init_generator: str = ""                    # ... and an ElectraForMaskedLM one (both or none)


@dataclasses.dataclass(frozen=True)
class ElectraDataConfig:
  seq_length: int = param(128, ge=8)          # tokens per row, [CLS] sentences ... [SEP]
  shuffle_buffer: int = param(10_000, ge=0)
  group_size: int = param(16, gt=0)
  packing: str = param("doc_sentences", choices=PACKINGS)
  corpus: CorpusConfig = CorpusConfig()
  vocab: VocabConfig = VocabConfig()


def _model_section():
  fields = [(f.name, f.type, f.default) for f in dataclasses.fields(ElectraConfig)
            if f.name not in ("vocab_size", "pretraining_head")]
  return dataclasses.make_dataclass("ElectraModelConfig", fields, frozen=True)


ElectraModelConfig = _model_section()


def sample_tokens(rng: jax.Array, logits: jax.Array, temperature: float = 1.0) -> jax.Array:
  """logits [..., V] -> int32 [...] drawn from softmax(logits / temperature), no gradient."""
  logits = jax.lax.stop_gradient(logits.astype(jnp.float32)) / temperature
  return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)


def corrupt(input_ids: jax.Array, positions: jax.Array, weights: jax.Array,
            original: jax.Array, sampled: jax.Array) -> Tuple[jax.Array, jax.Array]:
  """Fills the masked positions with the samples.

  input_ids [B, L] (masked), positions / weights / original / sampled [B, P]; slots
  with weight 0 (padding of the prediction list) change nothing. Returns (corrupted ids
  [B, L], replaced [B, L] bool: the token differs from the original there).
  """
  input_ids = jnp.asarray(input_ids)
  batch, length = input_ids.shape
  where = jnp.where(weights > 0, positions, length)            # out of range: dropped
  rows = jnp.arange(batch)[:, None]
  unmasked = input_ids.at[rows, where].set(original, mode="drop")
  fake = unmasked.at[rows, where].set(sampled, mode="drop")
  return fake, fake != unmasked


@register("electra_rtd")
class ElectraRtd(BertMlmNsp):
  """Generator MLM + discriminator replaced-token detection (see the module doc)."""
  family = "electra"
  SECTIONS = {"model": ElectraModelConfig, "generator": GeneratorConfig,
              "electra": ElectraLossConfig, "mlm": ElectraMlmConfig, "data": ElectraDataConfig}
  MLM_LOGITS = "logits"

  def __init__(self, config, vocab_size: Optional[int] = None):
    super().__init__(config, vocab_size)
    self.loss_cfg: ElectraLossConfig = self.sections["electra"]
    gen = self.sections["generator"]
    try:
      electra_lib.generator_config(self._disc(1), gen.hidden_fraction, gen.layers_fraction,
                                   gen.num_heads)
    except ValueError as e:
      raise ConfigError(f"config.generator: {e}") from None
    if bool(self.loss_cfg.init_discriminator) != bool(self.loss_cfg.init_generator):
      fail("config.electra.init_generator", self.loss_cfg.init_generator,
           "set both init_discriminator and init_generator (a pretraining checkpoint is the "
           "two networks) or neither")

  def check_model(self, m) -> None:
    check_bert_model(m)
    if m.embedding_size <= 0:
      fail("config.model.embedding_size", m.embedding_size, "must be > 0")

  @property
  def sentence_task(self) -> bool:
    return False

  # ---- models ---------------------------------------------------------------------------
  def _disc(self, vocab_size: int) -> ElectraConfig:
    return ElectraConfig(vocab_size=vocab_size, **dataclasses.asdict(self.sections["model"]))

  def model_config(self) -> ElectraConfig:
    """The discriminator's config (with rtd=False: the masked LM's)."""
    cfg = self._disc(self.vocab_size())
    return cfg if self.loss_cfg.rtd else cfg.replace(pretraining_head="generator")

  def generator_config(self) -> ElectraConfig:
    gen = self.sections["generator"]
    if not self.loss_cfg.rtd:
      return self.model_config()
    return electra_lib.generator_config(self.model_config(), gen.hidden_fraction,
                                        gen.layers_fraction, gen.num_heads)

  def make_model(self):
    if not self.loss_cfg.rtd:
      return electra_lib.ElectraForMaskedLM(self.generator_config())
    return electra_lib.ElectraPretrainingModel(self.model_config(), self.generator_config())

  def init_params(self, rng: jax.Array) -> Any:
    d = {k: jnp.zeros(s.shape, s.dtype) for k, s in self.batch_spec(1).items()}
    params_rng, dropout_rng = jax.random.split(rng)
    args = (d["input_ids"], d["attention_mask"], d["token_type_ids"], d["masked_lm_positions"])
    return self.make_model().init({"params": params_rng, "dropout": dropout_rng}, *args,
                                  deterministic=True)["params"]

  def initial_params(self):
    c = self.loss_cfg
    if not c.init_discriminator:
      return None
    from plm_jax.objectives.base import load_pretrained_params  # pylint: disable=import-outside-toplevel
    disc, gen = load_pretrained_params(c.init_discriminator), load_pretrained_params(
        c.init_generator)
    return electra_lib.join_pretraining_params(disc, gen)

  def export_models(self, params: Any) -> Dict[str, Tuple[Any, Any]]:
    """Two HF-shaped models (discriminator/ and generator/); rtd=False: the masked LM."""
    if not self.loss_cfg.rtd:
      return {"": (self.generator_config(), params)}
    disc, gen = electra_lib.split_pretraining_params(params)
    return {"discriminator": (self.model_config(), disc),
            "generator": (self.generator_config(), gen)}

  def forward_flops_per_example(self, lookups: bool = True) -> float:
    s = self.data.seq_length
    fraction = self.mlm.max_predictions / s
    if not self.loss_cfg.rtd:
      return flops_lib.mlm_forward_flops(self.generator_config(), s, fraction, lookups=lookups)
    return flops_lib.electra_forward_flops(self.model_config(), self.generator_config(), s,
                                           fraction, lookups)

  def inference_flops_per_example(self) -> float:
    """Forward FLOPs of the model that fine-tunes (the discriminator's encoder and its
    replaced-token head over one sequence), as Table 1's inference FLOPs count them; with
    rtd=False the masked LM's encoder."""
    s = self.data.seq_length
    if not self.loss_cfg.rtd:
      return flops_lib.encoder_forward_flops(self.generator_config(), s)
    disc = self.model_config()
    return (flops_lib.encoder_forward_flops(disc, s)
            + flops_lib.rtd_head_forward_flops(disc.hidden_size, s))

  # ---- data -----------------------------------------------------------------------------
  def feature_converter(self):
    from plm_jax.data import feature_converters  # pylint: disable=import-outside-toplevel
    return feature_converters.MlmFeatureConverter()

  def get_dataset(self, split: str, batch_size: int, seed: int, shard_index: int = 0,
                  num_shards: int = 1, num_epochs: Optional[int] = None):
    from plm_jax.data import roberta_pretrain  # pylint: disable=import-outside-toplevel
    return roberta_pretrain.get_dataset(self.data, self.mlm, self.vocabulary(), split,
                                        batch_size, seed, shard_index, num_shards, num_epochs)

  # ---- loss -----------------------------------------------------------------------------
  def loss_normalizers(self, batch: Batch) -> Dict[str, jax.Array]:
    """MLM: the masked tokens; RTD: the real (non-padding) tokens of real examples."""
    ex = example_weights(batch)[:, None]
    tokens = batch["attention_mask"].astype(jnp.float32) * ex
    predicted = batch["masked_lm_weights"].astype(jnp.float32) * ex
    return {"mlm": jnp.maximum(jnp.sum(predicted), 1e-8),
            "rtd": jnp.maximum(jnp.sum(tokens), 1e-8)}

  def replace_tokens(self, rng: jax.Array, mlm_logits: jax.Array, batch: Batch
                     ) -> Tuple[jax.Array, jax.Array, jax.Array]:
    """Generator logits [B, P, V] -> (sampled [B, P], corrupted input ids [B, L], replaced
    [B, L] bool) for the discriminator."""
    sampled = sample_tokens(rng, mlm_logits, self.loss_cfg.temperature)       # [B, P]
    weights = batch["masked_lm_weights"] * example_weights(batch)[:, None]
    fake, replaced = corrupt(batch["input_ids"], batch["masked_lm_positions"], weights,
                             batch["masked_lm_ids"], sampled)
    return sampled, fake, replaced

  def _forward(self, params: Any, batch: Batch, rng: Optional[jax.Array], deterministic: bool
               ) -> Dict[str, jax.Array]:
    """Generator MLM logits [B, P, V]; with rtd also the samples [B, P], replaced [B, L] bool
    and the discriminator's logits [B, L] on the corrupted rows. rng None: evaluation's
    fixed sampling key."""
    if rng is None:
      rng = jax.random.PRNGKey(EVAL_SAMPLE_SEED)
    gen_rng, disc_rng, sample_rng = jax.random.split(rng, 3)
    drop = lambda r: {} if deterministic else {"dropout": r}
    model = self.make_model()
    ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]
    positions = batch["masked_lm_positions"]
    if not self.loss_cfg.rtd:
      return {"mlm_logits": model.apply({"params": params}, ids, mask, types, positions,
                                        deterministic=deterministic,
                                        rngs=drop(gen_rng))["logits"]}
    mlm_logits = model.apply({"params": params}, ids, mask, types, positions,
                             deterministic=deterministic, rngs=drop(gen_rng),
                             method=model.generate)                          # [B, P, V]
    sampled, fake, replaced = self.replace_tokens(sample_rng, mlm_logits, batch)
    rtd_logits = model.apply({"params": params}, fake, mask, types,
                             deterministic=deterministic, rngs=drop(disc_rng),
                             method=model.discriminate)                      # [B, L]
    return {"mlm_logits": mlm_logits, "sampled": sampled, "replaced": replaced,
            "rtd_logits": rtd_logits}

  def loss_fn(self, params: Any, batch: Batch, rng: Optional[jax.Array],
              deterministic: bool, normalizers: Optional[Dict[str, jax.Array]] = None
              ) -> Tuple[jax.Array, Metrics]:
    norm = normalizers or self.loss_normalizers(batch)
    out = self._forward(params, batch, rng, deterministic)
    mlm_logits, original = out["mlm_logits"], batch["masked_lm_ids"]
    weights = batch["masked_lm_weights"].astype(jnp.float32) * example_weights(batch)[:, None]
    nll = losses.softmax_cross_entropy(mlm_logits, original)                 # [B, P]
    correct = losses.top1_correct(mlm_logits, original)
    mlm_sum, mlm_weight = jnp.sum(nll * weights), jnp.sum(weights)
    metrics = {"mlm_loss": (mlm_sum, mlm_weight),
               "mlm_accuracy": (jnp.sum(correct * weights), mlm_weight)}
    loss = self.loss_cfg.gen_weight * mlm_sum / norm["mlm"]
    if self.loss_cfg.rtd:
      rtd_logits, replaced = out["rtd_logits"], out["replaced"]
      labels = replaced.astype(jnp.float32)
      tokens = batch["attention_mask"].astype(jnp.float32) * example_weights(batch)[:, None]
      bce = optax.sigmoid_binary_cross_entropy(rtd_logits, labels)            # [B, L]
      rtd_sum, n_tokens = jnp.sum(bce * tokens), jnp.sum(tokens)
      said = (rtd_logits > 0).astype(jnp.float32) * tokens                   # "replaced"
      right = ((rtd_logits > 0) == replaced).astype(jnp.float32)
      fakes = labels * tokens
      loss = loss + self.loss_cfg.disc_weight * rtd_sum / norm["rtd"]
      metrics.update({
          "rtd_loss": (rtd_sum, n_tokens),
          "rtd_accuracy": (jnp.sum(right * tokens), n_tokens),
          # recall and precision of "replaced" (the released code's disc_recall and
          # disc_precision); weights kept > 0: no replacement / no "replaced" reads 0, not NaN
          "rtd_replaced_accuracy": (jnp.sum(right * fakes), jnp.maximum(jnp.sum(fakes), 1e-9)),
          "rtd_precision": (jnp.sum(said * labels), jnp.maximum(jnp.sum(said), 1e-9)),
          "replaced_fraction": (jnp.sum(fakes), n_tokens),
          "sampled_mlm_accuracy": (jnp.sum((out["sampled"] == original) * weights),
                                   mlm_weight),
      })
    metrics["loss"] = (loss, jnp.ones((), jnp.float32))
    return loss, metrics

  # ---- evaluation: the discriminator's ROC AUC over the whole held-out set -----------------
  @property
  def has_predictions(self) -> bool:
    return self.loss_cfg.rtd

  def predict_fn(self, params: Any, batch: Batch) -> Optional[Dict[str, jax.Array]]:
    """Per token of each row: the discriminator's logit, whether it was replaced, and
    whether it is a real token (the same fixed-key replacements as the eval loss)."""
    if not self.loss_cfg.rtd:
      return None
    out = self._forward(params, batch, None, True)
    return {"rtd_logits": out["rtd_logits"], "replaced": out["replaced"].astype(jnp.int32),
            "token": batch["attention_mask"].astype(jnp.int32)}

  def compute_metrics(self, predictions: Dict[str, Any]) -> Dict[str, float]:
    """rtd_auc: the probability that a replaced token gets a higher logit than an original
    one (the released code's disc_auc); threshold-free, so it shows the discriminator
    learning while its recall at 0.5 is still near 0 early in training."""
    if not predictions:
      return {}
    from plm_jax.finetune import metrics as metrics_lib  # pylint: disable=import-outside-toplevel
    real = np.asarray(predictions["token"]).reshape(-1) > 0
    scores = np.asarray(predictions["rtd_logits"], np.float64).reshape(-1)[real]
    labels = np.asarray(predictions["replaced"]).reshape(-1)[real]
    if labels.min(initial=1) == labels.max(initial=0):
      return {}
    return {"rtd_auc": metrics_lib.roc_auc(scores, labels)}
