"""Benchmark: XLNet permutation-LM train step, plm_jax vs Hugging Face PyTorch XLNetLMHeadModel.

  python bench/bench_xlnet_step.py                 # XLNet-Base, batch 4 x 256 (reuse 128, memory 192)
  python bench/bench_xlnet_step.py --quick         # tiny model, a few steps: does it run

Both sides train on the same rows (plm_jax.data.xlnet_pretrain.make_rows over a random
token stream: perm_mask, target_mapping of --predict targets, token types) with memory
carried from step to step (plm_jax: the train state's carry; PyTorch: the mems it returns,
fed back detached), dropout 0.1, float32, AdamW with global-norm clipping (PyTorch: fused,
as HF's Trainer). Each side runs in its own process pinned to the same --threads cores
(bench/harness.py: pin, matmul peak); the median step time over all rounds is reported,
with the peak resident memory of each process (ru_maxrss: the whole process, libraries
included) and the matmul peak measured in each.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # pylint: disable=wrong-import-position

QUICK = ["--size=tiny", "--batch=2", "--seq=32", "--reuse=16", "--mem=24", "--predict=6",
         "--steps=2", "--rounds=1", "--warmup=1"]
VOCAB = 32000


def _config(args):
  from configs import xlnet  # pylint: disable=import-outside-toplevel
  c = xlnet.get_config(args.size)
  # Synthetic ids over VOCAB (the objective's fixed vocab_size): no SentencePiece file, but
  # base / large name one that must exist, so the config's check would refuse them.
  c.data.vocab.update(type="builtin", path="")
  c.model.update(mem_len=args.mem, bi_data=False)
  c.data.update(seq_length=args.seq, reuse_length=args.reuse, num_predict=args.predict,
                bi_data=False)
  c.train.batch_size = args.batch
  c.optimizer.update(name="adamw", learning_rate=1e-4, warmup_steps=10, weight_decay=0.01,
                     eps=1e-6, grad_clip_norm=1.0)
  return c


def _batches(args, steps):
  """`steps` consecutive batches of rows (row b of step t+1 continues row b of step t)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from plm_jax.data import xlnet_pretrain  # pylint: disable=import-outside-toplevel
  n = (steps + 2) * args.reuse + args.seq
  flat = np.random.default_rng(0).integers(10, VOCAB, size=n * args.batch).astype(np.int32)
  rows = xlnet_pretrain.make_rows(
      flat, np.array([0, len(flat)]), batch_size=args.batch, seq_length=args.seq,
      reuse_length=args.reuse, num_predict=args.predict, bi_data=False, sep_id=4, cls_id=3,
      is_start=np.ones(VOCAB, bool), max_gram=5, mask_alpha=6, mask_beta=1, seed=0)
  feats = xlnet_pretrain.with_perm_masks(rows, args.reuse)
  return [{k: v[t * args.batch:(t + 1) * args.batch] for k, v in feats.items()}
          for t in range(steps)]


def jax_steps(args, batches):
  import jax  # pylint: disable=import-outside-toplevel
  from plm_jax.objectives.xlnet_pretrain import XlnetPermutationLm  # pylint: disable=import-outside-toplevel
  from plm_jax.train import evaluation, step as step_lib, trainer  # pylint: disable=import-outside-toplevel
  config = _config(args)
  objective = XlnetPermutationLm(config, vocab_size=VOCAB)
  setup = trainer.build_setup(config, devices=jax.devices()[:1], objective=objective)
  fn = step_lib.jit_train_step(setup.objective, setup.tx, setup.mesh, setup.state_shardings,
                               1, setup.rules)
  spec = objective.batch_spec(args.batch)
  sharding = step_lib.sharding_lib.batch_sharding(setup.mesh)
  gbatches = [evaluation.global_batch(b, spec, sharding) for b in batches]
  holder = {"state": setup.init_fn(jax.random.PRNGKey(0))}

  def one(t):
    holder["state"], metrics = fn(holder["state"], gbatches[t], jax.random.PRNGKey(t))
    jax.block_until_ready((holder["state"], metrics))
    return float(metrics["loss"][0] / metrics["loss"][1])
  return one


def torch_steps(args, batches):
  import numpy as np  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  m = _config(args).model
  torch.manual_seed(0)
  model = transformers.XLNetLMHeadModel(transformers.XLNetConfig(
      vocab_size=VOCAB, d_model=m.hidden_size, n_layer=m.num_layers, n_head=m.num_heads,
      d_inner=m.intermediate_size, ff_activation="gelu", dropout=m.dropout_rate,
      mem_len=args.mem, reuse_len=args.reuse, use_mems_train=True)).train()
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, eps=1e-6, fused=True)
  inputs = []
  for b in batches:
    tm = np.eye(args.seq, dtype=np.float32)[b["target_index"]] * (b["target_weights"][..., None] > 0)
    labels = np.where(b["target_weights"] > 0, b["target_ids"], -100)
    inputs.append(dict(input_ids=torch.tensor(b["input_ids"], dtype=torch.long),
                       token_type_ids=torch.tensor(b["token_type_ids"], dtype=torch.long),
                       perm_mask=torch.tensor(b["perm_mask"], dtype=torch.float32),
                       target_mapping=torch.tensor(tm), labels=torch.tensor(labels, dtype=torch.long)))
  holder = {"mems": None}

  def one(t):
    opt.zero_grad(set_to_none=True)
    out = model(**inputs[t], mems=holder["mems"], use_mems=True)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    holder["mems"] = [x.detach() for x in out.mems]
    return float(out.loss.detach())
  return one


def _gemms(args, m):
  """The forward matrix products of one step (harness.Gemm), as plm_jax.models.xlnet computes
  them: per layer the k / v projections over memory + segment, the relative-position keys,
  the content and query streams' q, their attention (content, position and segment scores,
  context) over all `seq` query rows (the query stream is mapped to them by target_mapping and
  back), o and the feed-forward of both streams; then the LM head at the targets."""
  b, i, j, p = args.batch, args.seq, args.seq + args.mem, args.predict
  h, n, d, f = m.hidden_size, m.num_heads, m.head_dim, m.intermediate_size
  r = j + i if m.attn_type == "bi" else j + 1
  per_layer = [((), b * j, h, n * d, 2), ((), r, h, n * d, 1),            # k, v; kr
               ((), b * i, h, n * d, 1), ((), b * p, h, n * d, 1),        # q_h, q_g
               ((b,), i, p, n * d, 1), ((b,), p, i, n * d, 1),            # target_mapping in/out
               ((b * n,), i, d, j, 2), ((n,), b * i, d, r, 2),            # ac, bd (both streams)
               ((n,), b * i, d, 2, 2), ((b * n,), i, j, d, 2),            # ef, context
               ((), b * i, n * d, h, 1), ((), b * p, n * d, h, 1),        # o
               ((), b * i, h, f, 1), ((), b * i, f, h, 1),                # feed-forward, h
               ((), b * p, h, f, 1), ((), b * p, f, h, 1)]                # feed-forward, g
  out = [(bd, mm, k, nn_, c * m.num_layers) for bd, mm, k, nn_, c in per_layer]
  return out + [((), b * p, h, VOCAB, 1)]


def worker(args) -> dict:
  harness.pin(args.threads)
  if args.worker == "torch":
    import torch  # pylint: disable=import-outside-toplevel
    torch.set_num_threads(args.threads)
  peak = harness.matmul_peak(args.worker)
  batches = _batches(args, args.warmup + args.steps)
  one = (jax_steps if args.worker == "jax" else torch_steps)(args, batches)
  t0 = time.perf_counter()
  for t in range(args.warmup):
    loss = one(t)
  warm = time.perf_counter() - t0
  times = []
  for t in range(args.warmup, args.warmup + args.steps):
    s = time.perf_counter()
    loss = one(t)
    times.append(time.perf_counter() - s)
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # MiB (Linux: KiB)
  out = {"times": times, "loss": loss, "peak": peak, "warmup_s": warm, "max_rss_mib": rss}
  # After the steps, so that the timed steps' peak RSS is theirs alone: plm_jax's products
  # timed in this side's library (jax: the floor; torch: how close PyTorch runs to its own).
  gemms = _gemms(args, _config(args).model)
  out["floor_s"] = harness.gemm_floor(harness.with_backward(gemms), impl=args.worker)
  out["step_flops"] = harness.flops(gemms)
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--size", default="base", help="configs/xlnet.py size (default: base)")
  p.add_argument("--batch", type=int, default=4)
  p.add_argument("--seq", type=int, default=256)
  p.add_argument("--reuse", type=int, default=128)
  p.add_argument("--mem", type=int, default=192)
  p.add_argument("--predict", type=int, default=43, help="targets per row (seq / K, K = 6)")
  p.add_argument("--steps", type=int, default=4)
  p.add_argument("--rounds", type=int, default=2)
  p.add_argument("--warmup", type=int, default=2, help="untimed steps (jax: includes compile)")
  p.add_argument("--threads", type=int, default=2)
  p.add_argument("--quick", action="store_true", help="tiny model, a few steps")
  p.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
  argv = list(sys.argv[1:] if argv is None else argv)
  if "--quick" in argv:
    argv = QUICK + [a for a in argv if a != "--quick"]
  args = p.parse_args(argv)
  if args.worker:
    print("RESULT " + json.dumps(worker(args)))
    return 0
  results = {"jax": [], "torch": []}
  script = os.path.abspath(__file__)
  for _ in range(args.rounds):
    for impl in results:
      proc = subprocess.run([sys.executable, script, f"--worker={impl}"] + argv,
                            capture_output=True, text=True, check=False)
      lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
      if proc.returncode or not lines:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
        sys.exit(f"bench_xlnet_step.py: the {impl} worker failed (exit {proc.returncode})")
      results[impl].append(json.loads(lines[-1][len("RESULT "):]))
  tokens = args.batch * args.seq
  med = {k: statistics.median([t for r in v for t in r["times"]]) for k, v in results.items()}
  print(f"XLNet {args.size}: batch {args.batch} x {args.seq} (reuse {args.reuse}, memory "
        f"{args.mem}, {args.predict} targets), {args.threads} threads, float32, "
        f"{args.rounds} round(s) x {args.steps} steps")
  for impl, name in (("jax", "plm_jax"), ("torch", "PyTorch")):
    runs = results[impl]
    print(f"  {name:8s} {med[impl] * 1e3:9.1f} ms/step  {tokens / med[impl]:9.0f} tokens/s  "
          f"peak RSS {max(r['max_rss_mib'] for r in runs):7.0f} MiB  loss {runs[-1]['loss']:.4f}  "
          f"matmul peak {max(r['peak'] for r in runs) / 1e9:.1f} GFLOP/s")
  print(f"  speed-up plm_jax / PyTorch: {med['torch'] / med['jax']:.2f}x (target 1.5x)")
  floor = min(r["floor_s"] for r in results["jax"])
  print(f"  GEMM floor (every product of the step, forward and backward, timed alone in jax): "
        f"{floor * 1e3:.1f} ms ({results['jax'][0]['step_flops'] / 1e9:.1f} GFLOP); plm_jax "
        f"step / floor {med['jax'] / floor:.2f}x; the most any JAX step could reach here: "
        f"{med['torch'] / floor:.2f}x PyTorch")
  t_floor = min(r["floor_s"] for r in results["torch"])
  print(f"  the same products in torch.matmul: {t_floor * 1e3:.1f} ms (jax / torch "
        f"{floor / t_floor:.2f}x; PyTorch's step is {med['torch'] / t_floor:.2f}x its products)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
