"""bench/bench_elmo_step.py: the PyTorch biLM has plm_jax's shape, and the GEMM list the
harness times (its FLOPs) counts what the plm_jax step multiplies."""
import functools
import importlib.util
import os

import jax
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@functools.lru_cache(maxsize=None)
def _bench():
  spec = importlib.util.spec_from_file_location(
      "bench_elmo_step", os.path.join(REPO, "bench", "bench_elmo_step.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@functools.lru_cache(maxsize=None)
def _jax_params(bench, vocab):
  objective = bench._objective(bench._config("tiny"), vocab)
  params = objective.init_params(jax.random.PRNGKey(0))
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return objective.model_config(), {"/".join(k.key for k in p): np.shape(v) for p, v in flat}


def test_torch_bilm_has_the_same_weights_as_plm_jax():
  bench, vocab = _bench(), 50
  cfg, shapes = _jax_params(bench, vocab)
  model = bench._torch_model(bench._config("tiny").model, vocab, 6)
  count = lambda items: sum(int(np.prod(s)) for n, s in items if "bias" not in n.split("/")[-1]
                            and not n.endswith("_bias"))
  torch_weights = [(n.replace(".", "/"), tuple(p.shape)) for n, p in model.named_parameters()]
  assert count(shapes.items()) == count(torch_weights)
  assert cfg.n_layers * 2 == sum(1 for n, _ in torch_weights if n.endswith("weight_hr_l0"))


def test_gemm_list_counts_every_weight_use():
  """Forward FLOPs of the GEMM list == 2 x (each weight's size x how often the step uses it):
  the char CNN kernels at each window position, the token encoder's per token, the LSTMs'
  per token and direction, the softmax per prediction."""
  bench, vocab, batch, seq = _bench(), 50, 3, 7
  cfg, shapes = _jax_params(bench, vocab)
  tokens, uses = batch * seq, 0
  for name, shape in shapes.items():
    size = int(np.prod(shape))
    if "/cnn_" in name and name.endswith("_kernel"):
      uses += size * tokens * (cfg.max_characters_per_token - shape[0] + 1)
    elif name.endswith("kernel") and ("highway" in name or "proj_kernel" in name
                                      or "ward_" in name):
      uses += size * tokens
    elif name.endswith("projection"):
      uses += size * tokens
    elif name == "softmax/kernel":
      uses += size * 2 * batch * (seq - 1)
  harness = __import__("harness")
  assert harness.flops(bench._gemms(cfg, vocab, batch, seq, 0)) == 3 * 2 * uses
