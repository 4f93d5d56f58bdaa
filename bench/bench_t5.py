"""Benchmark: T5 train step (plm_jax vs Hugging Face PyTorch), span-corruption pipeline,
cached greedy decoding (plm_jax vs transformers `generate`).

  python bench/bench_t5.py --quick          # tiny sizes, a minute or two on 2 CPU cores
  python bench/bench_t5.py                  # T5 v1.1 small, 8 x 512 inputs / 114 targets

Each part prints one line. Train step: float32, dropout off (v1.1 pretraining), Adafactor
on both sides (optax.adafactor with T5's settings; transformers' Adafactor with
scale_parameter, fixed lr 0.01), tokens/s = (inputs + targets) * batch / median step time,
both sides pinned to the same --threads. Pipeline: the seqio span-corruption task on the
builtin corpus with a SentencePiece model learnt first, raw tokens/s on one core.
Decoding: greedy, batch --decode_batch, --decode_len new tokens, tokens/s generated.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def _time(fn, steps):
  fn()                                     # compile / warm up
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def _model_config(args, vocab):
  from configs import t5 as t5_configs  # pylint: disable=import-outside-toplevel
  from plm_jax.models.t5 import T5Config  # pylint: disable=import-outside-toplevel
  size = t5_configs.SIZES["tiny" if args.quick else args.size]
  return T5Config(vocab_size=vocab, **dict(size, dropout_rate=0.0))


def _hf_model(cfg):
  import transformers  # pylint: disable=import-outside-toplevel
  return transformers.T5ForConditionalGeneration(transformers.T5Config(
      vocab_size=cfg.vocab_size, d_model=cfg.hidden_size, d_kv=cfg.head_dim,
      d_ff=cfg.intermediate_size, num_layers=cfg.num_layers,
      num_decoder_layers=cfg.num_decoder_layers, num_heads=cfg.num_heads, dropout_rate=0.0,
      feed_forward_proj=cfg.feed_forward_proj, tie_word_embeddings=cfg.tie_word_embeddings))


def bench_step(args, cfg, batch, inputs, targets):
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  from plm_jax.models.t5 import T5ForConditionalGeneration, shift_right  # pylint: disable=import-outside-toplevel
  from plm_jax.objectives import losses  # pylint: disable=import-outside-toplevel
  rng = np.random.RandomState(0)
  enc = rng.randint(2, cfg.vocab_size, (batch, inputs)).astype(np.int32)
  tgt = rng.randint(2, cfg.vocab_size, (batch, targets)).astype(np.int32)
  model = T5ForConditionalGeneration(cfg)
  params = model.init(jax.random.key(0), enc[:1], decoder_input_ids=tgt[:1])["params"]
  tx = optax.adafactor(0.01, decay_rate=0.8, clipping_threshold=1.0,
                       multiply_by_parameter_scale=True, momentum=None)
  state = tx.init(params)

  def loss(p, e, t):
    logits = model.apply({"params": p}, e, attention_mask=(e > 0).astype(jnp.int32),
                         decoder_input_ids=shift_right(t))["logits"]
    return jnp.mean(losses.softmax_cross_entropy(logits, t))

  @jax.jit
  def step(p, s, e, t):
    value, grads = jax.value_and_grad(loss)(p, e, t)
    updates, s = tx.update(grads, s, p)
    return optax.apply_updates(p, updates), s, value
  box = [params, state]

  def jax_one():
    box[0], box[1], v = step(box[0], box[1], enc, tgt)
    v.block_until_ready()
  jax_s = _time(jax_one, args.steps)

  import transformers  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(args.threads)
  hf = _hf_model(cfg).train()
  opt = transformers.optimization.Adafactor(hf.parameters(), lr=0.01, relative_step=False,
                                            scale_parameter=True, warmup_init=False)
  e, t = torch.tensor(enc, dtype=torch.long), torch.tensor(tgt, dtype=torch.long)

  def torch_one():
    opt.zero_grad()
    hf(input_ids=e, attention_mask=(e > 0).long(), labels=t).loss.backward()
    opt.step()
  torch_s = _time(torch_one, args.steps)
  tokens = batch * (inputs + targets)
  print(f"train step ({'tiny' if args.quick else args.size}, {batch} x {inputs}/{targets}): "
        f"plm_jax {tokens / jax_s:,.0f} tokens/s ({jax_s * 1e3:.0f} ms), PyTorch "
        f"{tokens / torch_s:,.0f} tokens/s ({torch_s * 1e3:.0f} ms): {torch_s / jax_s:.2f}x",
        flush=True)


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
    f.write("\n\n".join(builtin.iter_documents(1000, seed=0)))
  spm_train.train(os.path.join(d, "docs.txt"), os.path.join(d, "t5"), 1000, layout="t5")
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


def bench_decode(args, cfg):
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  from plm_jax.models.t5 import T5ForConditionalGeneration  # pylint: disable=import-outside-toplevel
  from plm_jax.models.t5_decoding import greedy_decode  # pylint: disable=import-outside-toplevel
  b, n = args.decode_batch, args.decode_len
  ids = np.random.RandomState(1).randint(2, cfg.vocab_size, (b, 64)).astype(np.int32)
  model = T5ForConditionalGeneration(cfg)
  params = model.init(jax.random.key(0), ids[:1], decoder_input_ids=ids[:1, :2])["params"]
  fn = jax.jit(lambda p, i: greedy_decode(model, p, i, None, n))
  jax_s = _time(lambda: fn(params, ids).block_until_ready(), 3)
  hf = _hf_model(cfg).eval()
  hf.generation_config.eos_token_id = None       # generate all n tokens on both sides
  t = torch.tensor(ids, dtype=torch.long)

  def torch_one():
    with torch.no_grad():
      hf.generate(input_ids=t, max_new_tokens=n, min_new_tokens=n, do_sample=False, num_beams=1)
  torch_s = _time(torch_one, 3)
  print(f"cached greedy decoding (batch {b}, 64 inputs, {n} new tokens): plm_jax "
        f"{b * n / jax_s:,.0f} tokens/s, HF generate {b * n / torch_s:,.0f} tokens/s: "
        f"{torch_s / jax_s:.2f}x", flush=True)


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--quick", action="store_true", help="tiny model, short runs")
  p.add_argument("--size", default="v1_1_small")
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--steps", type=int, default=3)
  p.add_argument("--threads", type=int, default=2)
  p.add_argument("--decode_batch", type=int, default=8)
  p.add_argument("--decode_len", type=int, default=32)
  p.add_argument("--parts", default="step,pipeline,decode")
  args = p.parse_args()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  cfg = _model_config(args, 32128 if not args.quick else 1100)
  inputs, targets = (64, 16) if args.quick else (512, 114)
  parts = args.parts.split(",")
  if "step" in parts:
    bench_step(args, cfg, 4 if args.quick else args.batch, inputs, targets)
  if "pipeline" in parts:
    bench_pipeline(args)
  if "decode" in parts:
    bench_decode(args, cfg)
  return 0


if __name__ == "__main__":
  sys.exit(main())
