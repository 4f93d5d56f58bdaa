"""ELECTRA's objective: what counts as replaced, where gradients go, how tokens are sampled,
padding, and the FLOPs count against the paper's script."""
import functools
from types import SimpleNamespace

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from plm_jax.configlib import ConfigError
from plm_jax.convert.table import flatten
from plm_jax.objectives import flops
from plm_jax.objectives.electra_pretrain import ElectraRtd, corrupt, sample_tokens

VOCAB, LENGTH, PREDS = 40, 16, 4


def _config(**electra):
  c = ElectraRtd.default_config()
  c.model.update(embedding_size=12, hidden_size=16, num_layers=1, num_heads=2,
                 intermediate_size=32, max_position_embeddings=LENGTH,
                 hidden_dropout_rate=0.0, attention_dropout_rate=0.0)
  c.generator.hidden_fraction = 0.5
  c.mlm.max_predictions = PREDS
  c.data.seq_length = LENGTH
  c.electra.update(electra)
  return c


def _batch(seed=0):
  """3 rows: full, 10 real tokens, 5 real tokens; the last has 2 of its 4 slots padded."""
  rng = np.random.RandomState(seed)
  lengths = [16, 10, 5]
  ids = np.zeros((3, LENGTH), np.int32)
  mask = np.zeros((3, LENGTH), np.int32)
  pos = np.zeros((3, PREDS), np.int32)
  weights = np.zeros((3, PREDS), np.float32)
  for i, n in enumerate(lengths):
    ids[i, :n] = rng.randint(5, VOCAB, n)
    mask[i, :n] = 1
    k = PREDS if n > 5 else 2
    pos[i, :k] = np.sort(rng.choice(np.arange(1, n - 1), k, replace=False))
    weights[i, :k] = 1
  original = np.take_along_axis(ids, pos, 1) * (weights > 0)
  masked = ids.copy()
  for i in range(3):
    masked[i, pos[i][weights[i] > 0]] = 4              # [MASK]
  return {"input_ids": masked, "attention_mask": mask, "token_type_ids": np.zeros_like(ids),
          "masked_lm_positions": pos, "masked_lm_ids": original.astype(np.int32),
          "masked_lm_weights": weights}


@pytest.fixture(scope="module")
def setup():
  obj = ElectraRtd(_config(), vocab_size=VOCAB)
  params = nn.unbox(jax.jit(obj.init_params)(jax.random.key(0)))
  return obj, params


def test_replaced_labels_are_exactly_sampled_not_equal_to_original():
  b = _batch()
  # Samples: some equal to the original token, some not; padded slots hold junk.
  sampled = np.array(b["masked_lm_ids"])
  sampled[0, 1] += 1
  sampled[1, [0, 3]] = 7
  sampled[2, 2:] = 33                                  # padded slots: must change nothing
  fake, replaced = jax.jit(corrupt)(b["input_ids"], b["masked_lm_positions"],
                                    b["masked_lm_weights"], b["masked_lm_ids"], sampled)
  expect_fake = np.array(b["input_ids"])
  expect_replaced = np.zeros_like(expect_fake, bool)
  for i in range(3):
    for j in range(PREDS):
      if b["masked_lm_weights"][i, j]:
        p = b["masked_lm_positions"][i, j]
        expect_fake[i, p] = sampled[i, j]
        expect_replaced[i, p] = sampled[i, j] != b["masked_lm_ids"][i, j]
  assert np.array_equal(fake, expect_fake)
  assert np.array_equal(replaced, expect_replaced)
  assert expect_replaced.sum() >= 2 and (expect_replaced != (expect_fake == 4)).any()
  assert fake[2, 0] == b["input_ids"][2, 0]           # slot padding points at position 0


def test_replace_tokens_from_generator_logits(setup):
  obj, _ = setup
  b = _batch()
  logits = jax.random.normal(jax.random.key(1), (3, PREDS, VOCAB)) * 3
  sampled, fake, replaced = obj.replace_tokens(jax.random.key(2), logits, b)
  unmasked = np.array(b["input_ids"])
  for i in range(3):
    w = b["masked_lm_weights"][i] > 0
    unmasked[i, b["masked_lm_positions"][i][w]] = b["masked_lm_ids"][i][w]
  assert np.array_equal(np.asarray(replaced), np.asarray(fake) != unmasked)
  w = b["masked_lm_weights"] > 0
  assert int(np.asarray(replaced).sum()) == int(((np.asarray(sampled) != b["masked_lm_ids"]) & w).sum())


def _grads(obj, params, batch):
  fn = lambda p: obj.loss_fn(p, batch, jax.random.key(3), deterministic=False)[0]
  return flatten(jax.jit(jax.grad(fn))(params))


def test_no_gradient_reaches_the_generator_through_the_discriminator_loss(setup):
  _, params = setup
  batch = _batch()
  only_rtd = ElectraRtd(_config(gen_weight=0.0), vocab_size=VOCAB)
  g = _grads(only_rtd, params, batch)
  gen = [k for k in g if k.startswith(("generator/", "generator_predictions/"))]
  disc = [k for k in g if k.startswith(("discriminator/", "discriminator_predictions/"))]
  assert gen and disc
  assert all(not np.any(g[k]) for k in gen), [k for k in gen if np.any(g[k])]
  assert all(np.any(g[k]) for k in disc if not k.endswith("bias"))
  # The shared embeddings do learn from the discriminator (the paper's tied embeddings).
  assert np.any(g["embeddings/word_embeddings/embedding"])


def test_sampling_follows_the_generator_distribution():
  logits = jnp.array([2.0, 1.0, 0.0, -1.0, 0.5, -3.0])
  n = 40_000

  def chi2(temperature, probs):
    draws = jax.jit(functools.partial(sample_tokens, temperature=temperature))(
        jax.random.key(7), jnp.broadcast_to(logits, (n, logits.size)))
    counts = np.bincount(np.asarray(draws), minlength=logits.size)
    expected = n * np.asarray(probs)
    return float(((counts - expected) ** 2 / expected).sum())

  # 5 degrees of freedom: P(chi2 > 20.5) = 0.001.
  for t in (1.0, 2.0):
    assert chi2(t, jax.nn.softmax(logits / t)) < 20.5, t
  # The same test tells a wrong distribution apart (temperature ignored).
  assert chi2(2.0, jax.nn.softmax(logits)) > 200


def test_padding_never_counts(setup):
  _, params = setup
  # Near-zero temperature: the samples are the argmax, whatever the batch's shape (the
  # random draws of a [4, P, V] batch are not those of a [3, P, V] one).
  obj = ElectraRtd(_config(temperature=1e-4), vocab_size=VOCAB)
  b = _batch()
  loss_fn = jax.jit(lambda p, batch: obj.loss_fn(p, batch, jax.random.key(5), True))
  loss, metrics = loss_fn(params, b)
  assert float(metrics["rtd_loss"][1]) == 16 + 10 + 5            # real tokens only
  assert float(metrics["mlm_loss"][1]) == 4 + 4 + 2              # real prediction slots only
  # Other ids at padded positions and in padded prediction slots: the same loss.
  other = dict(b, input_ids=np.where(b["attention_mask"] > 0, b["input_ids"], 17),
               masked_lm_ids=np.where(b["masked_lm_weights"] > 0, b["masked_lm_ids"], 9))
  loss2, _ = loss_fn(params, other)
  np.testing.assert_allclose(float(loss2), float(loss), rtol=1e-6)
  # A padded example (eval batches' example_mask 0) adds nothing.
  padded = {k: np.concatenate([v, v[:1]]) for k, v in b.items()}
  padded["example_mask"] = np.array([1, 1, 1, 0], np.float32)
  loss3, m3 = loss_fn(params, padded)
  assert float(m3["rtd_loss"][1]) == 31 and float(m3["mlm_loss"][1]) == 10
  np.testing.assert_allclose(float(loss3), float(loss), rtol=1e-6)


def test_bad_generator_config_is_one_line():
  c = _config()
  c.generator.hidden_fraction = 0.01                          # round(16 * 0.01) = 0
  with pytest.raises(ConfigError, match=r"^config.generator: generator of hidden size 0"):
    ElectraRtd(c, vocab_size=VOCAB)
  c = _config(init_discriminator="/tmp/d")
  with pytest.raises(ConfigError, match="init_generator"):
    ElectraRtd(c, vocab_size=VOCAB)


def _hp(h, layers, e=None):
  return SimpleNamespace(hidden_size=h, num_layers=layers, embedding_size=e or h,
                         vocab_size=30522, num_heads=max(1, h // 64), intermediate_size=4 * h)


def test_flops_match_the_paper_script():
  """Totals printed by google-research/electra flops_computation.py (Table 1 / 8 rows)."""
  frac = 0.15625
  ours = {
      "electra_small": flops.electra_train_flops(_hp(256, 12, 128), _hp(64, 12, 128), 128, frac) * 128 * 1e6,
      "bert_small": flops.mlm_train_flops(_hp(256, 12, 128), 128, frac) * 128 * 1.45e6,
      "electra_base": flops.electra_train_flops(_hp(768, 12), _hp(256, 12, 768), 512, frac) * 256 * 766e3,
      "bert_base": flops.mlm_train_flops(_hp(768, 12), 512, frac) * 256 * 1e6,
      "electra_400k": flops.electra_train_flops(_hp(1024, 24), _hp(256, 24, 1024), 512, frac) * 2048 * 4e5,
  }
  script = {"electra_small": 1.293743798272e18, "bert_small": 1.4187399146496e18,
            "electra_base": 6.424541834277683e19, "bert_base": 6.428335104e19,
            "electra_400k": 7.117606040895488e20}
  for k, v in script.items():
    assert abs(ours[k] / v - 1) < 1e-3, (k, ours[k], v)


def test_objective_reports_flops_of_its_networks():
  import configs.electra as cfgs  # pylint: disable=import-outside-toplevel
  def objective(size):
    c = cfgs.get_config(size)
    c.data.vocab.update(type="builtin", path="")   # only the sizes matter (vocab_size given)
    return ElectraRtd(c, vocab_size=30522)
  small, bert = objective("small"), objective("bert_small")
  assert small.generator_config().hidden_size == 64 and small.generator_config().num_heads == 1
  e = small.train_flops_per_example() * 128 * small.config.train.num_steps
  b = bert.train_flops_per_example() * 128 * bert.config.train.num_steps
  # 19 of 128 tokens predicted (the paper's script assumes 20): within 1% of its totals.
  assert abs(e / 1.2937e18 - 1) < 0.01 and abs(b / 1.4187e18 - 1) < 0.01, (e, b)


def test_eval_predictions_give_the_discriminators_auc(setup):
  obj, params = setup
  b = _batch()
  out = jax.jit(obj.predict_fn)(params, b)
  # The same fixed-key replacements as the eval loss.
  _, metrics = obj.loss_fn(params, b, None, True)
  real = b["attention_mask"] > 0
  assert int(np.sum(np.asarray(out["replaced"])[real])) == float(metrics["replaced_fraction"][0])
  np.testing.assert_array_equal(np.asarray(out["token"]), b["attention_mask"])
  logits = np.asarray(out["rtd_logits"])[real]
  labels = np.asarray(out["replaced"])[real]
  got = obj.compute_metrics({k: np.asarray(v) for k, v in out.items()})
  if labels.min() == labels.max():
    assert got == {}
  else:
    pos, neg = logits[labels == 1], logits[labels == 0]
    pairs = (pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None])
    np.testing.assert_allclose(got["rtd_auc"], pairs.mean(), rtol=1e-12)


def test_roc_auc_against_pairwise_definition_and_sklearn():
  from plm_jax.finetune import metrics
  sklearn_metrics = pytest.importorskip("sklearn.metrics")
  rng = np.random.RandomState(3)
  scores = rng.randint(0, 6, 300).astype(np.float64)        # many ties
  labels = (rng.rand(300) < 0.3).astype(np.int32)
  pos, neg = scores[labels == 1], scores[labels == 0]
  pairs = (pos[:, None] > neg[None]) + 0.5 * (pos[:, None] == neg[None])
  np.testing.assert_allclose(metrics.roc_auc(scores, labels), pairs.mean(), rtol=1e-12)
  np.testing.assert_allclose(metrics.roc_auc(scores, labels),
                             sklearn_metrics.roc_auc_score(labels, scores), rtol=1e-12)
  assert metrics.roc_auc([1.0, 2.0, 3.0], [0, 0, 1]) == 1.0
  with pytest.raises(ValueError, match="roc_auc: needs both classes"):
    metrics.roc_auc([1.0, 2.0], [1, 1])
