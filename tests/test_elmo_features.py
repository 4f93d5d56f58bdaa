"""ELMo as features (plm_jax.finetune.elmo_features): frozen vs fine-tuned biLM gradients,
loading a bilm-tf model and a plm_jax export, and a tiny SST-2 run on the real data."""
import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from plm_jax.data import elmo_chars
from plm_jax.finetune import elmo_features as ef
from plm_jax.finetune import glue
from plm_jax.models.elmo import ElmoBiLM, ElmoConfig
from plm_jax.data import paths

BILM_DIR = os.path.join(paths.data_dir(), "elmo", "bilm-tf-test-model")
GLUE_DIR = os.path.join(paths.data_dir(), "glue")
needs_bilm = pytest.mark.skipif(not os.path.isdir(BILM_DIR), reason=f"{BILM_DIR} absent")
needs_glue = pytest.mark.skipif(not os.path.isdir(os.path.join(GLUE_DIR, "SST-2")),
                                reason=f"{GLUE_DIR}/SST-2 absent")

TINY = ElmoConfig(char_embedding_dim=4, filters=((1, 8), (2, 8), (3, 16)), n_highway=1,
                  lstm_dim=32, projection_dim=16, n_layers=2, dropout=0.1)


def _flat(tree):
  return {"/".join(str(getattr(k, "key", k)) for k in p): v
          for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _grads(fine_tune):
  cfg = ef.ElmoTaskConfig(TINY, num_labels=3, fine_tune_bilm=fine_tune, task_dim=8)
  a = jnp.asarray(elmo_chars.batch_to_char_ids([["a", "cat"], ["dogs", "run", "far"]]))
  b = jnp.asarray(elmo_chars.batch_to_char_ids([["it", "sat"], ["no"]]))
  model = ef.ElmoTaskModel(cfg)
  params = model.init(jax.random.PRNGKey(0), a, b)["params"]
  labels = jnp.asarray([0, 2])

  def loss(p):
    logits = model.apply({"params": p}, a, b, deterministic=False,
                         rngs={"dropout": jax.random.PRNGKey(1)})["logits"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return cfg, params, _flat(jax.grad(loss)(params))


def test_frozen_bilm_gets_zero_gradient_mix_and_task_do_not():
  cfg, params, grads = _grads(fine_tune=False)
  bilm = {k: v for k, v in grads.items() if "/bilm/" in k}
  rest = {k: v for k, v in grads.items() if "/bilm/" not in k}
  assert bilm and rest
  assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in bilm.values())
  for name in ("encoder/mix/weights", "encoder/mix/gamma", "task_output/kernel",
               "encoder/task_forward/kernel", "encoder/task_backward/kernel"):
    assert float(jnp.max(jnp.abs(grads[name]))) > 0, name
  labels = _flat(ef.trainable_labels(params, cfg))
  assert {labels[k] for k in bilm} == {"frozen"} and {labels[k] for k in rest} == {"train"}


@pytest.mark.slow   # ~47 s; the frozen case (zero biLM gradient, mix and task trained) stays
def test_fine_tuned_bilm_gets_gradient():
  cfg, params, grads = _grads(fine_tune=True)
  for name in ("encoder/bilm/forward_0/kernel", "encoder/bilm/backward_1/kernel",
               "encoder/bilm/char_encoder/char_embed"):
    assert float(jnp.max(jnp.abs(grads[name]))) > 0, name
  assert set(_flat(ef.trainable_labels(params, cfg)).values()) == {"train"}


def test_loads_a_plm_jax_export(tmp_path):
  from plm_jax.convert import export
  cfg = dataclasses.replace(TINY, vocab_size=11)
  chars = jnp.asarray(elmo_chars.batch_to_char_ids([["x"]]))
  params = ElmoBiLM(cfg).init(jax.random.PRNGKey(3), chars)["params"]
  export.save_export(str(tmp_path), params, cfg, "elmo")
  bilm = ef.load_bilm(str(tmp_path))
  assert bilm.config == dataclasses.replace(cfg, vocab_size=0) and "softmax" not in bilm.params
  for k, v in _flat(bilm.params).items():
    np.testing.assert_array_equal(v, _flat(params)[k])
  with pytest.raises(ValueError, match="neither a bilm-tf model"):
    ef.load_bilm(str(tmp_path / "params"))


@pytest.mark.slow   # an end-to-end SST-2 run (about 55 s on 2 cores)
@needs_bilm
@needs_glue
def test_tiny_sst2_run_with_the_bilm_tf_model():
  """Frozen bilm-tf test model + scalar mix + BiLSTM task model on 32 real SST-2 sentences:
  the training loss falls (slowly: the test biLM is tiny), the biLM's params stay bit-identical, the mix weights move, and
  dev predictions score with the GLUE metric."""
  bilm = ef.load_bilm(BILM_DIR)
  task = glue.TASKS["sst2"]
  train = glue.read_split(task, "train", data_dir=GLUE_DIR)[:32]
  dev = glue.read_split(task, "validation", data_dir=GLUE_DIR)[:32]
  chars = lambda rows: jnp.asarray(elmo_chars.batch_to_char_ids(
      [r["text_a"].split()[:20] for r in rows]))
  x, y = chars(train), jnp.asarray([r["label"] for r in train])
  cfg = ef.ElmoTaskConfig(bilm.config, num_labels=task.num_labels, task_dim=16, dropout=0.0)
  model = ef.ElmoTaskModel(cfg)
  params = ef.with_bilm(model.init(jax.random.PRNGKey(0), x[:1])["params"], bilm.params)
  tx = optax.multi_transform({"train": optax.adamw(1e-2), "frozen": optax.set_to_zero()},
                             ef.trainable_labels(params, cfg))
  opt = tx.init(params)

  def loss_fn(p):
    logits = model.apply({"params": p}, x, deterministic=True)["logits"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def step(p, o):
    loss, g = jax.value_and_grad(loss_fn)(p)
    updates, o = tx.update(g, o, p)
    return optax.apply_updates(p, updates), o, loss

  losses, p = [], params
  for _ in range(8):
    p, opt, loss = step(p, opt)
    losses.append(float(loss))
  assert losses[-1] < losses[0], losses        # seen: 0.694 -> 0.687 in 8 steps
  for k, v in _flat(bilm.params).items():
    np.testing.assert_array_equal(np.asarray(_flat(p["encoder"]["bilm"])[k]), v)
  assert float(jnp.max(jnp.abs(p["encoder"]["mix"]["weights"]))) > 0
  pred = jnp.argmax(model.apply({"params": p}, chars(dev))["logits"], -1)
  from plm_jax.finetune import metrics
  scores = metrics.task_metrics("sst2", np.asarray(pred), np.asarray([r["label"] for r in dev]))
  assert 0.0 <= scores["accuracy"] <= 1.0
