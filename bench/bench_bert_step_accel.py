"""Accelerator check + benchmark: BERT MLM+NSP train step on GPU/TPU, plm_jax vs HF PyTorch.

Runs on whatever jax's default backend is (GPU or TPU). It needs jax, flax,
optax and ml_collections, but no TensorFlow or seqio: the step is fed a
synthetic batch, so it runs on a machine with a bare accelerator image.

1. Check: a tiny config with dropout on; the loss and every gradient on the
   accelerator against the same computation on the CPU backend (same params,
   batch and dropout key: plm_jax's hashed dropout gives the same mask on any
   backend). Prints the largest relative gradient error; exits 1 above --tol.
2. Benchmark: BERT-base (or --size) train step in float32 and bfloat16 compute
   (float32 params), AdamW + clipping, dropout on. With --torch, the same step
   in Hugging Face transformers on CUDA (fused AdamW; bfloat16 via autocast;
   TF32 matmuls in float32, as jax's default GPU precision has them),
   measured in the same run, and the tokens/s ratio.

  python bench/bench_bert_step_accel.py --torch
  python bench/bench_bert_step_accel.py --size small --batch 64 --dtypes bfloat16
"""
import argparse
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "bench"))

import bench_bert_step as cpu_bench  # pylint: disable=wrong-import-position

VOCAB = cpu_bench.BERT_UNCASED_VOCAB  # synthetic batches: no vocabulary file is read


def check() -> float:
  """Max relative gradient error, accelerator vs CPU, tiny config, dropout off and on."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  batch_np = cpu_bench.make_batch(np.random.default_rng(0), VOCAB, 4, 64, 8)
  worst = 0.0
  for dropout in (False, True):  # dropout off first: a mismatch there is not the mask
    worst = max(worst, _check_one(batch_np, dropout))
  return worst


def _check_one(batch_np, dropout) -> float:
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  results = {}
  for backend in ("cpu", jax.default_backend()):
    setup = cpu_bench.jax_setup("tiny", 4, 64, 8, vocab_size=VOCAB,
                                devices=jax.devices(backend)[:1], dropout=dropout)
    state = setup.init_fn(jax.random.PRNGKey(0))
    batch = jax.device_put(batch_np, jax.devices(backend)[0])
    grad_fn = jax.jit(jax.value_and_grad(
        lambda p, b: setup.objective.loss_fn(p, b, jax.random.PRNGKey(3), False)[0]))
    with jax.default_matmul_precision("highest"):
      loss, grads = grad_fn(state.params, batch)
    results[backend] = (float(loss), jax.tree_util.tree_map(np.asarray, grads))
  (l_cpu, g_cpu), (l_acc, g_acc) = results["cpu"], results[jax.default_backend()]
  # Relative to each leaf's largest gradient, floored at 1e-6 of the largest
  # gradient overall: some gradients are zero in exact arithmetic (the key
  # bias: softmax ignores a per-row shift) and are rounding noise (~1e-13) on
  # both backends.
  floor = 1e-6 * max(float(np.max(np.abs(a))) for a in jax.tree_util.tree_leaves(g_cpu))
  errors = []
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(g_cpu),
                          jax.tree_util.tree_leaves(g_acc)):
    err = float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(a))), floor))
    errors.append((err, jax.tree_util.keystr(path), float(np.max(np.abs(a))),
                   float(np.max(np.abs(b)))))
  errors.sort(reverse=True)
  print(f"check (tiny, dropout {'on' if dropout else 'off'}): loss cpu {l_cpu:.6f} vs "
        f"{jax.default_backend()} {l_acc:.6f}; max relative gradient error {errors[0][0]:.2e}",
        flush=True)
  for err, name, a, b in errors[:4]:
    print(f"  {err:.2e} {name} (max |g| cpu {a:.3e}, accelerator {b:.3e})", flush=True)
  return errors[0][0]


def _time(one, args):
  for _ in range(args.warmup):
    loss = one()
  times = []
  for _ in range(args.steps):
    t = time.perf_counter()
    loss = one()
    times.append(time.perf_counter() - t)
  return statistics.median(times), loss


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--size", default="base")
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--seq", type=int, default=128)
  p.add_argument("--predictions", type=int, default=20)
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--warmup", type=int, default=3)
  p.add_argument("--dtypes", default="float32,bfloat16")
  p.add_argument("--torch", action="store_true", help="also time HF PyTorch on CUDA")
  p.add_argument("--tol", type=float, default=1e-3, help="max relative gradient error")
  p.add_argument("--check_only", action="store_true", help="run the check, skip the benchmark")
  args = p.parse_args(argv)
  import jax  # pylint: disable=import-outside-toplevel
  backend = jax.default_backend()
  if backend == "cpu":
    sys.exit("bench_bert_step_accel: no accelerator (jax.default_backend() is 'cpu'); "
             "use bench/bench_bert_step.py on CPU")
  print(f"device: {jax.devices()[0].device_kind} ({backend}), jax {jax.__version__}", flush=True)
  worst = check()
  tokens = args.batch * args.seq
  import numpy as np  # pylint: disable=import-outside-toplevel
  batch_np = cpu_bench.make_batch(np.random.default_rng(0), VOCAB, args.batch, args.seq,
                                  args.predictions)
  for dtype in [] if args.check_only else args.dtypes.split(","):
    j_step, j_loss = _time(cpu_bench.jax_step(args.size, batch_np, vocab_size=VOCAB,
                                              dtype=dtype)[0], args)
    line = (f"{args.size} {args.batch}x{args.seq} {dtype}: plm_jax {j_step * 1e3:7.1f} ms/step "
            f"{tokens / j_step:9,.0f} tokens/s (loss {j_loss:.3f})")
    if args.torch:
      t_step, t_loss = _time(cpu_bench.torch_step(args.size, batch_np, vocab_size=VOCAB,
                                                   device="cuda", dtype=dtype), args)
      line += (f" | pytorch {t_step * 1e3:7.1f} ms/step {tokens / t_step:9,.0f} tokens/s "
               f"(loss {t_loss:.3f}) | ratio {t_step / j_step:.2f}x")
    print(line, flush=True)
  if worst > args.tol:
    sys.exit(f"bench_bert_step_accel: gradient mismatch vs CPU {worst:.2e} > --tol {args.tol}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
