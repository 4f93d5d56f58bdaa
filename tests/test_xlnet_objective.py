"""XLNet permutation LM: masks vs a brute-force construction from the order, partial
prediction, the query stream never seeing its own content, memory carried across steps."""
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import xlnet as xlnet_configs
from plm_jax.data import xlnet_pretrain as data
from plm_jax.objectives.xlnet_pretrain import XlnetPermutationLm
from plm_jax.train import trainer

L, R, SEP, CLS, V = 32, 16, 1, 2, 50


def brute_force_mask(order, ends, reuse_length):
  """1 where i may not see j: i sees what comes before it in the order; a context token
  also sees its part's whole context block."""
  n = len(order)
  where = {int(p): k for k, p in enumerate(order)}
  context_end = {}
  for part, (lo, hi) in enumerate(((0, reuse_length), (reuse_length, n))):
    for p in range(lo, hi):
      context_end[p] = ends[part]
  hidden = np.ones((n, n), np.int32)
  for i in range(n):
    is_context = where[i] < context_end[i]
    for j in range(n):
      if where[j] < where[i] or (is_context and where[j] < context_end[i]):
        hidden[i, j] = 0
  return hidden


@pytest.mark.parametrize("seed", range(4))
def test_masks_equal_brute_force_and_predict_the_last_1_over_k(seed):
  rng = np.random.default_rng(seed)
  goals = data.split_predictions(int(round(L / 6)), L, R)
  is_start = rng.random(L) < 0.7
  is_target = np.concatenate([data.span_mask(is_start[:R], goals[0], rng),
                              data.span_mask(is_start[R:], goals[1], rng)])
  order, ends = data.sample_order(is_target, R, rng)
  assert sorted(order.tolist()) == list(range(L))
  mask = data.perm_mask_from_order(order, is_target, R)
  np.testing.assert_array_equal(mask, brute_force_mask(order, ends, R))
  # Partial prediction: each part's order ends with its targets, round(L / K) in all.
  assert is_target.sum() == round(L / 6) == sum(goals)
  blocks = [order[:ends[0]], order[ends[0]:ends[0] + goals[0]],      # C0, T0
            order[ends[0] + goals[0]:ends[1]], order[ends[1]:]]           # C1, T1
  assert (blocks[0] < R).all() and (blocks[1] < R).all() and (blocks[2] >= R).all()
  assert not is_target[blocks[0]].any() and not is_target[blocks[2]].any()
  assert is_target[blocks[1]].all() and is_target[blocks[3]].all()
  assert [len(blocks[1]), len(blocks[3])] == list(goals)
  targets = np.flatnonzero(is_target)
  assert (mask[targets, targets] == 1).all()               # no target sees itself


@pytest.mark.parametrize("seed", range(3))
def test_perm_size_samples_the_order_block_by_block(seed):
  """perm_size=4 (the released _local_perm): each part's targets come block by block, in one
  within-block permutation shared by the part's blocks; the masks are still the brute-force ones
  from the order, and no target sees a later block's targets (it sees every earlier one)."""
  rng = np.random.default_rng(seed)
  is_target = rng.random(L) < 0.5
  p = 4
  order, ends = data.sample_order(is_target, R, rng, perm_size=p)
  assert sorted(order.tolist()) == list(range(L))
  mask = data.perm_mask_from_order(order, is_target, R)
  np.testing.assert_array_equal(mask, brute_force_mask(order, ends, R))
  for lo, hi, end in ((0, R, ends[0]), (R, L, ends[1])):
    before = set()                                # (i % p, j % p): i came before j in a block
    tgt = [int(t) for t in order[end:end + int(is_target[lo:hi].sum())]]
    assert sorted(tgt) == (lo + np.flatnonzero(is_target[lo:hi])).tolist() and tgt == [
        t for t in order.tolist() if lo <= t < hi and is_target[t]]
    block = [(t - lo) // p for t in tgt]
    assert block == sorted(block)                 # block by block
    for a, i in enumerate(tgt):
      for j in tgt[a + 1:]:
        if block[tgt.index(j)] == block[a]:
          before.add(((i - lo) % p, (j - lo) % p))
        assert mask[i, j] == 1 and mask[j, i] == 0    # later targets unseen, earlier seen
    assert not any((j, i) in before for i, j in before)   # one permutation per part
  obj_config = xlnet_configs.get_config("tiny")
  obj_config.data.update(seq_length=L, reuse_length=R, num_predict=6, perm_size=5)
  with pytest.raises(ValueError, match="config.data.perm_size"):
    XlnetPermutationLm(obj_config, vocab_size=V)


def _rows(seed=0, batch_size=2, bi_data=False):
  rng = np.random.default_rng(seed)
  flat = rng.integers(3, V, size=400).astype(np.int32)
  return data.make_rows(flat, np.array([0, 400]), batch_size=batch_size, seq_length=L,
                        reuse_length=R, num_predict=6, bi_data=bi_data, sep_id=SEP,
                        cls_id=CLS, is_start=np.ones(V, bool), max_gram=3, mask_alpha=6,
                        mask_beta=1, seed=seed)


def test_rows_layout_streams_continue_and_targets():
  f = data.with_perm_masks(_rows(), R)
  ids, types, perm = f["input_ids"], f["token_type_ids"], f["perm_mask"]
  index, tids, weights = f["target_index"], f["target_ids"], f["target_weights"]
  assert ids.shape == (2 * 11, L) and perm.shape == (22, L, L)
  # Row b of step t+1 starts where row b of step t's reused part ended.
  flat = np.random.default_rng(0).integers(3, V, size=400)
  streams = flat.reshape(2, 200)
  for step in range(3):
    for b in range(2):
      np.testing.assert_array_equal(ids[2 * step + b, :R], streams[b, step * R:(step + 1) * R])
  assert (ids[:, -1] == CLS).all() and (ids[:, -2] == SEP).all() and (types[:, -1] == 2).all()
  assert (weights.sum(1) == 6).all()
  np.testing.assert_array_equal(np.take_along_axis(ids, index, 1), tids)
  assert not np.isin(np.take_along_axis(ids, index, 1), [SEP, CLS]).any()
  rows = np.arange(len(ids))[:, None]
  assert (perm[rows, index, index] == 1).all()
  # The reused part never sees the rest.
  assert (perm[:, :R, R:] == 1).all()


def _objective(mem_len=24, **train):
  c = xlnet_configs.get_config("tiny")
  c.model.update(hidden_size=32, num_layers=1, num_heads=2, head_dim=16, intermediate_size=64,
                 mem_len=mem_len, dropout_rate=0.0)
  c.data.update(seq_length=L, reuse_length=R, num_predict=6, group_size=64)
  c.train.update(batch_size=2, log_every=1, eval_every=-1, checkpoint_every=2, **train)
  return XlnetPermutationLm(c, vocab_size=V), c


def _batch(rows, step, batch_size=2):
  sl = slice(step * batch_size, (step + 1) * batch_size)
  return {k: jnp.asarray(v[sl]) for k, v in data.with_perm_masks(rows, R).items()}


def test_query_stream_sees_nothing_hidden_from_it():
  obj, _ = _objective()
  params = nn.unbox(jax.jit(obj.init_params)(jax.random.key(0)))
  batch = _batch(_rows(), 0)
  fwd = jax.jit(lambda p, x: obj.forward(p, x, None, True)[0]["logits"])
  logits = fwd(params, batch)
  b, p = 0, 0
  t = int(batch["target_index"][b, p])
  hidden = np.asarray(batch["perm_mask"][b, t]) == 1              # t itself included
  assert hidden[t] and hidden.sum() < L
  changed = np.where(hidden, (np.asarray(batch["input_ids"][b]) + 7) % V, batch["input_ids"][b])
  out = fwd(params, dict(batch, input_ids=batch["input_ids"].at[b].set(changed)))
  np.testing.assert_array_equal(np.asarray(out[b, p]), np.asarray(logits[b, p]))
  seen = int(np.flatnonzero(~hidden)[0])                            # one it may see
  out = fwd(params, dict(batch, input_ids=batch["input_ids"].at[b, seen].add(1)))
  assert np.abs(np.asarray(out[b, p] - logits[b, p])).max() > 1e-6


def test_bi_data_model_initialises_and_reverses_the_second_half():
  """model.bi_data (XLNet-Base's setting): fresh params build (the init batch has both
  halves), and a row in the second half sees reversed positions, so its loss differs from
  the same row in the first half."""
  obj, c = _objective(mem_len=0)
  c.model.bi_data = c.data.bi_data = True
  obj = XlnetPermutationLm(c, vocab_size=V)
  params = nn.unbox(jax.jit(obj.init_params)(jax.random.key(0)))
  batch = _batch(_rows(), 0)
  same = {k: jnp.concatenate([v[:1], v[:1]], 0) for k, v in batch.items()}

  def gap(objective):   # the two (identical) rows' largest logit difference
    out = objective.forward(params, same, None, True)[0]["logits"]
    return float(jnp.abs(out[0] - out[1]).max())

  c.model.bi_data = c.data.bi_data = False
  uni = gap(XlnetPermutationLm(c, vocab_size=V))
  bi = gap(obj)
  assert bi > 0 and bi > 100 * uni, (bi, uni)


def test_memory_holds_the_previous_steps_reused_states():
  obj, _ = _objective()
  params = nn.unbox(jax.jit(obj.init_params)(jax.random.key(0)))
  rows = _rows()
  carry = obj.init_carry(2)
  emb = params["transformer"]["word_embedding"]
  b1, b2 = _batch(rows, 0), _batch(rows, 1)
  step = jax.jit(lambda p, x, c: obj.loss_fn_with_carry(p, x, None, True, c))
  _, _, carry1 = step(params, b1, carry)
  _, _, carry2 = step(params, b2, carry1)
  m1, m2 = np.asarray(carry1["mems"]), np.asarray(carry2["mems"])   # [B, layers, 24, H]
  e1, e2 = np.asarray(emb[b1["input_ids"][:, :R]]), np.asarray(emb[b2["input_ids"][:, :R]])
  np.testing.assert_array_equal(m1[:, 0, -R:], e1)                  # layer 0's input
  assert not m1[:, 0, :24 - R].any()                                # the zeros before
  np.testing.assert_array_equal(m2[:, 0], np.concatenate([e1[:, -(24 - R):], e2], 1))
  # The memory changes what the next step computes.
  l_with, l_without = step(params, b2, carry1)[0], step(params, b2, carry)[0]
  assert abs(float(l_with) - float(l_without)) > 1e-6


def test_memory_survives_a_kill_between_checkpoints_bit_exactly(tmp_path):
  """A tiny run of 4 steps checkpoints at 2 and 4; a kill after step 2's checkpoint loses
  step 4's (removed here); the rerun resumes from 2 with its carried memory and ends with
  memory, params and optimizer state bit-identical to the uninterrupted run's."""
  import shutil  # pylint: disable=import-outside-toplevel
  _, c = _objective(num_steps=4)
  c.train.update(checkpoint_every=2, log_every=2)
  c.model.num_layers = 1
  workdir = str(tmp_path / "run")
  trainer.train_and_evaluate(c, workdir, devices=jax.devices()[:1])
  ckpts = os.path.join(workdir, "checkpoints")
  load = lambda s: ocp.StandardCheckpointer().restore(os.path.join(ckpts, str(s), "state"))
  straight, mid = load(4), load(2)
  assert np.abs(mid["carry"]["mems"]).max() > 0                       # memory was carried
  assert not np.array_equal(mid["carry"]["mems"], straight["carry"]["mems"])
  shutil.rmtree(os.path.join(ckpts, "4"))                              # the kill
  trainer.train_and_evaluate(c, workdir, devices=jax.devices()[:1])
  resumed = load(4)
  flat = lambda t: jax.tree_util.tree_flatten_with_path(t)[0]
  assert len(flat(resumed)) == len(flat(straight))
  for (path, x), (_, y) in zip(flat(resumed), flat(straight)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(path))


@pytest.mark.slow
def test_memory_survives_kill_and_resume_bit_exactly(tmp_path):
  """Three runs of the tiny config on the builtin corpus: 3 steps then resume to 6, and 6
  straight; the carried memory and params at step 6 are bit-identical."""
  def run(workdir, steps):
    _, c = _objective(num_steps=steps)
    c.train.checkpoint_every = 3
    trainer.train_and_evaluate(c, workdir, devices=jax.devices()[:2])

  a, b = str(tmp_path / "a"), str(tmp_path / "b")
  run(a, 3)
  run(a, 6)
  run(b, 6)
  load = lambda w, s: ocp.StandardCheckpointer().restore(os.path.join(w, "checkpoints", str(s),
                                                                      "state"))
  sa, sb = load(a, 6), load(b, 6)
  assert np.abs(sa["carry"]["mems"]).max() > 0
  for x, y in zip(jax.tree_util.tree_leaves(sa), jax.tree_util.tree_leaves(sb)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert not np.array_equal(load(a, 3)["carry"]["mems"], sa["carry"]["mems"])
