"""Position-wise feed-forward block and small dense heads."""
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from plm_jax.layers import common


def dense(features: int, axes: Sequence, stddev: float, dtype: Any, name: str,
          transpose_input_for_grad: bool = False) -> nn.Dense:
  """nn.Dense with a logically-named [in, out] kernel and [out] bias (params float32).

  transpose_input_for_grad: compute the kernel gradient from an explicit x^T
  (common.matmul_transposed_input_grad); faster on CPU for widening layers.
  """
  extra = {"dot_general": common.dense_dot_general} if transpose_input_for_grad else {}
  return nn.Dense(
      features, dtype=dtype, param_dtype=jnp.float32, **extra,
      kernel_init=common.partitioned(common.kernel_init(stddev), axes),
      bias_init=common.partitioned(nn.initializers.zeros, (axes[-1],)), name=name)


class Mlp(nn.Module):
  """wi [embed, mlp] -> activation -> wo [mlp, embed]."""
  intermediate_size: int
  hidden_act: str = "gelu"
  initializer_range: float = 0.02
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x [batch, length, embed] -> [batch, length, embed] in `dtype`."""
    features = x.shape[-1]
    act = common.activation(self.hidden_act)
    h = dense(self.intermediate_size, ("embed", "mlp"), self.initializer_range, self.dtype, "wi",
              transpose_input_for_grad=self.intermediate_size > features)(x)
    h = common.grad_barrier(h)
    h = act(h)  # [batch, length, mlp]
    h = common.constrain(h, common.BATCH_LENGTH_MLP)
    out = common.grad_barrier(
        dense(features, ("mlp", "embed"), self.initializer_range, self.dtype, "wo")(h))
    return common.constrain(out, common.BATCH_LENGTH_EMBED)  # [batch, length, embed]
