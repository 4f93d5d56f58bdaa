"""What the fine-tuning objectives share (glue, squad): a base class, not registered.

Sections `init`, `model`, `vocab` (plm_jax.finetune.common), the starting checkpoint, the
vocabulary (the checkpoint's tokenizer files unless config.vocab names one), the model
config with the run's overrides, fresh and pretrained params, layer-wise learning rates,
and length-bucketed input features. A subclass adds its `task` section (with
`max_seq_length`), its head, data, loss and metrics.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp

from plm_jax.configlib import fail
from plm_jax.data.config import VocabConfig
from plm_jax.finetune import common
from plm_jax.objectives.base import Objective

SEQUENCE = ("input_ids", "attention_mask", "token_type_ids")
SHARED_SECTIONS = {"init": common.InitConfig, "model": common.FinetuneModelConfig,
                   "vocab": VocabConfig}


class FinetuneObjective(Objective):
  variable_length_features = SEQUENCE
  text_to_text = False          # True: the objective fine-tunes "text_to_text" backbones (T5)

  def __init__(self, config):
    super().__init__(config)
    self.model_section: common.FinetuneModelConfig = self.sections["model"]
    self.checkpoint = common.Checkpoint(self.sections["init"], self.model_section)
    self.backbone = self.checkpoint.backbone
    self.family = self.backbone.family
    if (self.backbone.classifier == "text_to_text") != self.text_to_text:
      fail("config.model.family", self.family,
           f"objective {self.name!r} does not fine-tune this backbone (text-to-text: "
           "objective glue_t2t with family t5, configs/glue_t5.py)")
    self._vocab = None
    self._model_config = None

  def max_seq_length(self) -> int:
    return int(self.sections["task"].max_seq_length)

  def vocabulary(self):
    if self._vocab is None:
      from plm_jax.data import vocab as vocab_lib  # pylint: disable=import-outside-toplevel
      self._vocab = vocab_lib.get_vocabulary(self.checkpoint.vocab_config(self.sections["vocab"]))
    return self._vocab

  def model_config(self):
    if self._model_config is None:
      cfg = self.checkpoint.model_config(self.vocabulary())
      max_pos = getattr(cfg, "max_position_embeddings", None)
      if max_pos is not None and self.max_seq_length() > max_pos:
        fail("config.task.max_seq_length", self.max_seq_length(),
             f"must be <= the model's max_position_embeddings={max_pos}")
      self._model_config = cfg
    return self._model_config

  def input_ranges(self) -> Dict[str, int]:
    return common.model_input_ranges(self.model_config())

  def check_run(self, run) -> None:
    if run.optimizer.layer_decay != 1.0 and self.model_section.scan_layers:
      fail("config.optimizer.layer_decay", run.optimizer.layer_decay,
           "layer-wise decay needs unrolled layers (config.model.scan_layers=False)")
    why = self.backbone.layer_decay_error(self.model_config()) if (
        run.optimizer.layer_decay != 1.0) else ""
    if why:
      fail("config.optimizer.layer_decay", run.optimizer.layer_decay,
           f"layer-wise decay is undefined here: {why}; use 1.0")

  def init_params(self, rng: jax.Array) -> Any:
    ids = jnp.zeros((1, 8), jnp.int32)
    return self.make_model().init({"params": rng}, ids, jnp.ones_like(ids), jnp.zeros_like(ids),
                                  deterministic=True)["params"]

  def initial_params(self) -> Optional[Dict]:
    params = self.checkpoint.backbone_params(self.model_config())
    return None if params is None else {self.backbone.module_name: params}

  def lr_scales(self, params: Any, decay: float) -> Any:
    cfg = self.model_config()
    return common.layer_scales(params, self.backbone, self.backbone.num_layers(cfg), decay)
