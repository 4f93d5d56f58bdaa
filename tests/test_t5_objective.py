"""T5 span corruption through the trainer: a few Adafactor steps of a tiny model on the
builtin corpus, the loss falls, the export converts to a transformers checkpoint; the
rsqrt schedule; config errors name their key."""
import json
import os

import numpy as np
import pytest

from configs import t5 as t5_configs
from plm_jax import configlib
from plm_jax.data import builtin, spm_train
from plm_jax.train import config as train_config
from plm_jax.train import optimizers


@pytest.fixture(scope="module")
def t5_spm(tmp_path_factory):
  d = tmp_path_factory.mktemp("spm")
  text = d / "builtin.txt"
  text.write_text("\n\n".join(builtin.iter_documents(300, seed=0)))
  spm_train.train(str(text), str(d / "t5"), 120, layout="t5", max_sentences=3000)
  return str(d / "t5.model")


def _config(spm_path, steps):
  c = t5_configs.get_config("tiny")
  c.model.update(hidden_size=32, head_dim=8, num_heads=4, intermediate_size=48, num_layers=1,
                 num_decoder_layers=1)
  c.data.update(inputs_length=32, targets_length=8, shuffle_buffer=100)
  c.data.vocab.path = spm_path
  c.data.corpus.eval_every_nth = 100
  c.train.update(batch_size=8, num_steps=steps, log_every=4, eval_every=-1,
                 checkpoint_every=steps)
  c.optimizer.update(learning_rate=0.05, warmup_steps=5)
  return c


@pytest.mark.slow   # 70-90 s: compiles and runs the train step through the trainer
def test_tiny_t5_trains_and_exports(tmp_path, t5_spm):
  from plm_jax.train import trainer  # pylint: disable=import-outside-toplevel
  workdir = str(tmp_path / "run")
  trainer.train_and_evaluate(_config(t5_spm, 12), workdir)
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  losses = [r["loss"] for r in rows if r.get("split") == "train" and "loss" in r]
  # Falls, and ends well below the uniform guess over the 220 ids (5.39).
  assert len(losses) >= 3 and losses[-1] < losses[0] and losses[-1] < np.log(220) - 0.5, losses
  import plm_jax  # pylint: disable=import-outside-toplevel
  from plm_jax.convert import export, registry  # pylint: disable=import-outside-toplevel
  family, cfg, params = export.load_export(os.path.join(workdir, "export"))
  assert family == "t5" and cfg.vocab_size == 120 + 100 and not cfg.tie_word_embeddings
  registry.save_pretrained(params, cfg, str(tmp_path / "hf"))
  model, again = plm_jax.load_pretrained(str(tmp_path / "hf"))
  assert model.config.vocab_size == cfg.vocab_size


def test_rsqrt_schedule_is_t5s():
  opt = configlib.from_config(train_config.OptimizerConfig, dict(
      name="adafactor", learning_rate=0.01, warmup_steps=10_000, decay="rsqrt"), "opt")
  lr = optimizers.learning_rate_schedule(opt, 2 ** 19)
  for step in (0, 1, 9_999, 10_000, 40_000, 2 ** 19):
    assert float(lr(step)) == pytest.approx(1 / np.sqrt(max(step, 10_000)), rel=1e-6)


def test_config_errors_name_the_key(t5_spm):
  from plm_jax.objectives.base import get_objective  # pylint: disable=import-outside-toplevel
  c = _config(t5_spm, 2)
  c.data.targets_length = 5
  with pytest.raises(configlib.ConfigError, match=r"config\.data\.targets_length=5: .* >= 8"):
    get_objective(c)
  c = _config(t5_spm, 2)
  c.model.feed_forward_proj = "swish"
  with pytest.raises(configlib.ConfigError, match=r"config\.model\.feed_forward_proj"):
    get_objective(c)
  c = _config("", 2)
  c.data.vocab.type = "builtin"
  with pytest.raises(configlib.ConfigError, match=r"config\.data\.vocab\.path.*SentencePiece"):
    get_objective(c).vocabulary()


def test_tokens_per_step_count_encoder_and_decoder_tokens(t5_spm):
  """The trainer's tokens/s for T5: every encoder input and decoder target token of the
  batch (there is no input_ids feature, which once made it count one token per row)."""
  from plm_jax.objectives.base import get_objective  # pylint: disable=import-outside-toplevel
  objective = get_objective(_config(t5_spm, 2))
  spec = objective.batch_spec(8)
  assert "input_ids" not in spec
  assert objective.tokens_per_batch(spec) == 8 * (32 + 8)
