"""Benchmark: the ELMo biLM train step, plm_jax vs a PyTorch LSTM LM of the same shape.

  python bench/bench_elmo_step.py                     # size small, batch 64 x 20 (full size)
  python bench/bench_elmo_step.py --quick             # tiny model, 500 words, 2 steps: does it run

The shared harness (bench/harness.py: separate pinned processes, medians, matmul
peak, GEMM floor); every other flag is the harness's (--batch, --seq, --steps,
--rounds ...) and --vocab=N (the softmax size, default 20,000). ELMo has no
fused_ops switch, so one plm_jax worker runs (reported as fused_ops=on). Hugging Face has no ELMo, so the PyTorch side is built here with
the same shape: the char CNN (embedding, Conv1d per filter, max-pool, relu), highway
layers, projection, a forward and a backward stack of `nn.LSTM(proj_size=P)` (no
cell / projection clipping: PyTorch has none), skip connections from the second
layer, dropout on the LSTM inputs and the softmax input, and the shared full softmax
(the plm_jax side is switched to lm.softmax='full' too); loss = the mean of the two
directions' cross-entropies. Synthetic windows over a --vocab-word vocabulary whose
char ids are the words' (plm_jax.data.elmo_chars). The GEMM floor counts the char
CNN as products, the highway and projection layers, each LSTM's input half over all
steps at once and its recurrent and projection products once per time step, and the
softmax at the T - 1 predicted positions of each direction.
"""
import dataclasses
import os
import sys
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # pylint: disable=wrong-import-position

VOCAB = 20000
QUICK = ["--size=tiny", "--batch=4", "--seq=10", "--steps=2", "--rounds=1", "--warmup=1"]


def _words(vocab_size):
  return ["<S>", "</S>", "<UNK>"] + [f"w{i}x" for i in range(vocab_size - 3)]


def _config(size):
  from configs import elmo  # pylint: disable=import-outside-toplevel
  c = elmo.get_config(size)
  c.lm.softmax = "full"       # the PyTorch side has no sampled softmax
  return c


def _objective(config, vocab_size):
  from plm_jax.data.elmo_chars import WordVocab  # pylint: disable=import-outside-toplevel
  from plm_jax.objectives.elmo_pretrain import ElmoBiLMObjective  # pylint: disable=import-outside-toplevel
  return ElmoBiLMObjective(config, vocab=WordVocab(_words(vocab_size)))


def _batch(rng, vocab_size, batch, seq):
  import numpy as np  # pylint: disable=import-outside-toplevel
  from plm_jax.data import elmo_chars  # pylint: disable=import-outside-toplevel
  chars = _config("tiny").model.max_characters_per_token
  ids = rng.integers(3, vocab_size, size=(batch, seq)).astype(np.int32)
  table = np.stack([elmo_chars.word_char_ids(w, chars) for w in _words(vocab_size)])
  return {"input_ids": ids, "char_ids": table[ids].astype(np.int32)}


def _torch_model(cfg, vocab_size, seq):
  """The biLM in PyTorch (see the module doc); forward(char_ids, input_ids) -> .loss."""
  del seq
  import torch  # pylint: disable=import-outside-toplevel
  from torch import nn  # pylint: disable=import-outside-toplevel
  f_total, p = sum(n for _, n in cfg.filters), cfg.projection_dim

  class BiLM(nn.Module):
    def __init__(self):
      super().__init__()
      self.embed = nn.Embedding(cfg.n_characters, cfg.char_embedding_dim)
      self.convs = nn.ModuleList(nn.Conv1d(cfg.char_embedding_dim, n, w) for w, n in cfg.filters)
      self.highways = nn.ModuleList(nn.Linear(f_total, 2 * f_total) for _ in range(cfg.n_highway))
      self.proj = nn.Linear(f_total, p) if f_total != p else nn.Identity()
      self.stacks = nn.ModuleList(nn.ModuleList(
          nn.LSTM(p, cfg.lstm_dim, proj_size=p if p < cfg.lstm_dim else 0, batch_first=True)
          for _ in range(cfg.n_layers)) for _ in range(2))
      self.softmax = nn.Linear(p, vocab_size)
      self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, char_ids, input_ids):
      b, t, c = char_ids.shape
      x = self.embed(char_ids.view(b * t, c)).transpose(1, 2)          # [BT, D, C]
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
        target = input_ids[:, 1:] if d == 0 else input_ids[:, :-1]
        losses.append(nn.functional.cross_entropy(logits.reshape(-1, vocab_size),
                                                  target.reshape(-1)))
      return SimpleNamespace(loss=0.5 * (losses[0] + losses[1]))

  return BiLM()


def _gemms(cfg, vocab, batch, seq, preds):
  """The forward products of the plm_jax step (see the module doc)."""
  del preds
  tokens, chars, dim = batch * seq, cfg.max_characters_per_token, cfg.char_embedding_dim
  f_total, p, h = sum(n for _, n in cfg.filters), cfg.projection_dim, cfg.lstm_dim
  out = [((), tokens * (chars - w + 1), w * dim, n, 1) for w, n in cfg.filters]
  out.append(((), tokens, f_total, f_total, 2 * cfg.n_highway))
  if f_total != p:
    out.append(((), tokens, f_total, p, 1))
  lstms = 2 * cfg.n_layers
  out.append(((), tokens, p, 4 * h, lstms))                   # input half, all steps at once
  out.append(((), batch, p, 4 * h, lstms * seq))              # recurrent half, per step
  if p < h:
    out.append(((), batch, h, p, lstms * seq))                # projection, per step
  out.append(((), batch * (seq - 1), p, vocab, 2))            # shared softmax, both directions
  return out


ELMO = harness.Family(
    name="elmo", config=_config, objective=_objective, hf_model=_torch_model,
    hf_inputs=lambda t: dict(char_ids=t["char_ids"], input_ids=t["input_ids"]),
    sentence_label=None, vocab_size=VOCAB, token_types=False, causal_lm=True,
    target=1.0, gemms=_gemms, batch=_batch)


def _main(argv) -> int:
  vocab = [a for a in argv if a.startswith("--vocab=")]
  argv = [a for a in argv if not a.startswith("--vocab=")]
  if "--quick" in argv:
    argv = QUICK + [a for a in argv if a != "--quick"]
    vocab = vocab or ["--vocab=500"]
  for flag, value in (("--size", "small"), ("--batch", "64"), ("--seq", "20"),
                      ("--fused_ops", "on")):
    if not any(a.startswith(flag) for a in argv):
      argv = [f"{flag}={value}"] + argv
  family = ELMO
  if vocab:
    size = int(vocab[-1].split("=", 1)[1])
    if size < 4:
      raise SystemExit(f"bench_elmo_step.py: --vocab={size}: need at least 4 words")
    family = dataclasses.replace(ELMO, vocab_size=size)
  return harness.main(family, argv, description=__doc__.split("\n")[0], worker_args=vocab)


if __name__ == "__main__":
  sys.exit(_main(sys.argv[1:]))
