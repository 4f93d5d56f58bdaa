"""Benchmark: GPT-2 generation with the key/value cache, plm_jax generate vs HF generate.

  python bench/bench_gpt_generate.py              # GPT-2 small (random weights), 8 prompts, 128 new
  python bench/bench_gpt_generate.py --quick      # tiny model, a few tokens: does it run

Greedy decoding of --new tokens after prompts of --prompt tokens (--batch of them, the
lengths spread between half and all of --prompt), no end-of-text stop, so both sides
produce batch * new tokens. Each side runs in its own process pinned to --threads cores
(PyTorch: torch.set_num_threads); plm_jax is timed after one untimed call (compile),
HF after one untimed call too; the median of --reps timed calls is reported.

Each side also reports its per-step floor, measured in its worker: the matrix products
of one decoding step at this batch (per layer q/k/v, attention output, MLP in and out,
then the tied head) timed alone, i.e. the weight reads that bound a memory-bound step
(plm_jax: its [out, in] layout, plm_jax/models/gpt_decode.py; HF: Conv1D's addmm and the
lm_head). plm_jax runs (longest prompt + new - shortest prompt) steps, HF runs new.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # pylint: disable=wrong-import-position

SIZES = {"tiny": dict(n_embd=64, n_layer=2, n_head=2), "small": dict(n_embd=768, n_layer=12, n_head=12),
         "medium": dict(n_embd=1024, n_layer=24, n_head=16)}


def _prompts(args):
  import numpy as np  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(0)
  lengths = rng.integers(max(1, args.prompt // 2), args.prompt + 1, size=args.batch)
  return [rng.integers(1000, 50257, size=n).tolist() for n in lengths]


def _hf_model(args):
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  torch.manual_seed(0)
  cfg = transformers.GPT2Config(vocab_size=50257, n_positions=1024, **SIZES[args.size])
  return transformers.GPT2LMHeadModel(cfg).eval()


def _median_time(fn, reps=15) -> float:
  fn()
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def jax_floor(model, params, batch) -> float:
  """Seconds of one decoding step's weight products alone (plm_jax's layout)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from plm_jax.models import gpt_decode  # pylint: disable=import-outside-toplevel
  weights = jax.jit(lambda p: gpt_decode.step_weights(model.config, p))(params)
  x = jnp.ones((batch, model.config.hidden_size), jnp.float32)

  @jax.jit
  def products(weights, x):
    out = [gpt_decode.matvec(weights["wte"], x)]
    for w in weights["layers"]:
      out += [gpt_decode.matvec(w["qkv"], x), gpt_decode.matvec(w["out"], x),
              gpt_decode.matvec(w["wo"], gpt_decode.matvec(w["wi"], x))]
    return out
  return _median_time(lambda: jax.block_until_ready(products(weights, x)))


def torch_floor(hf, batch) -> float:
  """Seconds of one decoding step's weight products alone (HF's Conv1D addmm, lm_head)."""
  import torch  # pylint: disable=import-outside-toplevel
  x = torch.ones(batch, hf.config.n_embd)

  def products():
    with torch.no_grad():
      hf.lm_head(x)
      for block in hf.transformer.h:
        block.attn.c_attn(x)
        block.attn.c_proj(x)
        block.mlp.c_proj(block.mlp.c_fc(x))
  return _median_time(products)


def worker(args) -> dict:
  harness.pin(args.threads)
  prompts = _prompts(args)
  total = max(len(p) for p in prompts) + args.new
  hf = _hf_model(args)
  if args.worker == "jax":
    import tempfile  # pylint: disable=import-outside-toplevel
    import plm_jax  # pylint: disable=import-outside-toplevel
    from plm_jax.models import gpt_generate  # pylint: disable=import-outside-toplevel
    with tempfile.TemporaryDirectory() as d:
      hf.save_pretrained(d)
      model, params = plm_jax.load_pretrained(d)
    # Every row gets `new` tokens: max_length per row = its prompt + new (rows stop at max_length).
    run = lambda: gpt_generate.generate(model, params, prompts, total).tokens
  else:
    import numpy as np  # pylint: disable=import-outside-toplevel
    import torch  # pylint: disable=import-outside-toplevel
    torch.set_num_threads(args.threads)
    width = max(len(p) for p in prompts)
    ids = np.zeros((len(prompts), width), np.int64)
    mask = np.zeros_like(ids)
    for i, p in enumerate(prompts):
      ids[i, width - len(p):], mask[i, width - len(p):] = p, 1
    ids, mask = torch.tensor(ids), torch.tensor(mask)

    def run():
      with torch.no_grad():
        return hf.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=args.new,
                           min_new_tokens=args.new, pad_token_id=0, eos_token_id=None)
  t0 = time.perf_counter()
  run()
  first = time.perf_counter() - t0
  times = []
  for _ in range(args.reps):
    t = time.perf_counter()
    run()
    times.append(time.perf_counter() - t)
  # plm_jax fills every row to the longest prompt + new: count the tokens each side generates.
  tokens = (sum(total - len(p) for p in prompts) if args.worker == "jax"
            else len(prompts) * args.new)
  steps = total - min(len(p) for p in prompts) if args.worker == "jax" else args.new
  floor = (jax_floor(model, params, len(prompts)) if args.worker == "jax"
           else torch_floor(hf, len(prompts)))
  return {"times": times, "first": first, "tokens": tokens, "steps": steps, "floor": floor}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--size", default="small", choices=sorted(SIZES))
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--prompt", type=int, default=32)
  p.add_argument("--new", type=int, default=128)
  p.add_argument("--reps", type=int, default=3)
  p.add_argument("--threads", type=int, default=2)
  p.add_argument("--quick", action="store_true", help="tiny model, 4 prompts, 8 new tokens")
  p.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.quick:
    args.size, args.batch, args.prompt, args.new, args.reps = "tiny", 4, 8, 8, 1
  if args.worker:
    print("RESULT " + json.dumps(worker(args)))
    return 0
  flags = [f"--size={args.size}", f"--batch={args.batch}", f"--prompt={args.prompt}",
           f"--new={args.new}", f"--reps={args.reps}", f"--threads={args.threads}"]
  results = {}
  for impl in ("jax", "torch"):
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), f"--worker={impl}"] + flags,
                          capture_output=True, text=True, check=False)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode or not lines:
      sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
      sys.exit(f"bench_gpt_generate.py: the {impl} worker failed (exit {proc.returncode})")
    results[impl] = json.loads(lines[-1][len("RESULT "):])
  rate = {k: r["tokens"] / statistics.median(r["times"]) for k, r in results.items()}
  print(f"GPT-2 {args.size} greedy generation, {args.batch} prompts of {args.prompt // 2}-"
        f"{args.prompt} tokens, {args.new} new tokens each, {args.threads} CPU threads")
  for k, r in results.items():
    step = statistics.median(r["times"]) / r["steps"]
    print(f"{'plm_jax' if k == 'jax' else 'hf generate':11s}: {rate[k]:9.1f} tokens/s  "
          f"(median of {len(r['times'])}: {statistics.median(r['times']):.3f} s; first call "
          f"{r['first']:.1f} s); {r['steps']} steps of {step * 1e3:.1f} ms, weight-product "
          f"floor {r['floor'] * 1e3:.1f} ms/step ({step / r['floor']:.2f}x it)")
  ratio = rate["jax"] / rate["torch"]
  print(f"ratio plm_jax / hf generate tokens/s: {ratio:.2f}x (target >= 2x: "
        f"{'met' if ratio >= 2 else 'NOT met'})")
  jax_r = results["jax"]
  ceiling = jax_r["tokens"] / (jax_r["steps"] * jax_r["floor"]) / rate["torch"]
  print(f"ceiling: plm_jax at its weight-product floor would be {ceiling:.2f}x hf generate")
  return 0


if __name__ == "__main__":
  sys.exit(main())
