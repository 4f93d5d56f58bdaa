r"""GLUE with ELMo as features: `glue` with config.model.family=elmo (GlueFinetune.variant).

  python main.py --config=configs/glue.py:rte --workdir=/tmp/glue_elmo_rte \
      --config.model.family=elmo --config.init.hf_dir=DIR --config.optimizer.learning_rate=1e-3

DIR: a bilm-tf model (options.json + one .hdf5 weight file), a plm_jax ELMo export (the
WORKDIR/export of configs/elmo.py or configs/elmo_books_wiki.py), or an export of this
objective (its biLM is read). There is no fresh ELMo: init.hf_dir is required.

Inputs (words, not word pieces): each text is split as plm_jax's ELMo pretraining splits a
line (elmo_chars.split_words: ASCII whitespace, and every ASCII punctuation character a word
of its own), cut to task.max_seq_length - 2 words (the end dropped), wrapped as
<S> words </S> (bilm-tf's Batcher) and spelled in bilm-tf's character ids
(elmo_chars.word_char_ids, the biLM's max_characters_per_token). The two texts of a pair are
encoded separately by one shared encoder. task.max_seq_length and task.buckets count words of
each text (markers included); a pair goes to the bucket of its longer text. Host examples
hold word indexes into the split's table of distinct words (`words_a`, `words_b`); tf.data
turns them into `chars_a` / `chars_b` int32 [B, bucket length, max chars] (padding words
are all zeros).

Model: plm_jax.finetune.elmo_features.ElmoTaskModel with config.model.elmo's sizes
(common.ElmoSection: the GLUE baseline's by default). With model.elmo.fine_tune_bilm False
(the default, as the paper) the biLM runs without dropout, under stop_gradient, and its
params are frozen in the optimizer (Objective.frozen_params: no update, no weight decay, no
optimizer state).

Loss, dev metrics, the best checkpoint (an export of family elmo with the ElmoTaskConfig)
and the test submission are the glue objective's. Of config.model only family and elmo
apply (dtype float32, no scan / remat); config.vocab and config.task.tfds_name and
aux_lm_weight do not. The trainer's optimizer section applies as for the other families;
its default is BERT's recipe (2e-5, 3 epochs) for pretrained weights, while this task model
starts from scratch (the GLUE baseline: Adam at 1e-4, batch 128, until the dev score stopped
improving; README.md's RTE runs: 1e-3 for 10 epochs).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from plm_jax.configlib import ConfigError, fail
from plm_jax.data import elmo_chars
from plm_jax.finetune import common, elmo_features, glue
from plm_jax.finetune.objective_glue import GlueFinetune
from plm_jax.objectives.base import Objective

WORDS = ("words_a", "words_b")      # host examples: word indexes into the split's table
CHARS = ("chars_a", "chars_b")      # batches: character ids [B, T, max chars]


def word_table(sentences: Sequence[Sequence[str]], max_chars: int
               ) -> Tuple[List[np.ndarray], np.ndarray]:
  """Sentences of words -> (each as int32 indexes into the table, the table int32
  [distinct words + 1, max_chars]: row 0 zeros (a padding word), row i the character ids of
  the i-th distinct word in order of appearance)."""
  index: Dict[str, int] = {}
  ids = [np.asarray([index.setdefault(w, len(index) + 1) for w in s], np.int32)
         for s in sentences]
  table = np.zeros((len(index) + 1, max_chars), np.int32)
  for word, i in index.items():
    table[i] = elmo_chars.word_char_ids(word, max_chars)
  return ids, table


def sentence_words(text: str, max_words: int) -> List[str]:
  """<S> words </S> of one text, at most max_words in all (the last words dropped)."""
  return [elmo_chars.BOS] + elmo_chars.split_words(text)[:max_words - 2] + [elmo_chars.EOS]


class ElmoGlueFinetune(GlueFinetune):
  """GLUE classification / regression on a (frozen) biLM's features (see the module doc)."""

  def __init__(self, config):
    # Objective's constructor only: there is no Backbone / Checkpoint for ELMo (characters in,
    # a biLM directory), so FinetuneObjective's and GlueFinetune's are replaced by this one.
    Objective.__init__(self, config)  # pylint: disable=non-parent-init-called
    self.family = common.ELMO
    self.task_config = self.sections["task"]
    self.task = glue.TASKS[self.task_config.name]
    self.model_section = self.sections["model"]
    self.elmo: common.ElmoSection = self.model_section.elmo
    self._check_sections()
    self.source = self.sections["init"].hf_dir
    try:
      self.bilm_config = elmo_features.read_bilm_config(self.source)
    except (ValueError, FileNotFoundError) as e:
      raise ConfigError(f"config.init.hf_dir: {str(e).splitlines()[0]}") from None
    self.aux_lm_weight = 0.0
    self.both_orders = False
    n = 2 if self.task.is_pair else 1
    self.sequence = WORDS[:n]
    self.chars = CHARS[:n]
    self.variable_length_features = self.chars
    self._examples: Dict[str, Any] = {}
    self._tables: Dict[str, np.ndarray] = {}
    self._model_config = None
    self._vocab = None

  def _check_sections(self) -> None:
    init, m, t = self.sections["init"], self.model_section, self.task_config
    if not init.hf_dir:
      fail("config.init.hf_dir", init.hf_dir, "family elmo needs a pretrained biLM: a bilm-tf "
           "directory (options.json + one .hdf5) or a plm_jax ELMo export (WORKDIR/export "
           "of configs/elmo.py)")
    for key, value, plain in (("dtype", m.dtype, "float32"), ("scan_layers", m.scan_layers, False),
                              ("remat_policy", m.remat_policy, "none")):
      if value != plain:
        fail(f"config.model.{key}", value, f"not available for family elmo; use {plain!r}")
    if self.sections["vocab"].path:
      fail("config.vocab.path", self.sections["vocab"].path,
           "family elmo reads characters, not a vocabulary; leave it empty")
    if t.tfds_name:
      fail("config.task.tfds_name", t.tfds_name, "not used by family elmo (TFDS glue/<task>)")
    if t.aux_lm_weight > 0:
      fail("config.task.aux_lm_weight", t.aux_lm_weight, "family elmo has no causal LM for an "
           "auxiliary LM loss; use 0 or -1")

  def check_run(self, run) -> None:
    if run.optimizer.layer_decay != 1.0:
      fail("config.optimizer.layer_decay", run.optimizer.layer_decay,
           "family elmo has no layer-wise learning rates; use 1.0")

  # ---- model ----------------------------------------------------------------------------
  def model_config(self) -> elmo_features.ElmoTaskConfig:
    if self._model_config is None:
      e = self.elmo
      cfg = elmo_features.ElmoTaskConfig(
          self.bilm_config, num_labels=self.task.num_labels, fine_tune_bilm=e.fine_tune_bilm,
          layer_norm=e.layer_norm, task_dim=e.task_dim, dropout=e.dropout,
          task_layers=e.task_layers, mlp_dim=e.mlp_dim)
      cfg.check()
      self._model_config = cfg
    return self._model_config

  def vocabulary(self):
    return None                     # characters: no tokenizer files to export

  def make_model(self, lm_head: bool = False) -> elmo_features.ElmoTaskModel:
    del lm_head
    return elmo_features.ElmoTaskModel(self.model_config())

  def init_params(self, rng: jax.Array) -> Any:
    """Fresh mix and task params; the biLM's are zeros: initial_params always replaces them
    from init.hf_dir, and skipping their random initialisers saves most of this function's
    compile time (~13 of 16 s for the bilm-tf test model on CPU)."""
    model = self.make_model()
    chars = jnp.asarray(elmo_chars.batch_to_char_ids(
        [["a"]], self.bilm_config.max_characters_per_token))               # [1, 3, C]
    args = (chars, chars if self.task.is_pair else None)
    shapes = jax.eval_shape(
        lambda r: model.init({"params": r}, *args, deterministic=True)["params"], rng)
    bilm = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                        shapes["encoder"][elmo_features.BILM])
    _, variables = model.apply({"params": {"encoder": {elmo_features.BILM: bilm}}}, *args,
                               deterministic=True, rngs={"params": rng}, mutable=["params"])
    return variables["params"]

  def initial_params(self) -> Optional[Dict]:
    bilm = elmo_features.load_bilm(self.source)
    return {"encoder": {elmo_features.BILM: bilm.params}}

  def frozen_params(self, params: Any) -> Any:
    if self.elmo.fine_tune_bilm:
      return None
    labels = elmo_features.trainable_labels(params, self.model_config())
    return jax.tree.map(lambda label: label == "frozen", labels)

  def lr_scales(self, params: Any, decay: float) -> Any:
    del params, decay
    return None

  def input_ranges(self) -> Dict[str, int]:
    out = {k: int(self.bilm_config.n_characters) for k in self.chars}
    if self.task.labels is not None:
      out["label"] = self.task.num_labels
    return out

  # ---- data -----------------------------------------------------------------------------
  def examples(self, split: str):
    """{words_a, (words_b), label, idx} of a split and each pair's longer length in words
    (built once, with the split's word table)."""
    if split not in self._examples:
      t = self.task_config
      rows = glue.read_split(self.task, split, t.data_dir, t.tfds_data_dir)
      n = t.max_seq_length
      texts = [sentence_words(r["text_a"], n) for r in rows]
      if self.task.is_pair:
        texts += [sentence_words(r["text_b"], n) for r in rows]
      ids, table = word_table(texts, self.bilm_config.max_characters_per_token)
      label_dtype = np.float32 if self.task.labels is None else np.int32
      out, lengths = [], []
      for i, r in enumerate(rows):
        ex = {WORDS[0]: ids[i]}
        if self.task.is_pair:
          ex[WORDS[1]] = ids[len(rows) + i]
        ex["label"] = np.asarray(r["label"], label_dtype)
        ex["idx"] = np.asarray(r["idx"], np.int32)
        out.append(ex)
        lengths.append(max(len(ex[k]) for k in self.sequence))
      self._examples[split] = (out, lengths)
      self._tables[split] = table
    return self._examples[split]

  def get_dataset(self, split: str, batch_size: int, seed: int, shard_index: int = 0,
                  num_shards: int = 1, num_epochs: Optional[int] = None):
    del num_epochs  # train: endless; other splits: one pass
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    name = self._split(split)
    examples, lengths = self.examples(name)
    ds = common.bucketed_dataset(examples, lengths, self.task_config.buckets, self.sequence,
                                 split, batch_size, seed, shard_index, num_shards)
    table = tf.constant(self._tables[name])

    def spell(batch):
      out = {k: v for k, v in batch.items() if k not in WORDS}
      for words, chars in zip(self.sequence, self.chars):
        out[chars] = tf.gather(table, batch[words])                 # [B, T, max chars]
      return out

    return ds.map(spell)

  def batch_spec(self, batch_size: int) -> Dict[str, jax.ShapeDtypeStruct]:
    shape = (batch_size, self.task_config.max_seq_length,
             self.bilm_config.max_characters_per_token)
    spec = {k: jax.ShapeDtypeStruct(shape, jnp.int32) for k in self.chars}
    label = jnp.float32 if self.task.labels is None else jnp.int32
    spec["label"] = jax.ShapeDtypeStruct((batch_size,), label)
    spec["idx"] = jax.ShapeDtypeStruct((batch_size,), jnp.int32)
    return spec

  def tokens_per_batch(self, spec: Dict[str, jax.ShapeDtypeStruct]) -> int:
    """Word positions of a batch (both texts of a pair, padding included)."""
    return int(sum(spec[k].shape[0] * spec[k].shape[1] for k in self.chars))

  # ---- loss / predictions -----------------------------------------------------------------
  def _outputs(self, params, batch, rng, deterministic: bool, lm_head: bool = False
               ) -> Dict[str, jax.Array]:
    del lm_head
    rngs = {} if (deterministic or rng is None) else {"dropout": rng}
    pair = batch[CHARS[1]] if self.task.is_pair else None
    return self.make_model().apply({"params": params}, batch[CHARS[0]], pair,
                                   deterministic=deterministic, rngs=rngs)
