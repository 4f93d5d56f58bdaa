"""Benchmark: T5 train step (plm_jax vs Hugging Face PyTorch T5ForConditionalGeneration, on
the shared harness), span-corruption pipeline, cached greedy decoding (vs `generate`).

  python bench/bench_t5.py                  # T5 v1.1 small, 8 x 512 inputs / 114 targets
  python bench/bench_t5.py --quick          # tiny sizes, a few steps: does it run (< 1 min)

Train step: the shared harness (bench/harness.py: each side in its own process pinned to
--threads cores, medians over --rounds, matmul peak, and the GEMM floor beside the ratio),
float32, no dropout (v1.1 pretraining), AdamW with global-norm clipping on both sides as
for every family; synthetic unpacked rows of --seq input and --predictions target tokens,
every target predicted; tokens/s counts inputs + targets. Pipeline: the seqio
span-corruption task on the builtin corpus with a SentencePiece model learnt first, raw
tokens/s on one core. Decoding: greedy, batch --decode_batch, --decode_len new tokens,
tokens/s generated. --parts picks step, pipeline, decode; every other flag is the harness's.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # pylint: disable=wrong-import-position

QUICK = ["--size=tiny", "--batch=2", "--seq=64", "--predictions=16", "--steps=2", "--rounds=1",
         "--warmup=1", "--fused_ops=on"]
QUICK_VOCAB = 1100


def _config(size):
  from configs import t5  # pylint: disable=import-outside-toplevel
  return t5.get_config(size)


def _configure(config, seq, targets):
  config.data.update(inputs_length=seq, targets_length=targets, pack=False)
  config.data.vocab.type = "auto"            # synthetic batches: no vocabulary file
  config.model.dropout_rate = 0.0


def _objective(config, vocab_size):
  from plm_jax.objectives.t5_pretrain import T5SpanCorruption  # pylint: disable=import-outside-toplevel
  return T5SpanCorruption(config, vocab_size=vocab_size)


def _hf_model(cfg, vocab_size, seq=None):
  del seq
  import transformers  # pylint: disable=import-outside-toplevel
  return transformers.T5ForConditionalGeneration(transformers.T5Config(
      vocab_size=vocab_size, d_model=cfg.hidden_size, d_kv=cfg.head_dim,
      d_ff=cfg.intermediate_size, num_layers=cfg.num_layers,
      num_decoder_layers=cfg.num_decoder_layers, num_heads=cfg.num_heads,
      dropout_rate=cfg.dropout_rate, feed_forward_proj=cfg.feed_forward_proj,
      tie_word_embeddings=cfg.tie_word_embeddings, decoder_start_token_id=0))


def _gemms(cfg, vocab, batch, seq, preds):
  """Encoder layers, decoder layers (self-attention, cross-attention, MLP), output layer."""
  targets = preds // batch
  h, inner, ff = cfg.hidden_size, cfg.num_heads * cfg.head_dim, cfg.intermediate_size
  mlp_in = 2 if cfg.feed_forward_proj.startswith("gated") else 1
  bh, d = (batch * cfg.num_heads,), cfg.head_dim
  te, td = batch * seq, batch * targets
  enc, dec = cfg.num_layers, cfg.num_decoder_layers
  return [((), te, h, inner, 3 * enc), ((), te, inner, h, enc),
          ((), te, h, ff, mlp_in * enc), ((), te, ff, h, enc),
          (bh, seq, d, seq, enc), (bh, seq, seq, d, enc),
          ((), td, h, inner, 4 * dec), ((), td, inner, h, 2 * dec),
          ((), te, h, inner, 2 * dec),                                  # cross-attention k, v
          (bh, targets, d, targets, dec), (bh, targets, targets, d, dec),
          (bh, targets, d, seq, dec), (bh, targets, seq, d, dec),
          ((), td, h, ff, mlp_in * dec), ((), td, ff, h, dec),
          ((), td, h, vocab, 1)]


def family(vocab_size):
  return harness.Family(
      name="t5", config=_config, objective=_objective, hf_model=_hf_model,
      sentence_label=None, vocab_size=vocab_size, seq2seq=True, configure=_configure,
      hf_inputs=lambda t: dict(input_ids=t["encoder_input_tokens"],
                               attention_mask=(t["encoder_input_tokens"] > 0).long(),
                               labels=t["labels"]),
      gemms=_gemms)


def _time(fn, steps):
  fn()                                     # compile / warm up
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def bench_pipeline(args):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from plm_jax.data import builtin, spm_train  # pylint: disable=import-outside-toplevel
  from plm_jax.data import t5_pretrain  # pylint: disable=import-outside-toplevel
  from plm_jax.data.config import CorpusConfig, VocabConfig  # pylint: disable=import-outside-toplevel
  from plm_jax.objectives.t5_pretrain import T5DataConfig, t5_vocabulary  # pylint: disable=import-outside-toplevel
  tf.config.threading.set_inter_op_parallelism_threads(1)
  tf.config.threading.set_intra_op_parallelism_threads(1)
  d = tempfile.mkdtemp()
  with open(os.path.join(d, "docs.txt"), "w") as f:
    f.write("\n\n".join(builtin.iter_documents(300 if args.quick else 1000, seed=0)))
  spm_train.train(os.path.join(d, "docs.txt"), os.path.join(d, "t5"), 1000, layout="t5",
                  max_sentences=3000 if args.quick else 2_000_000)
  vocab = t5_vocabulary(VocabConfig(path=os.path.join(d, "t5.model")), 100)
  data = T5DataConfig(inputs_length=512, targets_length=114, pack=True,
                      corpus=CorpusConfig(eval_every_nth=1000))
  ds = t5_pretrain.get_dataset(data, vocab, "train", batch_size=16, seed=0)
  it = iter(ds.as_numpy_iterator())
  next(it)
  n, start = 0, time.perf_counter()
  for _ in range(3 if args.quick else 20):
    b = next(it)
    n += int((b["encoder_input_tokens"] > 0).sum() + (b["decoder_target_tokens"] > 0).sum())
  rate = n / (time.perf_counter() - start)
  print(f"span corruption pipeline (one core, packed 512/114): {rate:,.0f} tokens/s", flush=True)


def _decode_config(args, vocab):
  from configs import t5 as t5_configs  # pylint: disable=import-outside-toplevel
  from plm_jax.models.t5 import T5Config  # pylint: disable=import-outside-toplevel
  return T5Config(vocab_size=vocab, **dict(t5_configs.SIZES[args.size], dropout_rate=0.0))


def bench_decode(args, cfg):
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  from plm_jax.models.t5 import T5ForConditionalGeneration  # pylint: disable=import-outside-toplevel
  from plm_jax.models.t5_decoding import greedy_decode  # pylint: disable=import-outside-toplevel
  b, n = (2, 8) if args.quick else (args.decode_batch, args.decode_len)
  ids = np.random.RandomState(1).randint(2, cfg.vocab_size, (b, 64)).astype(np.int32)
  model = T5ForConditionalGeneration(cfg)
  params = model.init(jax.random.key(0), ids[:1], decoder_input_ids=ids[:1, :2])["params"]
  fn = jax.jit(lambda p, i: greedy_decode(model, p, i, None, n))
  jax_s = _time(lambda: fn(params, ids).block_until_ready(), 3)
  torch.set_num_threads(args.threads)
  hf = _hf_model(cfg, cfg.vocab_size).eval()
  hf.generation_config.eos_token_id = None       # generate all n tokens on both sides
  t = torch.tensor(ids, dtype=torch.long)

  def torch_one():
    with torch.no_grad():
      hf.generate(input_ids=t, max_new_tokens=n, min_new_tokens=n, do_sample=False, num_beams=1)
  torch_s = _time(torch_one, 3)
  print(f"cached greedy decoding (batch {b}, 64 inputs, {n} new tokens): plm_jax "
        f"{b * n / jax_s:,.0f} tokens/s, HF generate {b * n / torch_s:,.0f} tokens/s: "
        f"{torch_s / jax_s:.2f}x", flush=True)


def main(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0], add_help=False)
  p.add_argument("--quick", action="store_true", help="tiny model, short runs")
  p.add_argument("--parts", default="step,pipeline,decode")
  p.add_argument("--decode_batch", type=int, default=8)
  p.add_argument("--decode_len", type=int, default=32)
  p.add_argument("--vocab", type=int, default=32128)
  args, rest = p.parse_known_args(argv)
  vocab = QUICK_VOCAB if args.quick else args.vocab
  worker = ["--quick"] if args.quick else [f"--vocab={args.vocab}"]
  if any(a.startswith("--worker") for a in rest):     # a harness worker process
    return harness.main(family(vocab), rest)
  if args.quick:
    rest = QUICK + rest
  if not any(a.startswith("--size") for a in rest):
    rest = ["--size=v1_1_small"] + rest
  if not any(a.startswith("--seq") for a in rest):
    rest = ["--seq=512"] + rest
  if not any(a.startswith("--predictions") for a in rest):
    rest = ["--predictions=114"] + rest
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  parts = args.parts.split(",")
  if "step" in parts:
    harness.main(family(vocab), rest, description=__doc__.split("\n")[0],
                 worker_args=worker)
  args.size = harness_flag(rest, "size")
  args.threads = int(harness_flag(rest, "threads", "2"))
  if "pipeline" in parts:
    bench_pipeline(args)
  if "decode" in parts:
    bench_decode(args, _decode_config(args, vocab))
  return 0


def harness_flag(argv, name, default=None):
  value = default
  for a in argv:
    if a.startswith(f"--{name}="):
      value = a.split("=", 1)[1]
  return value


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
