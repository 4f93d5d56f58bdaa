"""Benchmark: BERT-base MLM+NSP train step, plm_jax vs Hugging Face PyTorch.

Each implementation runs in its own process (alternating, --rounds times) on
the same CPUs (pinned to --threads cores), float32, batch 8 x 128 by default,
AdamW with global-norm clipping, dropout on (train mode). Every step is timed
on its own and the median over all rounds is used (the machines are noisy). Printed: tokens/s of each and their ratio, and the achieved FLOP/s of
each over a matmul peak measured in the same run (the faster of a large jax
and a large torch float32 matmul).

  python bench/bench_bert_step.py                 # the reference configuration
  python bench/bench_bert_step.py --steps 3 --size small   # quick look
  python bench/bench_bert_step.py --fused_ops on   # plm_jax with model.fused_ops on only

--fused_ops both (default): plm_jax runs with model.fused_ops on (the custom VJPs and
barriers of plm_jax/layers/fused.py) and off (plain jax), each in its own process.

Notes on what differs by design: plm_jax runs the MLM output projection only
at the masked positions (max_predictions per example, BERT's 20 for 128
tokens), as the original BERT code does; Hugging Face's BertForPreTraining
projects every token onto the vocabulary and masks the loss afterwards. The
FLOP counts below count what each implementation executes.

The last line is a ceiling measured in the same run: every matrix product of
the plm_jax step timed on its own (jax, same threads), summed. The ratio can
not exceed PyTorch's step time over that sum, and 1.5x leaves the rest of the
step (softmax, LayerNorm, GELU, dropout, layout copies, AdamW) the difference.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def _pin(threads: int) -> None:
  try:
    cpus = sorted(os.sched_getaffinity(0))[:threads]
    os.sched_setaffinity(0, set(cpus))
  except (AttributeError, OSError):
    pass
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + f" --xla_force_host_platform_device_count=1").strip()


# BERT's uncased WordPiece vocabulary size (the batches are synthetic ids below it).
BERT_UNCASED_VOCAB = 30522


def encoder_flops_per_token(h, layers, inter, seq) -> float:
  """Forward matmul FLOPs per token of the encoder (projections, MLP, attention)."""
  per_layer = 2 * 4 * h * h + 2 * 2 * h * inter + 2 * 2 * seq * h
  return layers * per_layer


def step_flops(h, layers, inter, vocab, batch, seq, predicted_tokens) -> float:
  """Forward+backward (3x forward) FLOPs of one train step."""
  fwd = batch * seq * encoder_flops_per_token(h, layers, inter, seq)
  fwd += predicted_tokens * (2 * h * h + 2 * h * vocab)      # MLM transform + decoder
  fwd += batch * (2 * h * h + 2 * h * 2)                      # pooler + NSP
  return 3.0 * fwd


def matmul_peak(impl: str, n: int = 2048, reps: int = 5) -> float:
  """FLOP/s of an n^3 float32 matmul in `impl` ('jax' or 'torch')."""
  if impl == "jax":
    import jax  # pylint: disable=import-outside-toplevel
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
    key = jax.random.PRNGKey(0)
    a = jax.random.normal(key, (n, n), jnp.float32)
    b = jax.random.normal(jax.random.fold_in(key, 1), (n, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    run = lambda: f(a, b).block_until_ready()
  else:
    import torch  # pylint: disable=import-outside-toplevel
    ta, tb = torch.randn(n, n), torch.randn(n, n)
    run = lambda: ta @ tb
  run()
  t = time.perf_counter()
  for _ in range(reps):
    run()
  return 2 * n ** 3 * reps / (time.perf_counter() - t)


def step_gemms(h, layers, inter, vocab, batch, seq, preds, heads):
  """The matrix products of one plm_jax train step: [(batch_dims, m, k, n, count)].

  Each forward product y[m, n] = x[m, k] w[k, n] has two in the backward pass,
  dx = dy w^T (m, n, k) and dw = x^T dy (k, m, n). Per layer: q, k, v and output
  projections, MLP in and out, and the attention scores and context as
  batched products over batch*heads; then the MLM transform and tied decoder
  at the predicted positions (the word-embedding lookup has no product).
  """
  tokens, d = batch * seq, h // heads
  dense = [(tokens, h, h)] * 4 + [(tokens, h, inter), (tokens, inter, h)]
  attn = [(seq, d, seq), (seq, seq, d)]                    # scores, context
  out = []
  for m, k, n in dense:
    out += [((), m, k, n, layers), ((), m, n, k, layers), ((), k, m, n, layers)]
  for m, k, n in attn:
    out += [((batch * heads,), m, k, n, layers), ((batch * heads,), m, n, k, layers),
            ((batch * heads,), k, m, n, layers)]
  for m, k, n in [(preds, h, h), (preds, h, vocab)]:
    out += [((), m, k, n, 1), ((), m, n, k, 1), ((), k, m, n, 1)]
  return out


def gemm_floor(gemms, reps: int = 5) -> float:
  """Seconds that the products in `gemms` take in jax, each timed alone (median of reps)."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  total, seen = 0.0, {}
  key = jax.random.PRNGKey(0)
  f = jax.jit(jnp.matmul)
  for bdims, m, k, n, count in gemms:
    shape = (bdims, m, k, n)
    if shape not in seen:
      a = jax.random.normal(key, bdims + (m, k), jnp.float32)
      b = jax.random.normal(key, bdims + (k, n), jnp.float32)
      f(a, b).block_until_ready()
      times = []
      for _ in range(reps):
        t = time.perf_counter()
        f(a, b).block_until_ready()
        times.append(time.perf_counter() - t)
      seen[shape] = statistics.median(times)
    total += seen[shape] * count
  return total


def make_batch(rng, vocab, batch, seq, preds):
  import numpy as np  # pylint: disable=import-outside-toplevel
  lengths = rng.integers(seq // 2, seq + 1, size=batch)
  lengths[0] = seq
  ids = rng.integers(1000, vocab, size=(batch, seq)).astype(np.int32)
  mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int32)
  ids = ids * mask
  types = ((np.arange(seq)[None, :] >= (lengths // 2)[:, None]) & (mask == 1)).astype(np.int32)
  positions = np.stack([np.sort(rng.choice(np.arange(1, l - 1), preds, replace=False))
                        for l in lengths]).astype(np.int32)
  labels = np.take_along_axis(ids, positions, axis=1).astype(np.int32)
  return {
      "input_ids": ids, "token_type_ids": types, "attention_mask": mask,
      "masked_lm_positions": positions, "masked_lm_ids": labels,
      "masked_lm_weights": np.ones((batch, preds), np.float32),
      "next_sentence_label": rng.integers(0, 2, size=batch).astype(np.int32),
  }


def jax_setup(size, batch, seq, preds, *, vocab_size, dtype="float32", devices=None,
              dropout=True, fused_ops=None):
  """trainer.build_setup for configs/bert.py:`size` fed synthetic batches of this shape
  (fused_ops: None keeps the config's model.fused_ops, True/False sets it)."""
  import jax  # pylint: disable=import-outside-toplevel
  from configs import bert as bert_configs  # pylint: disable=import-outside-toplevel
  from plm_jax.objectives.bert_pretrain import BertMlmNsp  # pylint: disable=import-outside-toplevel
  from plm_jax.train import trainer  # pylint: disable=import-outside-toplevel
  config = bert_configs.get_config(size)
  config.data.seq_length = seq
  config.mlm.max_predictions = preds
  config.train.batch_size = batch
  config.optimizer.warmup_steps = 10
  config.model.dtype = dtype
  config.model.max_position_embeddings = max(seq, 512)
  if fused_ops is not None:
    config.model.fused_ops = bool(fused_ops)
  if not dropout:
    config.model.hidden_dropout_rate = config.model.attention_dropout_rate = 0.0
  # The batches are synthetic: the vocabulary's size is all the model needs.
  objective = BertMlmNsp(config, vocab_size=vocab_size)
  return trainer.build_setup(config, devices=devices or jax.devices()[:1], objective=objective)


def jax_step(size, batch_np, *, vocab_size, dtype="float32", devices=None, fused_ops=None):
  """A callable running one plm_jax train step (blocking; returns the loss), and the model config."""
  import jax  # pylint: disable=import-outside-toplevel
  from plm_jax.train import evaluation, step as step_lib  # pylint: disable=import-outside-toplevel

  batch, seq = batch_np["input_ids"].shape
  setup = jax_setup(size, batch, seq, batch_np["masked_lm_positions"].shape[1],
                    vocab_size=vocab_size, dtype=dtype, devices=devices, fused_ops=fused_ops)
  fn = step_lib.jit_train_step(setup.objective, setup.tx, setup.mesh, setup.state_shardings,
                               1, setup.rules)
  spec = setup.objective.batch_spec(batch)
  state = setup.init_fn(jax.random.PRNGKey(0))
  gbatch = evaluation.global_batch(batch_np, spec, step_lib.sharding_lib.batch_sharding(setup.mesh))
  rng = jax.random.PRNGKey(1)
  holder = {"state": state}

  def one():
    holder["state"], metrics = fn(holder["state"], gbatch, rng)
    jax.block_until_ready((holder["state"], metrics))
    return float(metrics["loss"][0] / metrics["loss"][1])

  return one, setup.objective.model_config()


def torch_step(size, batch_np, *, vocab_size, device="cpu", dtype="float32"):
  """A callable running one Hugging Face PyTorch train step (blocking; returns the loss).

  On CUDA: TF32 matmuls in float32 (as jax's default GPU precision has them;
  PyTorch's default is full float32), bfloat16 through autocast.
  """
  import numpy as np  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel

  from configs import bert as bert_configs  # pylint: disable=import-outside-toplevel
  cfg = bert_configs.get_config(size).model
  cuda = device == "cuda"
  if cuda:
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
  torch.manual_seed(0)
  hf_cfg = transformers.BertConfig(
      vocab_size=vocab_size, hidden_size=cfg.hidden_size,
      num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
      intermediate_size=cfg.intermediate_size,
      max_position_embeddings=max(batch_np["input_ids"].shape[1], 512),
      hidden_dropout_prob=cfg.hidden_dropout_rate,
      attention_probs_dropout_prob=cfg.attention_dropout_rate)
  model = transformers.BertForPreTraining(hf_cfg).to(device)
  model.train()
  # fused=True: the kernel Hugging Face's Trainer uses by default with torch >= 2.8
  # (optim='adamw_torch_fused'); about 3x faster on CPU than the per-tensor loop.
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, eps=1e-6, fused=True)
  t = lambda k: torch.from_numpy(batch_np[k].astype(np.int64)).to(device)
  labels = torch.full_like(t("input_ids"), -100)
  labels.scatter_(1, t("masked_lm_positions"), t("masked_lm_ids"))
  inputs = dict(input_ids=t("input_ids"), token_type_ids=t("token_type_ids"),
                attention_mask=t("attention_mask"), labels=labels,
                next_sentence_label=t("next_sentence_label"))

  def one():
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device, dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
      loss = model(**inputs).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    if cuda:
      torch.cuda.synchronize()
    return float(loss.detach())

  return one


def worker(args) -> dict:
  """Runs one implementation in this process; returns its timings as a dict."""
  _pin(args.threads)
  import numpy as np  # pylint: disable=import-outside-toplevel
  if args.worker == "torch":
    import torch  # pylint: disable=import-outside-toplevel
    torch.set_num_threads(args.threads)
  vocab = BERT_UNCASED_VOCAB
  batch_np = make_batch(np.random.default_rng(0), vocab, args.batch, args.seq, args.predictions)
  peak = matmul_peak(args.worker)
  if args.worker == "jax":
    one, cfg = jax_step(args.size, batch_np, vocab_size=vocab,
                        fused_ops={"on": True, "off": False}[args.worker_fused_ops])
  else:
    one = torch_step(args.size, batch_np, vocab_size=vocab)
    from configs import bert as bert_configs  # pylint: disable=import-outside-toplevel
    cfg = bert_configs.get_config(args.size).model
  t0 = time.perf_counter()
  for _ in range(args.warmup):
    loss = one()
  warm = time.perf_counter() - t0
  times = []
  for _ in range(args.steps):
    t = time.perf_counter()
    loss = one()
    times.append(time.perf_counter() - t)
  result = {"times": times, "loss": loss, "peak": peak, "warmup_s": warm, "vocab": vocab,
            "model": [cfg.hidden_size, cfg.num_layers, cfg.intermediate_size]}
  if args.worker == "jax":
    result["gemm_floor"] = gemm_floor(step_gemms(
        cfg.hidden_size, cfg.num_layers, cfg.intermediate_size, vocab, args.batch, args.seq,
        args.batch * args.predictions, cfg.num_heads))
  return result


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--size", default="base", help="configs/bert.py size (default: base)")
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--seq", type=int, default=128)
  p.add_argument("--predictions", type=int, default=20, help="masked positions per example")
  p.add_argument("--steps", type=int, default=5, help="timed steps per implementation and round")
  p.add_argument("--rounds", type=int, default=2,
                 help="rounds of (plm_jax process, PyTorch process); medians over all steps")
  p.add_argument("--warmup", type=int, default=2, help="untimed steps (jax: includes compile)")
  p.add_argument("--threads", type=int, default=2)
  p.add_argument("--fused_ops", choices=("both", "on", "off"), default="both",
                 help="plm_jax with the model's fused_ops switch on, off, or both (default)")
  p.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
  p.add_argument("--worker_fused_ops", choices=("on", "off"), default="on", help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.worker:
    print("RESULT " + json.dumps(worker(args)))
    return 0

  # Each implementation runs in its own process: in one process, PyTorch's
  # OpenMP threads and XLA's thread pool slow each other down. The processes
  # alternate so that both see the same machine conditions.
  passthrough = [f"--size={args.size}", f"--batch={args.batch}", f"--seq={args.seq}",
                 f"--predictions={args.predictions}", f"--steps={args.steps}",
                 f"--warmup={args.warmup}", f"--threads={args.threads}"]
  switch = ("on", "off") if args.fused_ops == "both" else (args.fused_ops,)
  impls = [f"jax_{s}" for s in switch] + ["torch"]
  results = {impl: [] for impl in impls}
  for _ in range(args.rounds):
    for impl in impls:
      flags = (["--worker=torch"] if impl == "torch"
                else ["--worker=jax", f"--worker_fused_ops={impl[4:]}"])
      proc = subprocess.run([sys.executable, os.path.abspath(__file__)] + flags + passthrough,
                            capture_output=True, text=True, check=False)
      lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
      if proc.returncode or not lines:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
        sys.exit(f"bench_bert_step: the {impl} worker failed (exit {proc.returncode})")
      results[impl].append(json.loads(lines[-1][len("RESULT "):]))

  def summary(impl):
    runs = results[impl]
    return (statistics.median([t for r in runs for t in r["times"]]), max(r["peak"] for r in runs),
            runs[-1]["loss"], runs[0]["warmup_s"])

  jax_impls = impls[:-1]
  jax_runs = {impl: summary(impl) for impl in jax_impls}
  t_step, torch_rate, t_loss, _ = summary("torch")
  peak = max([torch_rate] + [r[1] for r in jax_runs.values()])
  jax_rate = max(r[1] for r in jax_runs.values())
  vocab, (h, nl, inter) = results[jax_impls[0]][0]["vocab"], results[jax_impls[0]][0]["model"]
  tokens = args.batch * args.seq
  j_flops = step_flops(h, nl, inter, vocab, args.batch, args.seq, args.batch * args.predictions)
  t_flops = step_flops(h, nl, inter, vocab, args.batch, args.seq, args.batch * args.seq)
  print(f"BERT-{args.size} MLM+NSP train step, batch {args.batch} x {args.seq}, float32, "
        f"{args.threads} CPU threads, vocab {vocab}, {args.predictions} predictions/example")
  print(f"matmul peak (2048^3 float32): jax {jax_rate / 1e9:.1f} GFLOP/s, "
        f"torch {torch_rate / 1e9:.1f} GFLOP/s -> peak {peak / 1e9:.1f} GFLOP/s")
  for impl, (j_step, _, j_loss, j_compile) in jax_runs.items():
    print(f"plm_jax fused_ops={impl[4:]:3s}: {j_step * 1e3:9.1f} ms/step  "
          f"{tokens / j_step:9.1f} tokens/s  {j_flops / j_step / 1e9:7.1f} GFLOP/s "
          f"({100 * j_flops / j_step / peak:.0f}% of peak)  loss {j_loss:.3f}  "
          f"(compile+warmup {j_compile:.1f}s)")
  print(f"pytorch            : {t_step * 1e3:9.1f} ms/step  {tokens / t_step:9.1f} tokens/s  "
        f"{t_flops / t_step / 1e9:7.1f} GFLOP/s ({100 * t_flops / t_step / peak:.0f}% of peak)  "
        f"loss {t_loss:.3f}")
  for impl in impls:
    rounds = ", ".join(f"{statistics.median(r['times']) * 1e3:.0f}" for r in results[impl])
    print(f"  {impl} per-round median ms/step: {rounds}")
  for impl, (j_step, *_) in jax_runs.items():
    ratio = t_step / j_step
    print(f"ratio plm_jax (fused_ops={impl[4:]}) / pytorch tokens/s: {ratio:.2f}x "
          f"(target >= 1.5x: {'met' if ratio >= 1.5 else 'NOT met'})")
  if len(jax_runs) == 2:
    print(f"fused_ops: the step with the switch on is "
          f"{jax_runs['jax_off'][0] / jax_runs['jax_on'][0]:.2f}x as fast as with it off")
  j_step = jax_runs[jax_impls[0]][0]
  # A ceiling measured in the same run: the plm_jax step's matrix products
  # alone, each timed on its own, as if every other op (softmax, LayerNorm,
  # GELU, dropout, transposes, AdamW) cost nothing.
  floor = statistics.median(r["gemm_floor"] for r in results[jax_impls[0]])
  print(f"GEMM floor: plm_jax's matrix products alone take {floor * 1e3:.1f} ms/step "
        f"({100 * floor / j_step:.0f}% of its fused_ops={jax_impls[0][4:]} step); "
        f"ceiling ratio with everything else "
        f"free: {t_step / floor:.2f}x; non-GEMM time {1e3 * (j_step - floor):.0f} ms/step, "
        f"allowed for 1.5x: {1e3 * (t_step / 1.5 - floor):.0f} ms/step")
  return 0


if __name__ == "__main__":
  sys.exit(main())
