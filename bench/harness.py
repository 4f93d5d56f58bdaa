"""The train-step benchmark harness shared by every family: plm_jax vs Hugging Face PyTorch.

A family is a `Family` (its plm_jax config and objective, its Hugging Face
model and loss inputs, the matrix products of its step); bench_<family>_step.py
files define one and call `main(family)`. What the harness does, the same for all:

  * each implementation runs in its own process (alternating, --rounds times)
    pinned to the same --threads cores, float32, dropout as configured, AdamW
    (PyTorch: fused, as HF's Trainer) with global-norm clipping; every step is
    timed on its own and the median over all rounds is reported;
  * the achieved FLOP/s of each over a matmul peak measured in the same run
    (the faster of a large jax and a large torch float32 matmul); FLOPs count
    what each executes (plm_jax projects onto the vocabulary only at the masked
    positions, as the original BERT code; HF projects every token);
  * the GEMM floor: every matrix product of the plm_jax step timed on its own
    (jax, same threads) and summed, i.e. the step with everything else free.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

Gemm = Tuple[Tuple[int, ...], int, int, int, int]   # (batch dims, m, k, n, count)


@dataclasses.dataclass(frozen=True)
class Family:
  """What a family's bench entry provides.

  config(size) -> the plm_jax run config (configs/<family>.py);
  objective(config, vocab_size) -> the Objective fed synthetic batches;
  hf_model(model_cfg, vocab_size, seq) -> the transformers model (train mode);
  hf_inputs(tensors) -> the model's keyword arguments with labels (tensors: the
    batch as int64 torch tensors plus 'labels', -100 away from masked positions);
  sentence_label: the batch's sentence-pair label feature, or None;
  vocab_size, pad_id: of the synthetic batches; embedding_size(model_cfg) for a
  factorised embedding (ALBERT), else None.
  """
  name: str
  config: Callable[[str], Any]
  objective: Callable[[Any, int], Any]
  hf_model: Callable[[Any, int, int], Any]
  hf_inputs: Callable[[Dict[str, Any]], Dict[str, Any]]
  sentence_label: Optional[str]
  vocab_size: int
  pad_id: int = 0
  embedding_size: Callable[[Any], Optional[int]] = lambda cfg: None
  token_types: bool = True              # two segments (False: every token type 0, RoBERTa)
  target: float = 1.3
  floor_target: Optional[float] = None  # step / GEMM floor the family aims under (GPT: 1.2)
  # (model_cfg, vocab, batch, seq, preds) -> the forward products, for a family whose step is
  # not one encoder + MLM head (ELECTRA: generator + discriminator); None: forward_gemms
  gemms: Optional[Callable[..., List[Gemm]]] = None
  # A causal LM (GPT): full packed rows (input_ids, segment_ids 1, position_ids), every
  # token predicted on both sides (HF labels = input_ids), no masked positions, no pooler.
  causal_lm: bool = False
  # An encoder-decoder (T5): --seq encoder tokens and --predictions target tokens per row
  # (seqio EncDecFeatureConverter features, unpacked, every token real); HF labels = the
  # targets; tokens/s counts both; `configure(config, seq, targets)` sets the lengths.
  seq2seq: bool = False
  configure: Optional[Callable[[Any, int, int], None]] = None
  # (rng, vocab, batch, seq) -> a family's own synthetic batch (ELMo: input_ids + char_ids);
  # None: the MLM or causal LM batch above. The model config's Transformer keys
  # (max_position_embeddings, fused_ops, dtype, dropout rates) are set only where it has them.
  batch: Optional[Callable[..., Dict[str, Any]]] = None


def _floor_verdict(family: Family, ratio: float) -> str:
  if family.floor_target is None:
    return ""
  return (f", target <= {family.floor_target}x: "
          f"{'met' if ratio <= family.floor_target else 'NOT met'}")


def pin(threads: int) -> None:
  try:
    cpus = sorted(os.sched_getaffinity(0))[:threads]
    os.sched_setaffinity(0, set(cpus))
  except (AttributeError, OSError):
    pass
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + " --xla_force_host_platform_device_count=1").strip()


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


def forward_gemms(h, layers, inter, vocab, batch, seq, preds, heads, embedding=None,
                  sentence_head=True) -> List[Gemm]:
  """The matrix products of one forward pass: per layer q, k, v, output, MLP in and out, and
  the attention scores and context as batched products over batch*heads; the E -> H mapping
  of a factorised embedding; the MLM transform and tied decoder at `preds` positions; the
  pooler and 2-way sentence classifier."""
  tokens, d = batch * seq, h // heads
  out: List[Gemm] = [((), tokens, h, h, 4 * layers), ((), tokens, h, inter, layers),
                     ((), tokens, inter, h, layers),
                     ((batch * heads,), seq, d, seq, layers), ((batch * heads,), seq, seq, d, layers)]
  e = embedding or h
  if embedding:
    out.append(((), tokens, e, h, 1))
  out += [((), preds, h, e, 1), ((), preds, e, vocab, 1)]
  if sentence_head:
    out += [((), batch, h, h, 1), ((), batch, h, 2, 1)]
  return out


def flops(gemms: Sequence[Gemm]) -> float:
  """Forward+backward (3x forward) FLOPs of these forward products."""
  total = 0.0
  for bdims, m, k, n, count in gemms:
    size = 1
    for b in bdims:
      size *= b
    total += 2.0 * size * m * k * n * count
  return 3.0 * total


def with_backward(gemms: Sequence[Gemm]) -> List[Gemm]:
  """Each forward y[m, n] = x[m, k] w[k, n] plus dx = dy w^T (m, n, k) and dw = x^T dy (k, m, n)."""
  out = []
  for bdims, m, k, n, count in gemms:
    out += [(bdims, m, k, n, count), (bdims, m, n, k, count), (bdims, k, m, n, count)]
  return out


def gemm_floor(gemms: Sequence[Gemm], reps: int = 5, impl: str = "jax") -> float:
  """Seconds that the products in `gemms` take in `impl` ('jax': XLA, one jitted matmul
  per shape; 'torch': torch.matmul), each timed alone (median of reps)."""
  total, seen = 0.0, {}
  if impl == "jax":
    import jax  # pylint: disable=import-outside-toplevel
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
    key = jax.random.PRNGKey(0)
    f = jax.jit(jnp.matmul)
    make = lambda shape: jax.random.normal(key, shape, jnp.float32)
    run = lambda a, b: f(a, b).block_until_ready()
  else:
    import torch  # pylint: disable=import-outside-toplevel
    make = lambda shape: torch.randn(shape)
    run = torch.matmul
  for bdims, m, k, n, count in gemms:
    shape = (bdims, m, k, n)
    if shape not in seen:
      a, b = make(bdims + (m, k)), make(bdims + (k, n))
      run(a, b)
      times = []
      for _ in range(reps):
        t = time.perf_counter()
        run(a, b)
        times.append(time.perf_counter() - t)
      seen[shape] = statistics.median(times)
    total += seen[shape] * count
  return total


def make_batch(rng, vocab, batch, seq, preds, sentence_label="next_sentence_label", pad_id=0):
  """Synthetic MLM batch: random lengths (the first full), two segments, sorted positions."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  lengths = rng.integers(seq // 2, seq + 1, size=batch)
  lengths[0] = seq
  ids = rng.integers(1000, vocab, size=(batch, seq)).astype(np.int32)
  mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int32)
  ids = np.where(mask == 1, ids, pad_id).astype(np.int32)
  types = ((np.arange(seq)[None, :] >= (lengths // 2)[:, None]) & (mask == 1)).astype(np.int32)
  positions = np.stack([np.sort(rng.choice(np.arange(1, l - 1), preds, replace=False))
                        for l in lengths]).astype(np.int32)
  labels = np.take_along_axis(ids, positions, axis=1).astype(np.int32)
  out = {
      "input_ids": ids, "token_type_ids": types, "attention_mask": mask,
      "masked_lm_positions": positions, "masked_lm_ids": labels,
      "masked_lm_weights": np.ones((batch, preds), np.float32),
  }
  if sentence_label:
    out[sentence_label] = rng.integers(0, 2, size=batch).astype(np.int32)
  return out


def causal_lm_batch(rng, vocab, batch, seq):
  """Synthetic packed causal LM rows: every position a real token of one document."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  return {"input_ids": rng.integers(1000, vocab, size=(batch, seq)).astype(np.int32),
          "segment_ids": np.ones((batch, seq), np.int32),
          "position_ids": np.broadcast_to(np.arange(seq, dtype=np.int32), (batch, seq)).copy()}


def seq2seq_batch(rng, vocab, batch, seq, targets):
  """Synthetic encoder-decoder rows: seq input tokens, targets target tokens (no padding)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  tgt = rng.integers(2, vocab, size=(batch, targets)).astype(np.int32)
  return {"encoder_input_tokens": rng.integers(2, vocab, size=(batch, seq)).astype(np.int32),
          "decoder_target_tokens": tgt,
          "decoder_input_tokens": np.concatenate([np.zeros((batch, 1), np.int32), tgt[:, :-1]], 1),
          "decoder_loss_weights": np.ones((batch, targets), np.int32)}


def family_batch(family: Family, rng, batch, seq, preds):
  if family.batch is not None:
    return family.batch(rng, family.vocab_size, batch, seq)
  if family.seq2seq:
    return seq2seq_batch(rng, family.vocab_size, batch, seq, preds)
  if family.causal_lm:
    return causal_lm_batch(rng, family.vocab_size, batch, seq)
  out = make_batch(rng, family.vocab_size, batch, seq, preds, family.sentence_label,
                   family.pad_id)
  if not family.token_types:
    out["token_type_ids"] = out["token_type_ids"] * 0
  return out


def bench_objective(family: Family, size, batch, seq, preds, *, vocab_size, dtype="float32",
                    dropout=True, fused_ops=None):
  """The family's `size` config set up for synthetic batches of this shape, and its
  objective (fused_ops: None keeps the config's model.fused_ops, True/False sets it)."""
  config = family.config(size)
  if family.configure is not None:
    family.configure(config, seq, preds)
  else:
    config.data.seq_length = seq
  if not (family.causal_lm or family.seq2seq):
    config.mlm.max_predictions = preds
  config.train.batch_size = batch
  config.optimizer.warmup_steps = 10
  config.optimizer.update(name="adamw", learning_rate=1e-4, weight_decay=0.01, eps=1e-6,
                          grad_clip_norm=1.0)   # the PyTorch side's optimizer
  model = config.model
  if "dtype" in model:
    model.dtype = dtype
  if "max_position_embeddings" in model:
    model.max_position_embeddings = max(seq + family.pad_id + 1, model.max_position_embeddings)
  if fused_ops is not None and "fused_ops" in model:
    model.fused_ops = bool(fused_ops)
  if not dropout:
    for key in ("hidden_dropout_rate", "attention_dropout_rate", "dropout_rate", "dropout"):
      if key in model:
        model[key] = 0.0
  if "data" in config and "vocab" in config.data:
    # Synthetic ids below vocab_size: no vocabulary file is read, but a base/large config's
    # BPE / SentencePiece type would insist on one.
    config.data.vocab.update(type="builtin", path="")
  return config, family.objective(config, vocab_size)   # only the vocabulary's size matters


def jax_setup(family: Family, size, batch, seq, preds, *, vocab_size, dtype="float32",
              devices=None, dropout=True, fused_ops=None):
  """trainer.build_setup for bench_objective's config and objective."""
  import jax  # pylint: disable=import-outside-toplevel
  from plm_jax.train import trainer  # pylint: disable=import-outside-toplevel
  config, objective = bench_objective(family, size, batch, seq, preds, vocab_size=vocab_size,
                                      dtype=dtype, dropout=dropout, fused_ops=fused_ops)
  return trainer.build_setup(config, devices=devices or jax.devices()[:1], objective=objective)


def jax_step(family: Family, size, batch_np, *, vocab_size, dtype="float32", devices=None,
             fused_ops=None):
  """A callable running one plm_jax train step (blocking; returns the loss), and the model config."""
  import jax  # pylint: disable=import-outside-toplevel
  from plm_jax.train import evaluation, step as step_lib  # pylint: disable=import-outside-toplevel

  if family.seq2seq:
    batch, seq = batch_np["encoder_input_tokens"].shape
    preds = batch_np["decoder_target_tokens"].shape[1]
  else:
    batch, seq = batch_np["input_ids"].shape
    preds = seq if family.causal_lm else batch_np["masked_lm_positions"].shape[1]
  setup = jax_setup(family, size, batch, seq, preds,
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


def torch_step(family: Family, size, batch_np, *, vocab_size, device="cpu", dtype="float32"):
  """A callable running one Hugging Face PyTorch train step (blocking; returns the loss).

  On CUDA: TF32 matmuls in float32 (as jax's default GPU precision has them;
  PyTorch's default is full float32), bfloat16 through autocast.
  """
  import numpy as np  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel

  cfg = family.config(size).model
  cuda = device == "cuda"
  if cuda:
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
  torch.manual_seed(0)
  rows = batch_np["encoder_input_tokens" if family.seq2seq else "input_ids"]
  model = family.hf_model(cfg, vocab_size, rows.shape[1]).to(device)
  model.train()
  # fused=True: the kernel Hugging Face's Trainer uses by default with torch >= 2.8
  # (optim='adamw_torch_fused'); about 3x faster on CPU than the per-tensor loop.
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, eps=1e-6, fused=True)
  tensors = {k: torch.from_numpy(v.astype(np.int64)).to(device) for k, v in batch_np.items()
             if v.dtype != np.float32}
  if family.seq2seq:
    tensors["labels"] = tensors["decoder_target_tokens"]   # HF shifts them right itself
  elif family.causal_lm:
    tensors["labels"] = tensors["input_ids"]            # HF shifts them inside the model
  else:
    labels = torch.full_like(tensors["input_ids"], -100)
    labels.scatter_(1, tensors["masked_lm_positions"], tensors["masked_lm_ids"])
    tensors["labels"] = labels
  inputs = family.hf_inputs(tensors)

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


def _gemms(family: Family, cfg, batch, seq, preds) -> List[Gemm]:
  if family.gemms is not None:
    return family.gemms(cfg, family.vocab_size, batch, seq, preds)
  if family.causal_lm:   # the tied output layer at every token, no MLM transform
    gemms = forward_gemms(cfg.hidden_size, cfg.num_layers, cfg.intermediate_size,
                          family.vocab_size, batch, seq, batch * seq, cfg.num_heads,
                          sentence_head=False)
    return [g for g in gemms if g[1:4] != (batch * seq, cfg.hidden_size, cfg.hidden_size)
            or g[4] != 1]
  return forward_gemms(cfg.hidden_size, cfg.num_layers, cfg.intermediate_size,
                       family.vocab_size, batch, seq, preds, cfg.num_heads,
                       family.embedding_size(cfg), family.sentence_label is not None)


def worker(family: Family, args) -> dict:
  """Runs one implementation in this process; returns its timings as a dict."""
  pin(args.threads)
  import numpy as np  # pylint: disable=import-outside-toplevel
  if args.worker == "torch":
    import torch  # pylint: disable=import-outside-toplevel
    torch.set_num_threads(args.threads)
  vocab = family.vocab_size
  batch_np = family_batch(family, np.random.default_rng(0), args.batch, args.seq, args.predictions)
  peak = matmul_peak(args.worker)
  if args.worker == "jax":
    one, cfg = jax_step(family, args.size, batch_np, vocab_size=vocab,
                        fused_ops={"on": True, "off": False}[args.worker_fused_ops])
  else:
    one = torch_step(family, args.size, batch_np, vocab_size=vocab)
    cfg = family.config(args.size).model
  t0 = time.perf_counter()
  for _ in range(args.warmup):
    loss = one()
  warm = time.perf_counter() - t0
  times = []
  for _ in range(args.steps):
    t = time.perf_counter()
    loss = one()
    times.append(time.perf_counter() - t)
  result = {"times": times, "loss": loss, "peak": peak, "warmup_s": warm}
  # plm_jax's products, timed in this side's library: the jax floor bounds plm_jax; the same
  # products in torch show how close PyTorch's own step runs to its matrix library.
  result["gemm_floor"] = gemm_floor(with_backward(_gemms(
      family, cfg, args.batch, args.seq, args.batch * args.predictions)), impl=args.worker)
  return result


def main(family: Family, argv=None, description: str = "", worker_args: Sequence[str] = ()) -> int:
  """Parses the harness's flags (argv) and runs the benchmark; worker_args: extra arguments
  the script needs to pick the same family again in its worker processes."""
  p = argparse.ArgumentParser(description=description or f"{family.name} train step benchmark")
  p.add_argument("--size", default="base", help=f"configs/{family.name}.py size (default: base)")
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
    print("RESULT " + json.dumps(worker(family, args)))
    return 0

  # Each implementation runs in its own process: in one process, PyTorch's
  # OpenMP threads and XLA's thread pool slow each other down. The processes
  # alternate so that both see the same machine conditions.
  passthrough = [f"--size={args.size}", f"--batch={args.batch}", f"--seq={args.seq}",
                 f"--predictions={args.predictions}", f"--steps={args.steps}",
                 f"--warmup={args.warmup}", f"--threads={args.threads}"]
  switch = ("on", "off") if args.fused_ops == "both" else (args.fused_ops,)
  impls = [f"jax_{s}" for s in switch] + ["torch"]
  results: Dict[str, List[dict]] = {impl: [] for impl in impls}
  script = os.path.abspath(sys.argv[0])
  for _ in range(args.rounds):
    for impl in impls:
      flags = (["--worker=torch"] if impl == "torch"
               else ["--worker=jax", f"--worker_fused_ops={impl[4:]}"])
      proc = subprocess.run([sys.executable, script] + list(worker_args) + flags + passthrough,
                            capture_output=True, text=True, check=False)
      lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
      if proc.returncode or not lines:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
        sys.exit(f"{os.path.basename(script)}: the {impl} worker failed (exit {proc.returncode})")
      results[impl].append(json.loads(lines[-1][len("RESULT "):]))
  report(family, args, impls, results)
  return 0


def report(family: Family, args, impls, results) -> None:
  def summary(impl):
    runs = results[impl]
    return (statistics.median([t for r in runs for t in r["times"]]), max(r["peak"] for r in runs),
            runs[-1]["loss"], runs[0]["warmup_s"])

  jax_impls = impls[:-1]
  jax_runs = {impl: summary(impl) for impl in jax_impls}
  t_step, torch_rate, t_loss, _ = summary("torch")
  peak = max([torch_rate] + [r[1] for r in jax_runs.values()])
  jax_rate = max(r[1] for r in jax_runs.values())
  cfg = family.config(args.size).model
  tokens = args.batch * (args.seq + (args.predictions if family.seq2seq else 0))
  j_flops = flops(_gemms(family, cfg, args.batch, args.seq, args.batch * args.predictions))
  t_flops = j_flops if family.seq2seq else flops(_gemms(family, cfg, args.batch, args.seq,
                                                        args.batch * args.seq))
  shape = f"{args.seq} inputs + {args.predictions} targets" if family.seq2seq else args.seq
  print(f"{family.name}-{args.size} train step, batch {args.batch} x {shape}, float32, "
        f"{args.threads} CPU threads, vocab {family.vocab_size}, "
        + ("every token predicted" if family.causal_lm
           else f"{args.predictions} predictions/example"))
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
          f"(target >= {family.target}x: {'met' if ratio >= family.target else 'NOT met'})")
  if len(jax_runs) == 2:
    print(f"fused_ops: the step with the switch on is "
          f"{jax_runs['jax_off'][0] / jax_runs['jax_on'][0]:.2f}x as fast as with it off")
  j_step = jax_runs[jax_impls[0]][0]
  # A ceiling measured in the same run: the plm_jax step's matrix products
  # alone, each timed on its own, as if every other op (softmax, LayerNorm,
  # GELU, dropout, transposes, AdamW) cost nothing.
  floor = statistics.median(r["gemm_floor"] for r in results[jax_impls[0]])
  print(f"GEMM floor: plm_jax's matrix products alone take {floor * 1e3:.1f} ms/step "
        f"({100 * floor / j_step:.0f}% of its fused_ops={jax_impls[0][4:]} step; step/floor "
        f"{j_step / floor:.2f}x{_floor_verdict(family, j_step / floor)}); ceiling ratio with everything else free: {t_step / floor:.2f}x; "
        f"non-GEMM time {1e3 * (j_step - floor):.0f} ms/step, allowed for {family.target}x: "
        f"{1e3 * (t_step / family.target - floor):.0f} ms/step")
  t_floor = statistics.median(r["gemm_floor"] for r in results["torch"])
  print(f"the same products in torch.matmul: {t_floor * 1e3:.1f} ms/step (jax / torch "
        f"{floor / t_floor:.2f}x; PyTorch's step is {t_step / t_floor:.2f}x its products)")
