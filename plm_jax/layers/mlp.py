"""Position-wise feed-forward block (plain or gated) and small dense heads."""
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from plm_jax.layers import common, fused


def dense(features: int, axes: Sequence, stddev: float, dtype: Any, name: str,
          transpose_input_for_grad: bool = False, use_bias: bool = True,
          fused_ops: bool = True) -> nn.Dense:
  """nn.Dense with a logically-named [in, out] kernel and [out] bias (params float32).

  transpose_input_for_grad: with fused_ops, compute the kernel gradient from an
  explicit x^T (fused.matmul_transposed_input_grad); faster on CPU for
  widening layers. Without fused_ops the plain dot_general is used.
  """
  dot_general = fused.ops(fused_ops).dense_dot_general if transpose_input_for_grad else None
  extra = {"dot_general": dot_general} if dot_general is not None else {}
  return nn.Dense(
      features, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32, **extra,
      kernel_init=common.partitioned(common.kernel_init(stddev), axes),
      bias_init=common.partitioned(nn.initializers.zeros, (axes[-1],)), name=name)


class Mlp(nn.Module):
  """wi [embed, mlp] -> activation -> wo [mlp, embed] (BERT, GPT; T5 v1.0 without biases).

  gated=True (T5 v1.1 gated-gelu, LLaMA SwiGLU): act(wi_0 x) * (wi_1 x) -> wo,
  params wi_0, wi_1 [embed, mlp] and wo. use_bias=False: kernels only.
  fused_ops: custom-VJP GELU, gradient barriers and the transposed-input weight
  gradient (layers/fused.py), or plain jax; same values.
  """
  intermediate_size: int
  hidden_act: str = "gelu"
  initializer_range: float = 0.02
  dtype: Any = jnp.float32
  use_bias: bool = True
  gated: bool = False
  fused_ops: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x [batch, length, embed] -> [batch, length, embed] in `dtype`."""
    features = x.shape[-1]
    act = common.activation(self.hidden_act, self.fused_ops)
    barrier = fused.ops(self.fused_ops).grad_barrier

    def wi(name):  # [batch, length, embed] -> [batch, length, mlp]
      return barrier(dense(self.intermediate_size, ("embed", "mlp"), self.initializer_range,
                           self.dtype, name, self.intermediate_size > features,
                           use_bias=self.use_bias, fused_ops=self.fused_ops)(x))

    if self.gated:
      h = act(wi("wi_0")) * wi("wi_1")
    else:
      h = act(wi("wi"))  # [batch, length, mlp]
    h = common.constrain(h, common.BATCH_LENGTH_MLP)
    out = barrier(dense(features, ("mlp", "embed"), self.initializer_range, self.dtype, "wo",
                        use_bias=self.use_bias, fused_ops=self.fused_ops)(h))
    return common.constrain(out, common.BATCH_LENGTH_EMBED)  # [batch, length, embed]
