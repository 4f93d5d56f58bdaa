"""Benchmark: the ELMo biLM train step, plm_jax vs a PyTorch LSTM LM of the same shape.

  python bench/bench_elmo_step.py --quick            # tiny sizes, a few steps (a smoke run)
  python bench/bench_elmo_step.py --size=small --batch=64 --seq=20 --vocab=20000 --steps=10

Both sides: the char CNN (max-pool, relu), highway layers, projection, a forward and a
backward stack of LSTMs with projection (PyTorch: `nn.LSTM(proj_size=P)`, cuDNN-style
fused kernels on GPU, no cell / projection clipping: it has none), skip connections,
the shared full softmax, dropout as configured, AdamW with global-norm clipping, float32,
the same synthetic batch. Each side runs in its own process pinned to the same --threads
cores; every step is timed and the median reported as tokens/s (batch x seq / step).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402  pylint: disable=wrong-import-position


def _config(args):
  from configs import elmo  # pylint: disable=import-outside-toplevel
  c = elmo.get_config(args.size)
  c.lm.softmax = "full"
  c.data.seq_length = args.seq
  c.train.batch_size = args.batch
  c.optimizer.update(name="adamw", learning_rate=1e-3, warmup_steps=0, weight_decay=0.0,
                     eps=1e-6, grad_clip_norm=10.0)
  return c


def _batch(args, max_chars):
  import numpy as np  # pylint: disable=import-outside-toplevel
  from plm_jax.data import elmo_chars  # pylint: disable=import-outside-toplevel
  words = ["<S>", "</S>", "<UNK>"] + [f"w{i}x" for i in range(args.vocab - 3)]
  rng = np.random.default_rng(0)
  ids = rng.integers(0, args.vocab, (args.batch, args.seq)).astype(np.int32)
  table = np.stack([elmo_chars.word_char_ids(w, max_chars) for w in words])
  return words, {"input_ids": ids, "char_ids": table[ids]}


def run_jax(args):
  import jax  # pylint: disable=import-outside-toplevel
  from plm_jax.data import elmo_chars  # pylint: disable=import-outside-toplevel
  from plm_jax.objectives.elmo_pretrain import ElmoBiLMObjective  # pylint: disable=import-outside-toplevel
  from plm_jax.train import evaluation, step as step_lib, trainer  # pylint: disable=import-outside-toplevel
  config = _config(args)
  words, batch = _batch(args, config.model.max_characters_per_token)
  objective = ElmoBiLMObjective(config, vocab=elmo_chars.WordVocab(words))
  setup = trainer.build_setup(config, devices=jax.devices()[:1], objective=objective)
  fn = step_lib.jit_train_step(setup.objective, setup.tx, setup.mesh, setup.state_shardings,
                               1, setup.rules)
  state = setup.init_fn(jax.random.PRNGKey(0))
  gbatch = evaluation.global_batch(batch, objective.batch_spec(args.batch),
                                   step_lib.sharding_lib.batch_sharding(setup.mesh))
  holder = {"state": state}

  def one():
    holder["state"], metrics = fn(holder["state"], gbatch, jax.random.PRNGKey(1))
    jax.block_until_ready(metrics)
    return float(metrics["loss"][0] / metrics["loss"][1])
  return one


def run_torch(args):
  import numpy as np  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  from torch import nn  # pylint: disable=import-outside-toplevel
  cfg = _config(args).model
  _, batch = _batch(args, cfg.max_characters_per_token)
  torch.manual_seed(0)
  f_total, p, drop = sum(n for _, n in cfg.filters), cfg.projection_dim, cfg.dropout

  class BiLM(nn.Module):
    def __init__(self):
      super().__init__()
      self.embed = nn.Embedding(cfg.n_characters, cfg.char_embedding_dim)
      self.convs = nn.ModuleList(nn.Conv1d(cfg.char_embedding_dim, n, w) for w, n in cfg.filters)
      self.highways = nn.ModuleList(nn.Linear(f_total, 2 * f_total) for _ in range(cfg.n_highway))
      self.proj = nn.Linear(f_total, p)
      self.stacks = nn.ModuleList(nn.ModuleList(
          nn.LSTM(p, cfg.lstm_dim, proj_size=p if p < cfg.lstm_dim else 0, batch_first=True)
          for _ in range(cfg.n_layers)) for _ in range(2))
      self.softmax = nn.Linear(p, args.vocab)
      self.dropout = nn.Dropout(drop)

    def forward(self, chars, ids):
      b, t, c = chars.shape
      x = self.embed(chars.view(b * t, c)).transpose(1, 2)        # [BT, D, C]
      h = torch.cat([torch.relu(conv(x).max(-1).values) for conv in self.convs], -1)
      for hw in self.highways:
        carry, transform = hw(h).chunk(2, -1)
        g = torch.sigmoid(carry)
        h = g * torch.relu(transform) + (1 - g) * h
      token = self.proj(h).view(b, t, p)
      losses = []
      for d, stack in enumerate(self.stacks):
        x = token if d == 0 else token.flip(1)
        for k, lstm in enumerate(stack):
          out, _ = lstm(self.dropout(x))
          x = out + x if (cfg.use_skip_connections and k > 0) else out
        top = self.dropout(x if d == 0 else x.flip(1))
        logits = self.softmax(top[:, :-1] if d == 0 else top[:, 1:])
        target = ids[:, 1:] if d == 0 else ids[:, :-1]
        losses.append(nn.functional.cross_entropy(logits.reshape(-1, args.vocab),
                                                  target.reshape(-1)))
      return 0.5 * (losses[0] + losses[1])

  model = BiLM().train()
  opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0, eps=1e-6, fused=True)
  chars = torch.from_numpy(batch["char_ids"].astype(np.int64))
  ids = torch.from_numpy(batch["input_ids"].astype(np.int64))

  def one():
    opt.zero_grad(set_to_none=True)
    loss = model(chars, ids)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
    opt.step()
    return float(loss.detach())
  return one


def child(args):
  harness.pin(args.threads)
  if args.side == "torch":
    import torch  # pylint: disable=import-outside-toplevel
    torch.set_num_threads(args.threads)
  one = run_jax(args) if args.side == "jax" else run_torch(args)
  t = time.perf_counter()
  first_loss = one()                                 # compile / warm-up
  warm = time.perf_counter() - t
  times = []
  for _ in range(args.steps):
    t = time.perf_counter()
    loss = one()
    times.append(time.perf_counter() - t)
  print(json.dumps({"side": args.side, "median_s": statistics.median(times), "warmup_s": warm,
                    "first_loss": first_loss, "last_loss": loss}))


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--size", default="small")
  ap.add_argument("--batch", type=int, default=64)
  ap.add_argument("--seq", type=int, default=20)
  ap.add_argument("--vocab", type=int, default=20000)
  ap.add_argument("--steps", type=int, default=10)
  ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
  ap.add_argument("--quick", action="store_true", help="tiny sizes, 3 steps")
  ap.add_argument("--side", choices=("jax", "torch"), default=None, help=argparse.SUPPRESS)
  args = ap.parse_args()
  if args.quick:
    args.size, args.batch, args.seq, args.vocab, args.steps = "tiny", 8, 10, 500, 3
  if args.side:
    return child(args)
  results = {}
  for side in ("jax", "torch"):
    cmd = [sys.executable, os.path.abspath(__file__), f"--side={side}", f"--size={args.size}",
           f"--batch={args.batch}", f"--seq={args.seq}", f"--vocab={args.vocab}",
           f"--steps={args.steps}", f"--threads={args.threads}"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO).stdout
    results[side] = json.loads(out.strip().splitlines()[-1])
  tokens = args.batch * args.seq
  for side, r in results.items():
    print(f"{side:5s}: {r['median_s'] * 1e3:9.1f} ms/step  {tokens / r['median_s']:10,.0f} "
          f"tokens/s  (first step {r['warmup_s']:.1f} s; loss {r['first_loss']:.3f} -> "
          f"{r['last_loss']:.3f})")
  ratio = results["torch"]["median_s"] / results["jax"]["median_s"]
  print(f"plm_jax / PyTorch tokens/s: {ratio:.2f}x ({args.size}, batch {args.batch} x seq "
        f"{args.seq}, vocab {args.vocab}, {args.threads} threads)")


if __name__ == "__main__":
  main()
