"""The `glue_t2t` objective: fine-tune T5 on a GLUE task as text-to-text (Raffel et al. 2020).

  python main.py --config=configs/glue_t5.py:sst2 --config.init.hf_dir=DIR

Each example becomes an input text ('sst2 sentence: ...') and a target text ('positive';
STS-B: the score rounded to 0.2, '3.6'), both SentencePiece ids ending with EOS
(plm_jax.finetune.text_to_text). Loss: the decoder's cross-entropy over the target tokens
given the targets shifted right (teacher forcing), averaged over real target tokens.
Evaluation decodes (greedy, or beam search with task.num_beams > 1) up to
task.targets_length tokens, maps each text back to a label (an output that is no label
word, or no number for STS-B, counts as wrong) and reports the task's GLUE metrics
(plm_jax.finetune.metrics) plus `invalid`, the fraction of unparseable outputs. At the end
the test split's decoded labels are written in the GLUE submission format.

Sections: `task` (GLUE's, plus targets_length, num_beams, length_penalty, extra_ids),
`init`, `model` (family t5), `vocab` (a SentencePiece model with T5's pad 0 and EOS;
empty path: the checkpoint's spiece.model). Batches: `input_ids` / `attention_mask`
[B, bucket length] (length-bucketed), `targets` [B, targets_length], `label`, `idx`.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from plm_jax.configlib import fail, param
from plm_jax.finetune import glue, text_to_text
from plm_jax.finetune.objective_base import SHARED_SECTIONS
from plm_jax.finetune.objective_glue import GlueFinetune, GlueTaskConfig
from plm_jax.models import t5_decoding
from plm_jax.models.t5 import T5ForConditionalGeneration, shift_right
from plm_jax.objectives import losses
from plm_jax.objectives.base import Batch, Metrics, example_weights, register

INPUTS = ("input_ids", "attention_mask")


@dataclasses.dataclass(frozen=True)
class T2TTaskConfig(GlueTaskConfig):
  targets_length: int = param(8, ge=2)    # target tokens (EOS included); also the decode length
  num_beams: int = param(1, ge=1)         # 1: greedy decoding (as T5 for GLUE)
  length_penalty: float = 1.0             # beam search: score / length ** length_penalty
  extra_ids: int = param(100, ge=0)       # sentinel ids on top of the SentencePiece model

  def check(self, prefix: str) -> None:
    super().check(prefix)
    if self.tfds_name:
      fail(f"{prefix}.tfds_name", self.tfds_name, "not used by glue_t2t (TFDS glue/<task>)")


@register("glue_t2t")
class GlueTextToText(GlueFinetune):
  """GLUE as text-to-text on T5ForConditionalGeneration."""
  SECTIONS = dict(task=T2TTaskConfig, **SHARED_SECTIONS)
  variable_length_features = INPUTS
  text_to_text = True

  def vocabulary(self):
    if self._vocab is None:
      from plm_jax.objectives.t5_pretrain import t5_vocabulary  # pylint: disable=import-outside-toplevel
      self._vocab = t5_vocabulary(self.checkpoint.vocab_config(self.sections["vocab"]),
                                  self.task_config.extra_ids, key="config.vocab")
    return self._vocab

  def input_ranges(self) -> Dict[str, int]:
    out = super().input_ranges()
    out["targets"] = int(self.model_config().vocab_size)
    return out

  def make_model(self) -> T5ForConditionalGeneration:
    return T5ForConditionalGeneration(self.model_config())

  def init_params(self, rng: jax.Array) -> Any:
    from plm_jax.objectives.t5_pretrain import scale_query_init  # pylint: disable=import-outside-toplevel
    cfg = self.model_config()
    ids = jnp.zeros((1, 8), jnp.int32)
    dec = jnp.zeros((1, self.task_config.targets_length), jnp.int32)
    params = self.make_model().init({"params": rng}, ids, decoder_input_ids=dec)["params"]
    return scale_query_init(params, cfg.num_heads, cfg.head_dim)

  def initial_params(self) -> Optional[Dict]:
    return self.checkpoint.backbone_params(self.model_config())   # the whole model

  # ---- data -----------------------------------------------------------------------------
  def examples(self, split: str):
    """{input_ids, attention_mask, targets [targets_length], label, idx} of a split, and the
    input lengths (built once)."""
    if split not in self._examples:
      t = self.task_config
      vocab = self.vocabulary()
      eos = int(vocab.eos_id)
      rows = glue.read_split(self.task, split, t.data_dir, t.tfds_data_dir)
      inputs = _encode(vocab, [text_to_text.inputs_text(self.task, r) for r in rows])
      targets = _encode(vocab, [text_to_text.target_text(self.task, r["label"]) for r in rows])
      label_dtype = np.float32 if self.task.labels is None else np.int32
      out, lengths = [], []
      for r, ids, tgt in zip(rows, inputs, targets):
        ids = np.append(ids[:t.max_seq_length - 1], eos).astype(np.int32)
        padded = np.zeros([t.targets_length], np.int32)
        if len(tgt):
          tgt = np.append(tgt, eos)
          if len(tgt) > t.targets_length:
            fail("config.task.targets_length", t.targets_length,
                 f"the target {text_to_text.target_text(self.task, r['label'])!r} of "
                 f"{self.task.name} {split} example {r['idx']} takes {len(tgt)} tokens "
                 "(EOS included); raise it")
          padded[:len(tgt)] = tgt
        out.append({"input_ids": ids, "attention_mask": np.ones([len(ids)], np.int32),
                    "targets": padded, "label": np.asarray(r["label"], label_dtype),
                    "idx": np.asarray(r["idx"], np.int32)})
        lengths.append(len(ids))
      self._examples[split] = (out, lengths)
    return self._examples[split]

  def batch_spec(self, batch_size: int) -> Dict[str, jax.ShapeDtypeStruct]:
    t = self.task_config
    spec = {k: jax.ShapeDtypeStruct((batch_size, t.max_seq_length), jnp.int32) for k in INPUTS}
    spec["targets"] = jax.ShapeDtypeStruct((batch_size, t.targets_length), jnp.int32)
    label = jnp.float32 if self.task.labels is None else jnp.int32
    spec["label"] = jax.ShapeDtypeStruct((batch_size,), label)
    spec["idx"] = jax.ShapeDtypeStruct((batch_size,), jnp.int32)
    return spec

  # ---- loss / predictions -----------------------------------------------------------------
  def loss_fn(self, params: Any, batch: Batch, rng: Optional[jax.Array],
              deterministic: bool, normalizers: Optional[Dict[str, jax.Array]] = None
              ) -> Tuple[jax.Array, Metrics]:
    del normalizers  # one mean over target tokens: the step weights micro-batches exactly
    cfg = self.model_config()
    targets = batch["targets"]                                          # [B, T]
    rngs = {} if (deterministic or rng is None) else {"dropout": rng}
    logits = self.make_model().apply(
        {"params": params}, batch["input_ids"], batch["attention_mask"],
        decoder_input_ids=shift_right(targets, cfg.decoder_start_token_id),
        deterministic=deterministic, rngs=rngs)["logits"]              # [B, T, V]
    w = (targets != cfg.pad_token_id).astype(jnp.float32) * example_weights(batch)[:, None]
    count = jnp.sum(w)
    total = jnp.sum(losses.softmax_cross_entropy(logits, targets) * w)
    correct = jnp.sum(losses.top1_correct(logits, targets) * w)
    return total / jnp.maximum(count, 1e-8), {"loss": (total, count),
                                              "token_accuracy": (correct, count)}

  def predict_fn(self, params: Any, batch: Batch) -> Dict[str, jax.Array]:
    t = self.task_config
    model = self.make_model()
    if t.num_beams == 1:
      tokens = t5_decoding.greedy_decode(model, params, batch["input_ids"],
                                         batch["attention_mask"], t.targets_length)
    else:
      tokens = t5_decoding.beam_search(model, params, batch["input_ids"],
                                       batch["attention_mask"], t.targets_length, t.num_beams,
                                       t.length_penalty).tokens[:, 0]
    return {"tokens": tokens, "label": batch["label"], "idx": batch["idx"]}

  def predicted_values(self, predictions: Dict[str, np.ndarray]
                       ) -> Tuple[np.ndarray, np.ndarray]:
    """Decoded texts -> (label indices / scores, valid mask) (text_to_text.prediction_values)."""
    vocab = self.vocabulary()
    texts = t5_decoding.decode_texts(vocab, predictions["tokens"], int(vocab.eos_id))
    return text_to_text.prediction_values(self.task, texts, predictions["label"])

  def compute_metrics(self, predictions: Dict[str, np.ndarray]) -> Dict[str, float]:
    values, valid = self.predicted_values(predictions)
    out = super().compute_metrics({"prediction": values, "label": predictions["label"]})
    if out:
      out["invalid"] = float(1.0 - valid.mean())
    return out

  def finalize(self, workdir: str, predict) -> Dict[str, str]:
    """The test split's submission file; an unparseable output is written as class 0 (STS-B:
    0.000)."""
    if not self.task_config.predict_test or "test" not in dict(self.task.files):
      return {}
    preds = predict("test")
    values, _ = self.predicted_values(preds)
    path = glue.write_submission(self.task, os.path.join(workdir, "glue_submission"),
                                 preds["idx"], values)
    return {"submission": path}


def _encode(vocab, texts):
  """Texts -> one int32 id array each (SentencePiece in one tf call; no EOS)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  if not texts:
    return []
  ragged = vocab.encode_tf(tf.constant(texts))
  return [np.asarray(r, np.int32) for r in ragged.to_list()]
