"""Loss functions shared by the objectives."""
import jax
import jax.numpy as jnp


@jax.custom_vjp
def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Negative log-likelihood of integer `labels` under softmax(`logits`), in float32.

  logits [..., classes] (any float dtype), labels [...] int -> nll [...] float32.
  The value is logsumexp(logits) - logits[label]. The gradient, softmax(logits) -
  one_hot(label), is written as one fused elementwise expression over the saved
  logits; differentiating log_softmax + take_along_axis instead materialises
  the log-probabilities and scatters the label gradient into a zero buffer of
  the logits' size (three extra passes over [tokens, vocab] for an MLM head).
  Labels outside [0, classes) give nll = logsumexp(logits) and a plain softmax
  gradient (no one-hot term); mask such items out of the loss.
  """
  return _value(logits, labels)[0]


def _value(logits, labels):
  logits = logits.astype(jnp.float32)
  lse = jax.nn.logsumexp(logits, axis=-1)
  classes = jax.lax.broadcasted_iota(jnp.int32, logits.shape, logits.ndim - 1)
  picked = jnp.sum(jnp.where(classes == labels[..., None].astype(jnp.int32), logits, 0.0), axis=-1)
  return lse - picked, lse


def _fwd(logits, labels):
  nll, lse = _value(logits, labels)
  return nll, (logits, labels, lse)


def _bwd(res, g):
  logits, labels, lse = res
  classes = jax.lax.broadcasted_iota(jnp.int32, logits.shape, logits.ndim - 1)
  one_hot = (classes == labels[..., None].astype(jnp.int32)).astype(jnp.float32)
  grad = (jnp.exp(logits.astype(jnp.float32) - lse[..., None]) - one_hot) * g[..., None]
  return jax.lax.optimization_barrier(grad.astype(logits.dtype)), None


softmax_cross_entropy.defvjp(_fwd, _bwd)


def top1_correct(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """1.0 where the label's logit is the largest, else 0.0 (float32, no gradient).

  Same as argmax(logits) == labels except on exact ties with an earlier class;
  a max reduction and a gather, cheaper on CPU than argmax's paired reduction.
  """
  logits = jax.lax.stop_gradient(logits)
  picked = jnp.take_along_axis(logits, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]
  return (picked >= jnp.max(logits, axis=-1)).astype(jnp.float32)
