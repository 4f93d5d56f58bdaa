"""plm_jax.objectives.losses against the plain jax formulas."""
import jax
import jax.numpy as jnp
import numpy as np

from plm_jax.objectives import losses


def _data():
  key = jax.random.PRNGKey(0)
  logits = jax.random.normal(key, (4, 6, 13)) * 3.0
  labels = jax.random.randint(jax.random.fold_in(key, 1), (4, 6), 0, 13)
  weights = jax.random.uniform(jax.random.fold_in(key, 2), (4, 6))
  return logits, labels, weights


def test_softmax_cross_entropy_value_and_gradient():
  logits, labels, weights = _data()

  def reference(logits):
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]

  np.testing.assert_allclose(losses.softmax_cross_entropy(logits, labels), reference(logits),
                             atol=2e-6)
  ours = jax.grad(lambda l: jnp.sum(losses.softmax_cross_entropy(l, labels) * weights))(logits)
  want = jax.grad(lambda l: jnp.sum(reference(l) * weights))(logits)
  np.testing.assert_allclose(ours, want, atol=1e-6)
  # Under jit too, and with bfloat16 logits (loss in float32, gradient in bfloat16).
  nll = jax.jit(losses.softmax_cross_entropy)(logits.astype(jnp.bfloat16), labels)
  assert nll.dtype == jnp.float32
  g = jax.grad(lambda l: jnp.sum(losses.softmax_cross_entropy(l, labels)))(logits.astype(jnp.bfloat16))
  assert g.dtype == jnp.bfloat16


def test_top1_correct_agrees_with_argmax():
  logits, labels, _ = _data()
  labels = labels.at[0, :3].set(jnp.argmax(logits[0, :3], axis=-1))  # some hits for sure
  want = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
  got = losses.top1_correct(logits, labels)
  np.testing.assert_array_equal(got, want)
  assert 3 <= float(got.sum()) < got.size
