"""The `squad` objective: SQuAD v1.1 span extraction (start / end logits per token).

  python main.py --config=configs/squad.py:article_split --config.init.hf_dir=DIR

Data: the official JSON files (task.train_path / task.eval_path) or TFDS `squad`
(task.source='tfds'). Only the dev file is on this machine: with
task.article_split > 0 one file is split by article (plm_jax.finetune.squad.article_split)
and every output says so (the run prints the split's label, and
workdir/squad_eval.json records it next to predictions.json).

Windows: BERT's sliding windows (max_seq_length, doc_stride, max_query_length) through
plm_jax.finetune.squad.featurize; batches are length-bucketed like GLUE's. Loss: the mean
of the start and end cross-entropies over the window's positions (BERT run_squad).
Evaluation: n-best decoding (n_best, max_answer_length), then the official exact match
and F1; at the end predictions.json in the official format.
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
from plm_jax.finetune import batching, common
from plm_jax.finetune.heads import FinetuneModel
from plm_jax.finetune.objective_base import SEQUENCE, SHARED_SECTIONS, FinetuneObjective
from plm_jax.objectives import losses


@dataclasses.dataclass(frozen=True)
class SquadTaskConfig:
  source: str = param("json", choices=("json", "tfds"))
  train_path: str = ""                    # json: train-v1.1.json (or the file to split)
  eval_path: str = ""                     # json: dev-v1.1.json; empty with article_split
  article_split: float = param(0.0, ge=0.0, lt=1.0)  # > 0: hold out this share of the
                                          # articles of train_path for evaluation
  split_seed: int = 0
  tfds_data_dir: str = ""
  max_seq_length: int = param(384, ge=32)
  doc_stride: int = param(128, gt=0)
  max_query_length: int = param(64, gt=0)
  buckets: Tuple[int, ...] = (128, 256, 384)
  n_best: int = param(20, gt=0)
  max_answer_length: int = param(30, gt=0)
  eval_examples: int = param(0, ge=0)     # > 0: evaluate on the first N questions only

  def check(self, prefix: str) -> None:
    batching.check_buckets(self.buckets, self.max_seq_length, f"{prefix}.buckets")
    if self.source == "json":
      if not self.train_path:
        fail(f"{prefix}.train_path", self.train_path, "empty: give the SQuAD JSON file")
      if not self.eval_path and not self.article_split:
        fail(f"{prefix}.eval_path", self.eval_path,
             "empty: give the dev JSON file, or set article_split to split train_path")


SQUAD_FAMILIES = ("bert", "albert")   # backbones whose inputs are [CLS] A [SEP] B [SEP]


@register("squad")
class SquadFinetune(FinetuneObjective):
  SECTIONS = dict(task=SquadTaskConfig, **SHARED_SECTIONS)

  def __init__(self, config):
    super().__init__(config)
    self.task: SquadTaskConfig = self.sections["task"]
    if self.family not in SQUAD_FAMILIES:
      fail("config.model.family", self.family,
           f"SQuAD windows are built in BERT's [CLS] question [SEP] context [SEP] layout, "
           f"which the {self.family} backbone does not use; SQuAD runs for {list(SQUAD_FAMILIES)}")
    self._questions: Optional[Dict[str, Any]] = None
    self._features: Dict[str, Any] = {}
    self.split_label = ""

  def input_ranges(self) -> Dict[str, int]:
    n = self.task.max_seq_length
    return dict(super().input_ranges(), start_positions=n, end_positions=n)

  def make_model(self) -> FinetuneModel:
    return FinetuneModel(self.family, self.model_config(), head="span",
                         classifier_dropout=self.model_section.head_dropout)

  # ---- data -----------------------------------------------------------------------------
  def questions(self) -> Dict[str, Any]:
    """{'train': [...], 'validation': [...]} question dicts (read once)."""
    if self._questions is None:
      from plm_jax.finetune import squad  # pylint: disable=import-outside-toplevel
      t = self.task
      if t.source == "tfds":
        train = squad.read_squad_tfds("train", t.tfds_data_dir or None)
        dev = squad.read_squad_tfds("validation", t.tfds_data_dir or None)
        self.split_label = "squad-v1.1 (tfds)"
      elif t.article_split:
        split = squad.article_split(squad.read_squad(t.train_path), t.article_split,
                                    t.split_seed)
        train, dev = split.train, split.eval
        self.split_label = split.label
      else:
        train, dev = squad.read_squad(t.train_path), squad.read_squad(t.eval_path)
        self.split_label = f"squad-v1.1 ({os.path.basename(t.eval_path)})"
      if t.eval_examples:
        dev = dev[:t.eval_examples]
      if jax.process_index() == 0:
        print(f"SQuAD: {len(train)} training / {len(dev)} evaluation questions; "
              f"evaluation set: {self.split_label}", flush=True)
      self._questions = {"train": train, "validation": dev}
    return self._questions

  def features(self, split: str):
    """(SquadFeatures, per-window examples for batching, their lengths), built once."""
    if split not in self._features:
      from plm_jax.finetune import squad  # pylint: disable=import-outside-toplevel
      if split not in ("train", "validation"):
        raise ValueError(f"SQuAD objective: no split {split!r} (train, validation)")
      t = self.task
      feats = squad.featurize(self.questions()[split], self.vocabulary(), t.max_seq_length,
                              t.doc_stride, t.max_query_length, training=(split == "train"))
      a = feats.arrays
      lengths = a["attention_mask"].sum(axis=1).astype(int).tolist()
      rows = []
      for i, n in enumerate(lengths):
        rows.append({"input_ids": a["input_ids"][i, :n], "token_type_ids": a["token_type_ids"][i, :n],
                     "attention_mask": a["attention_mask"][i, :n],
                     "start_positions": np.int32(a["start_positions"][i]),
                     "end_positions": np.int32(a["end_positions"][i]),
                     "feature_index": np.int32(i)})
      self._features[split] = (feats, rows, lengths)
    return self._features[split]

  def num_train_examples(self) -> int:
    return len(self.features("train")[1])

  def get_dataset(self, split: str, batch_size: int, seed: int, shard_index: int = 0,
                  num_shards: int = 1, num_epochs: Optional[int] = None):
    del num_epochs
    _, rows, lengths = self.features(split)
    return common.bucketed_dataset(rows, lengths, self.task.buckets, SEQUENCE, split,
                                   batch_size, seed, shard_index, num_shards)

  def batch_spec(self, batch_size: int) -> Dict[str, jax.ShapeDtypeStruct]:
    n = self.task.max_seq_length
    spec = {k: jax.ShapeDtypeStruct((batch_size, n), jnp.int32) for k in SEQUENCE}
    for k in ("start_positions", "end_positions", "feature_index"):
      spec[k] = jax.ShapeDtypeStruct((batch_size,), jnp.int32)
    return spec

  # ---- loss / predictions -----------------------------------------------------------------
  def _logits(self, params, batch: Batch, rng, deterministic: bool):
    rngs = {} if (deterministic or rng is None) else {"dropout": rng}
    out = self.make_model().apply(
        {"params": params}, batch["input_ids"], batch["attention_mask"],
        batch["token_type_ids"], deterministic=deterministic, rngs=rngs)
    return out["start_logits"], out["end_logits"]                      # [B, L] each

  def loss_fn(self, params: Any, batch: Batch, rng: Optional[jax.Array],
              deterministic: bool, normalizers: Optional[Dict[str, jax.Array]] = None
              ) -> Tuple[jax.Array, Metrics]:
    del normalizers
    start, end = self._logits(params, batch, rng, deterministic)
    w = example_weights(batch)
    count = jnp.sum(w)
    nll = 0.5 * (losses.softmax_cross_entropy(start, batch["start_positions"])
                 + losses.softmax_cross_entropy(end, batch["end_positions"]))   # [B]
    exact = (losses.top1_correct(start, batch["start_positions"])
             * losses.top1_correct(end, batch["end_positions"]))
    total = jnp.sum(nll * w)
    return total / jnp.maximum(count, 1e-8), {
        "loss": (total, count), "span_accuracy": (jnp.sum(exact * w), count)}

  def predict_fn(self, params: Any, batch: Batch) -> Dict[str, jax.Array]:
    start, end = self._logits(params, batch, None, True)
    pad = self.task.max_seq_length - start.shape[1]      # back to one width for the host
    start = jnp.pad(start, ((0, 0), (0, pad)), constant_values=-1e9)
    end = jnp.pad(end, ((0, 0), (0, pad)), constant_values=-1e9)
    return {"start_logits": start, "end_logits": end, "feature_index": batch["feature_index"]}

  def answers(self, predictions: Dict[str, np.ndarray]) -> Dict[str, str]:
    from plm_jax.finetune import squad  # pylint: disable=import-outside-toplevel
    feats, _, _ = self.features("validation")
    n = feats.arrays["input_ids"].shape[0]
    order = np.argsort(predictions["feature_index"], kind="stable")
    if len(order) != n:
      raise ValueError(f"SQuAD: {len(order)} window predictions for {n} windows")
    return squad.postprocess(feats, predictions["start_logits"][order],
                             predictions["end_logits"][order], self.task.n_best,
                             self.task.max_answer_length)

  def compute_metrics(self, predictions: Dict[str, np.ndarray]) -> Dict[str, float]:
    from plm_jax.finetune import squad  # pylint: disable=import-outside-toplevel
    scores = squad.evaluate(self.questions()["validation"], self.answers(predictions))
    return {"exact_match": float(scores["exact_match"]), "f1": float(scores["f1"])}

  def finalize(self, workdir: str, predict) -> Dict[str, str]:
    from plm_jax.finetune import squad  # pylint: disable=import-outside-toplevel
    answers = self.answers(predict("validation"))
    path = os.path.join(workdir, "predictions.json")
    if jax.process_index() == 0:
      squad.write_predictions(path, answers)
      scores = squad.evaluate(self.questions()["validation"], answers)
      with open(os.path.join(workdir, "squad_eval.json"), "w", encoding="utf-8") as f:
        json.dump({"evaluation_set": self.split_label, "questions": len(answers),
                   "exact_match": scores["exact_match"], "f1": scores["f1"]}, f, indent=1)
    return {"predictions": path}
