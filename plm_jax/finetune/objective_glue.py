"""The `glue` objective: fine-tune a backbone + classification/regression head on a GLUE task.

  python main.py --config=configs/glue.py:sst2 --config.init.hf_dir=DIR

Sections (besides the trainer's): `task` (GlueTaskConfig), `init`, `model`, `vocab`
(plm_jax.finetune.common). Loss: softmax cross-entropy over the labels, or the
mean squared error for STS-B (one output, as BertForSequenceClassification
with num_labels=1). Evaluation: the task's GLUE metrics over the whole dev set
(plm_jax.finetune.metrics), `score` being the one the GLUE table reports. At the
end, predictions on the test split in the benchmark's submission format
(workdir/glue_submission/<Task>.tsv), from the best checkpoint when
`train.best_metric` is set.

Batches are length-bucketed (`task.buckets`): the step compiles once per
bucket; `input_ids`, `attention_mask`, `token_type_ids` are [B, bucket length].

GPT-1's fine-tuning (Radford et al. 2018, section 3.2-3.3), for backbones that are causal
LMs (gpt2, openai-gpt):
  - auxiliary LM loss: loss = task loss + `task.aux_lm_weight` x LM loss, the LM loss being
    each example's mean next-token cross-entropy over its transformed input (start A delim
    B extract: every token after the first), averaged over examples like the task loss.
    -1 (default): the backbone's weight (GPT: 0.5, the paper's lambda); 0 turns it off.
    Metrics `task_loss` and `lm_loss` report both parts.
  - similarity tasks (MRPC, STS-B, QQP): both orders of the pair (start A delim B extract
    and start B delim A extract, features `swapped_input_ids`, `swapped_attention_mask`)
    run through the backbone and their extract-token states are added before the
    classifier; the LM loss of an example is then the mean of its two orders'.

config.model.family=elmo runs the feature-based ELMo instead (a frozen biLM's characters-in
features under a BiLSTM task model): plm_jax/finetune/objective_elmo.py, same task section,
loss, metrics and outputs.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from plm_jax.configlib import fail, param
from plm_jax.objectives.base import Batch, Metrics, example_weights, register
from plm_jax.finetune import batching, common, glue
from plm_jax.finetune.heads import FinetuneModel
from plm_jax.finetune.objective_base import SEQUENCE, SHARED_SECTIONS, FinetuneObjective
from plm_jax.objectives import losses


@dataclasses.dataclass(frozen=True)
class GlueTaskConfig:
  name: str = param("sst2", choices=tuple(glue.TASKS))
  data_dir: str = ""                      # GLUE TSV layout (<dir>/SST-2/train.tsv); empty: TFDS
  tfds_data_dir: str = ""
  tfds_name: str = ""                     # empty: the task's glue/<name>
  max_seq_length: int = param(128, ge=8)
  buckets: Tuple[int, ...] = (8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 128)  # padded lengths; last = max length
  train_split: str = "train"
  eval_split: str = "validation"
  predict_test: bool = True               # write the test split's submission file at the end
  # GPT-1's auxiliary LM loss weight (causal-LM backbones); -1: the backbone's (GPT 0.5); 0: off
  aux_lm_weight: float = param(-1.0, ge=-1.0)

  def check(self, prefix: str) -> None:
    batching.check_buckets(self.buckets, self.max_seq_length, f"{prefix}.buckets")
    if -1.0 < self.aux_lm_weight < 0.0:
      fail(f"{prefix}.aux_lm_weight", self.aux_lm_weight, "must be -1 (the backbone's "
           "default) or >= 0")
    task = glue.TASKS[self.name]
    for key in ("train_split", "eval_split"):
      split = getattr(self, key)
      if split not in dict(task.files):
        fail(f"{prefix}.{key}", split, f"GLUE task {self.name} has splits {sorted(dict(task.files))}")


SIMILARITY_TASKS = ("mrpc", "stsb", "qqp")       # GPT-1 reads both orders of these pairs
SWAPPED = ("swapped_input_ids", "swapped_attention_mask")


@register("glue")
class GlueFinetune(FinetuneObjective):
  """Sequence classification / regression on one GLUE task."""
  SECTIONS = dict(task=GlueTaskConfig, **SHARED_SECTIONS)

  def __init__(self, config):
    super().__init__(config)
    self.task_config: GlueTaskConfig = self.sections["task"]
    self.task = glue.TASKS[self.task_config.name]
    self._examples: Dict[str, Any] = {}
    weight = self.task_config.aux_lm_weight
    self.aux_lm_weight = self.backbone.aux_lm_weight if weight < 0 else float(weight)
    if self.aux_lm_weight > 0 and not self.backbone.causal_lm:
      fail("config.task.aux_lm_weight", weight, f"the {self.family} backbone has no causal LM "
           "for an auxiliary LM loss; use 0 or -1")
    self.both_orders = (self.backbone.format_swapped is not None
                        and self.task.name in SIMILARITY_TASKS)
    self.sequence = SEQUENCE + (SWAPPED if self.both_orders else ())
    self.variable_length_features = self.sequence

  @classmethod
  def variant(cls, config):
    """GlueFinetune itself hands family elmo to the feature-based ELMo objective."""
    model = config.get("model")
    if cls is GlueFinetune and model is not None and model.get("family") == common.ELMO:
      from plm_jax.finetune.objective_elmo import ElmoGlueFinetune  # pylint: disable=import-outside-toplevel
      return ElmoGlueFinetune
    return cls

  def input_ranges(self) -> Dict[str, int]:
    out = super().input_ranges()
    if self.task.labels is not None:
      out["label"] = self.task.num_labels
    if self.both_orders:
      out["swapped_input_ids"] = out["input_ids"]
    return out

  def make_model(self, lm_head: bool = False) -> FinetuneModel:
    return FinetuneModel(self.family, self.model_config(), head="classification",
                         num_labels=self.task.num_labels,
                         classifier_dropout=self.model_section.head_dropout, lm_head=lm_head)

  # ---- data -----------------------------------------------------------------------------
  def examples(self, split: str):
    """Model-input examples of a split and their lengths (built once)."""
    if split not in self._examples:
      from plm_jax.finetune import tasks  # pylint: disable=import-outside-toplevel
      t = self.task_config
      vocab = self.vocabulary()
      from plm_jax.data.vocab import special_ids  # pylint: disable=import-outside-toplevel
      ids = special_ids(vocab, self.backbone.special_roles)
      special = dict(zip(self.backbone.special_roles, ids))
      rows = tasks.tokenized_examples(self.task, split, vocab, t.data_dir, t.tfds_data_dir,
                                      t.tfds_name)
      label_dtype = np.float32 if self.task.labels is None else np.int32
      out, lengths = [], []
      for r in rows:
        ex = self.backbone.format_inputs(r["ids_a"], r["ids_b"], t.max_seq_length, special)
        n = len(ex["input_ids"])
        ex["attention_mask"] = np.ones([n], np.int32)
        if self.both_orders:
          swapped = self.backbone.format_swapped(r["ids_a"], r["ids_b"], t.max_seq_length,
                                                 special)["input_ids"]
          assert len(swapped) == n, (len(swapped), n)
          ex["swapped_input_ids"] = swapped
          ex["swapped_attention_mask"] = np.ones([n], np.int32)
        ex["label"] = np.asarray(r["label"], label_dtype)
        ex["idx"] = np.asarray(r["idx"], np.int32)
        out.append(ex)
        lengths.append(n)
      self._examples[split] = (out, lengths)
    return self._examples[split]

  def _split(self, split: str) -> str:
    return {"train": self.task_config.train_split,
            "validation": self.task_config.eval_split}.get(split, split)

  def num_train_examples(self) -> int:
    return len(self.examples(self._split("train"))[0])

  def padding_fraction(self, batch_size: int, seed: int = 0) -> float:
    _, lengths = self.examples(self._split("train"))
    return batching.padding_fraction(lengths, self.task_config.buckets, batch_size, seed)

  def get_dataset(self, split: str, batch_size: int, seed: int, shard_index: int = 0,
                  num_shards: int = 1, num_epochs: Optional[int] = None):
    del num_epochs  # train: endless; other splits: one pass
    examples, lengths = self.examples(self._split(split))
    return common.bucketed_dataset(examples, lengths, self.task_config.buckets, self.sequence,
                                   split, batch_size, seed, shard_index, num_shards,
                                   pad_left=self.backbone.pad_left)

  def batch_spec(self, batch_size: int) -> Dict[str, jax.ShapeDtypeStruct]:
    n = self.task_config.max_seq_length
    label = jnp.float32 if self.task.labels is None else jnp.int32
    spec = {k: jax.ShapeDtypeStruct((batch_size, n), jnp.int32) for k in self.sequence}
    spec["label"] = jax.ShapeDtypeStruct((batch_size,), label)
    spec["idx"] = jax.ShapeDtypeStruct((batch_size,), jnp.int32)
    return spec

  # ---- loss / predictions -----------------------------------------------------------------
  def _outputs(self, params, batch: Batch, rng, deterministic: bool, lm_head: bool = False
               ) -> Dict[str, jax.Array]:
    rngs = {} if (deterministic or rng is None) else {"dropout": rng}
    swapped = {k: batch[k] for k in SWAPPED} if self.both_orders else {}
    return self.make_model(lm_head).apply(
        {"params": params}, batch["input_ids"], batch["attention_mask"],
        batch["token_type_ids"], deterministic=deterministic, rngs=rngs, **swapped)

  def _logits(self, params, batch: Batch, rng, deterministic: bool) -> jax.Array:
    return self._outputs(params, batch, rng, deterministic)["logits"]

  def lm_loss_per_example(self, lm_logits: jax.Array, batch: Batch) -> jax.Array:
    """Each example's mean next-token cross-entropy over its real tokens after the first:
    lm_logits [B, L, V] ([2B, L, V] with both orders: the mean of the two) -> [B]."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    if self.both_orders:
      ids = jnp.concatenate([ids, batch["swapped_input_ids"]])
      mask = jnp.concatenate([mask, batch["swapped_attention_mask"]])
    nll = losses.softmax_cross_entropy(lm_logits[:, :-1], ids[:, 1:])     # [B', L - 1]
    m = mask[:, 1:].astype(jnp.float32)
    per = jnp.sum(nll * m, axis=-1) / jnp.maximum(jnp.sum(m, axis=-1), 1.0)   # [B']
    if self.both_orders:
      half = batch["input_ids"].shape[0]
      per = 0.5 * (per[:half] + per[half:])
    return per

  def loss_fn(self, params: Any, batch: Batch, rng: Optional[jax.Array],
              deterministic: bool, normalizers: Optional[Dict[str, jax.Array]] = None
              ) -> Tuple[jax.Array, Metrics]:
    del normalizers  # one mean over examples: the step weights micro-batches exactly
    aux = self.aux_lm_weight > 0
    out = self._outputs(params, batch, rng, deterministic, lm_head=aux)
    logits = out["logits"]                                              # [B, labels]
    w = example_weights(batch)                                          # [B]
    count = jnp.sum(w)
    if self.task.labels is None:
      err = logits[:, 0] - batch["label"].astype(jnp.float32)
      per = err * err
      metrics = {}
    else:
      per = losses.softmax_cross_entropy(logits, batch["label"])
      correct = losses.top1_correct(logits, batch["label"])
      metrics = {"accuracy": (jnp.sum(correct * w), count)}
    if aux:
      lm = self.lm_loss_per_example(out["lm_logits"], batch)            # [B]
      metrics["task_loss"] = (jnp.sum(per * w), count)
      metrics["lm_loss"] = (jnp.sum(lm * w), count)
      per = per + self.aux_lm_weight * lm
    total = jnp.sum(per * w)
    loss = total / jnp.maximum(count, 1e-8)
    metrics["loss"] = (total, count)
    return loss, metrics

  def predict_fn(self, params: Any, batch: Batch) -> Dict[str, jax.Array]:
    logits = self._logits(params, batch, None, True)
    pred = logits[:, 0] if self.task.labels is None else jnp.argmax(logits, -1)
    return {"prediction": pred, "label": batch["label"], "idx": batch["idx"]}

  def compute_metrics(self, predictions: Dict[str, np.ndarray]) -> Dict[str, float]:
    from plm_jax.finetune import metrics as metrics_lib  # pylint: disable=import-outside-toplevel
    labels = predictions["label"]
    if self.task.labels is None:
      labelled = np.isfinite(labels)
    else:
      labelled = labels >= 0
    if not labelled.all():      # the test split: no metrics
      return {}
    return metrics_lib.task_metrics(self.task.name, predictions["prediction"], labels)

  def finalize(self, workdir: str, predict) -> Dict[str, str]:
    """The test split's submission file (predict: split -> merged predictions)."""
    if not self.task_config.predict_test or "test" not in dict(self.task.files):
      return {}
    preds = predict("test")
    path = glue.write_submission(self.task, os.path.join(workdir, "glue_submission"),
                                 preds["idx"], preds["prediction"])
    out = {"submission": path}
    # A test file with labels (ChnSentiCorp's; GLUE's have none): its metrics too.
    test_metrics = self.compute_metrics(preds)
    if test_metrics:
      out["test metrics"] = os.path.join(workdir, "test_metrics.json")
      with open(out["test metrics"], "w", encoding="utf-8") as f:
        json.dump(test_metrics, f, indent=1, sort_keys=True)
      print("test split: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(test_metrics.items())),
            flush=True)
    return out
