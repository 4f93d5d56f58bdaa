"""Train step: gradient accumulation is exact, optimizer pieces, metrics plumbing."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import train_fakes
from plm_jax.train import optimizers, step as step_lib
from plm_jax.train.config import validate_config
from plm_jax.train.train_state import TrainState


def _one_step(objective, batch, accum, tx):
  params = jax.tree_util.tree_map(
      jnp.asarray, __import__("flax").linen.meta.unbox(objective.init_params(jax.random.PRNGKey(0))))
  state = TrainState.create(params, tx)
  fn = jax.jit(lambda s, b: step_lib.train_step(s, b, jax.random.PRNGKey(1), objective=objective,
                                                tx=tx, grad_accum_steps=accum))
  new_state, metrics = fn(state, {k: jnp.asarray(v) for k, v in batch.items()})
  grads = jax.tree_util.tree_map(lambda a, b: a - b, params, new_state.params)  # sgd(1): -g
  return grads, step_lib.metrics_to_host(metrics)


@pytest.mark.parametrize("make", ["fake", "bert_mlm_only"])
def test_two_micro_batches_of_4_equal_one_batch_of_8(make):
  if make == "fake":
    c = train_fakes.fake_config()
    objective = train_fakes.FakeObjective(c)
    batch = next(objective.get_dataset("train", 8, seed=3).as_numpy_iterator())
  else:
    c = train_fakes.tiny_bert_config()
    c.mlm.nsp = False  # the MLM mean over masked tokens accumulates exactly
    objective = train_fakes.FixedVocabBert(c)
    batch = train_fakes.bert_batches(1, seed=3)[0]
  # Micro-batches carry different numbers of weighted items: the weighting matters.
  tx = optax.sgd(1.0)
  g1, m1 = _one_step(objective, batch, 1, tx)
  g2, m2 = _one_step(objective, batch, 2, tx)
  for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g2)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)
  for k in m1:
    if k != "grad_norm":
      np.testing.assert_allclose(m1[k], m2[k], rtol=1e-5, err_msg=k)
  np.testing.assert_allclose(m1["grad_norm"], m2["grad_norm"], rtol=1e-4)


def test_bert_mlm_plus_nsp_gradients_accumulate_exactly():
  """MLM mean over masked tokens + NSP mean over examples: micro-batches differ in
  masked-token counts, so per-micro-batch means would not add up; normalizers do."""
  c = train_fakes.tiny_bert_config()
  assert c.mlm.nsp
  objective = train_fakes.FixedVocabBert(c)
  batch = train_fakes.bert_batches(1, seed=5)[0]
  counts = batch["masked_lm_weights"].reshape(-1, 4, batch["masked_lm_weights"].shape[-1])
  assert len(set(counts.sum(axis=(0, 2)).tolist())) > 1, "micro-batches should differ in count"
  g1, m1 = _one_step(objective, batch, 1, optax.sgd(1.0))
  g4, m4 = _one_step(objective, batch, 4, optax.sgd(1.0))
  for a, b in zip(jax.tree_util.tree_leaves(g1), jax.tree_util.tree_leaves(g4)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)
  np.testing.assert_allclose(m1["loss"], m4["loss"], rtol=1e-5)
  np.testing.assert_allclose(m1["loss"], m1["mlm_loss"] + m1["nsp_loss"], rtol=1e-5)


def test_bert_nsp_metrics_accumulate_exactly():
  c = train_fakes.tiny_bert_config()
  objective = train_fakes.FixedVocabBert(c)
  batch = train_fakes.bert_batches(1, seed=4)[0]
  _, m1 = _one_step(objective, batch, 1, optax.sgd(1.0))
  _, m4 = _one_step(objective, batch, 4, optax.sgd(1.0))
  for k in ("mlm_loss", "mlm_accuracy", "nsp_loss", "nsp_accuracy"):
    np.testing.assert_allclose(m1[k], m4[k], rtol=1e-5, err_msg=k)
  assert 0.0 <= m1["mlm_accuracy"] <= 1.0 and m1["mlm_loss"] > 0


def test_bert_loss_matches_independent_reference():
  """MLM mean over real masked tokens + NSP mean, recomputed with numpy."""
  c = train_fakes.tiny_bert_config()
  objective = train_fakes.FixedVocabBert(c)
  params = __import__("flax").linen.meta.unbox(objective.init_params(jax.random.PRNGKey(0)))
  batch = {k: jnp.asarray(v) for k, v in train_fakes.bert_batches(1, seed=5)[0].items()}
  loss, metrics = objective.loss_fn(params, batch, None, deterministic=True)
  out = objective.make_model().apply(
      {"params": params}, input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"],
      attention_mask=batch["attention_mask"],
      masked_lm_positions=batch["masked_lm_positions"], deterministic=True)
  lp = np.asarray(jax.nn.log_softmax(np.asarray(out["prediction_logits"], np.float64)))
  ids, w = np.asarray(batch["masked_lm_ids"]), np.asarray(batch["masked_lm_weights"])
  nll = -np.take_along_axis(lp, ids[..., None], -1)[..., 0]
  mlm = (nll * w).sum() / w.sum()
  lpn = np.asarray(jax.nn.log_softmax(np.asarray(out["seq_relationship_logits"], np.float64)))
  nsp = -np.take_along_axis(lpn, np.asarray(batch["next_sentence_label"])[:, None], -1).mean()
  np.testing.assert_allclose(float(loss), mlm + nsp, rtol=1e-5)
  s, wt = metrics["mlm_loss"]
  np.testing.assert_allclose(float(s) / float(wt), mlm, rtol=1e-5)
  assert float(wt) == w.sum()


def test_step_key_depends_on_step_only():
  """Same state step and base rng -> same dropout; the step key changes per step."""
  c = train_fakes.tiny_bert_config()
  c.model.hidden_dropout_rate = 0.1
  objective = train_fakes.FixedVocabBert(c)
  tx = optax.sgd(0.0)
  params = __import__("flax").linen.meta.unbox(objective.init_params(jax.random.PRNGKey(0)))
  batch = {k: jnp.asarray(v) for k, v in train_fakes.bert_batches(1)[0].items()}
  fn = jax.jit(lambda s: step_lib.train_step(s, batch, jax.random.PRNGKey(7),
                                             objective=objective, tx=tx)[1]["loss"][0])
  s0 = TrainState.create(params, tx)
  assert float(fn(s0)) == float(fn(s0))
  assert float(fn(s0)) != float(fn(s0.replace(step=s0.step + 1)))


def test_weight_decay_mask_and_schedule():
  c = train_fakes.tiny_bert_config(num_steps=100)
  c.optimizer.update(warmup_steps=10, learning_rate=1.0, decay="linear", end_learning_rate=0.0)
  sched = optimizers.learning_rate_schedule(c.optimizer, c.train.num_steps)
  assert float(sched(0)) == 0.0 and abs(float(sched(10)) - 1.0) < 1e-6
  assert abs(float(sched(55)) - 0.5) < 1e-6 and float(sched(100)) == 0.0
  c.optimizer.decay = "cosine"
  assert abs(float(optimizers.learning_rate_schedule(c.optimizer, c.train.num_steps)(55)) - 0.5) < 1e-6
  objective = train_fakes.FixedVocabBert(c)
  params = __import__("flax").linen.meta.unbox(objective.init_params(jax.random.PRNGKey(0)))
  mask = optimizers.weight_decay_mask(params)
  flat = {"/".join(str(getattr(k, "key", k)) for k in p): v
          for p, v in jax.tree_util.tree_flatten_with_path(mask)[0]}
  assert not any(v for k, v in flat.items() if k.endswith("bias") or k.endswith("scale"))
  assert any(v for k, v in flat.items() if "embedding" in k)
  assert sum(flat.values()) >= 2 * 6  # q/k/v/out/mlp kernels of 2 layers at least


@pytest.mark.parametrize("name,key", [("adamw2", "name"), ("exp", "decay")])
def test_unknown_optimizer_names_are_config_errors(name, key):
  c = train_fakes.tiny_bert_config()
  c.optimizer[key] = name
  with pytest.raises(ValueError, match=f"config.optimizer.{key}='{name}'"):
    optimizers.make_optimizer(c.optimizer, c.train.num_steps)
  with pytest.raises(ValueError, match=f"config.optimizer.{key}='{name}': unknown; choose one"):
    validate_config(c)


def test_lamb_and_clipping_build_and_step():
  c = train_fakes.fake_config()
  c.optimizer.update(name="lamb", grad_clip_norm=0.5)
  tx = optimizers.make_optimizer(c.optimizer, c.train.num_steps)
  objective = train_fakes.FakeObjective(c)
  batch = next(objective.get_dataset("train", 8, seed=0).as_numpy_iterator())
  g, m = _one_step(objective, batch, 1, tx)
  assert np.isfinite(m["loss"]) and all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(g))


@pytest.mark.parametrize("clip_norm", [0.0, 0.05, 1e3])
def test_clipped_adamw_matches_the_optax_chain(clip_norm):
  """The fused AdamW equals optax's clip_by_global_norm + adamw (mask, schedule) step by step."""
  import optax  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  params = {"dense": {"kernel": jnp.asarray(rng.normal(size=(6, 5)), jnp.float32),
                      "bias": jnp.asarray(rng.normal(size=(5,)), jnp.float32)},
            "norm": {"scale": jnp.ones((5,), jnp.float32)}}
  mask = optimizers.weight_decay_mask
  sched = optax.linear_schedule(0.0, 1e-2, 3)
  kw = dict(b1=0.9, b2=0.98, eps=1e-6, weight_decay=0.1, mask=mask)
  ref = optax.adamw(sched, **kw)
  if clip_norm > 0:
    ref = optax.chain(optax.clip_by_global_norm(clip_norm), ref)
  fused = optimizers.clipped_adamw(sched, clip_norm=clip_norm, **kw)
  p_ref, p_fused = params, params
  s_ref, s_fused = ref.init(params), fused.init(params)
  for step in range(6):
    grads = jax.tree.map(lambda x, s=step: jnp.asarray(rng.normal(size=x.shape), x.dtype) * (s + 1),
                         params)
    u, s_ref = ref.update(grads, s_ref, p_ref)
    p_ref = optax.apply_updates(p_ref, u)
    u, s_fused = fused.update(grads, s_fused, p_fused)
    p_fused = optax.apply_updates(p_fused, u)
  moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in
              zip(jax.tree_util.tree_leaves(p_ref), jax.tree_util.tree_leaves(params)))
  assert moved > 1e-3
  for a, b in zip(jax.tree_util.tree_leaves(p_ref), jax.tree_util.tree_leaves(p_fused)):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-6, atol=1e-7)
  assert int(s_fused.count) == 6
