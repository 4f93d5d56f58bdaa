"""Training-FLOP counts of every pretraining family (plm_jax.objectives.flops and
flops_families) against XLA's cost analysis, and the trainer's report of them.

Each family's objective, at a small but matrix-product-dominated size (H 128, 2-6 layer
applications, layers unrolled), counts the forward pass of one example with
forward_flops_per_example(lookups=False); XLA counts the compiled jit of the objective's
own loss (network + loss, exactly what the train step differentiates). They differ by the
elementwise conventions only: the analytic count charges fixed costs (GELU 8, softmax 5,
LayerNorm 5, dropout 4 even when it is off, as here) where XLA counts each HLO op once
per element (and the selects of masks, which the convention leaves out); at these sizes
that is < 3% (measured: 0.2-1.1% for the Transformers, 2.6% for ELMo), so TOLERANCE 5%
fails on any missing or extra matrix product of a layer's size (a missed cross-attention,
an ALBERT layer counted once per group, XLNet's query stream on the targets only, ...).
lookups=False: XLA sees an embedding lookup as a gather, 0 FLOPs; the paper's convention
(one-hot product, 2 E V per token) is what the trainer reports.
"""
import functools
import importlib

import flax.linen as nn
import jax
import numpy as np
import pytest

import main_runner
from plm_jax.data import elmo_chars
from plm_jax.objectives import flops, flops_families
from plm_jax.objectives.albert_pretrain import AlbertMlmSop
from plm_jax.objectives.base import _REGISTRY, registered
from plm_jax.objectives.bert_pretrain import BertMlmNsp
from plm_jax.objectives.elmo_pretrain import ElmoBiLMObjective
from plm_jax.objectives.ernie_pretrain import ErnieMlmNsp
from plm_jax.objectives.gpt_lm import GptCausalLm
from plm_jax.objectives.roberta_pretrain import RobertaMlm
from plm_jax.objectives.t5_pretrain import T5SpanCorruption
from plm_jax.objectives.xlnet_pretrain import XlnetPermutationLm
from plm_jax.train import reporting

TOLERANCE = 0.05
VOCAB = 1000
ENCODER = dict(hidden_size=128, num_layers=2, num_heads=2, intermediate_size=512,
               max_position_embeddings=130)


def _words(n):
  return elmo_chars.WordVocab(["<S>", "</S>", "<UNK>"] + [f"w{i}" for i in range(n - 3)])


def _xla_forward_per_example(objective, batch_size, carry=False, train=False,
                             unroll_scan=False):
  """XLA's FLOPs of the jitted loss (forward only) on abstract params and batch / rows.

  carry: the loss with the objective's carried state (XLNet's memory); train: the training
  branch (deterministic=False, with an rng; ELMo's sampled softmax); unroll_scan: lax.scan
  fully unrolled while compiling. XLA's cost analysis counts a while loop's body once, not
  times its trip count, so an LSTM run by lax.scan over T steps would show one step of its
  recurrence; unrolled, XLA sees all T steps (the same arithmetic).
  """
  params = nn.meta.unbox(jax.eval_shape(objective.init_params, jax.random.PRNGKey(0)))
  batch = objective.batch_spec(batch_size)
  if carry:
    state = jax.eval_shape(lambda: objective.init_carry(batch_size))
    fn = lambda p, b, c: objective.loss_fn_with_carry(p, b, None, True, c)[0]
    args = (params, batch, state)
  elif train:
    fn = lambda p, b: objective.loss_fn(p, b, jax.random.PRNGKey(1), False)[0]
    args = (params, batch)
  else:
    fn = lambda p, b: objective.loss_fn(p, b, None, True)[0]
    args = (params, batch)
  scan = jax.lax.scan
  if unroll_scan:
    jax.lax.scan = functools.partial(scan, unroll=True)
  try:
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
  finally:
    jax.lax.scan = scan
  if isinstance(cost, (list, tuple)):    # a list of one dict per program in some versions
    cost = cost[0]
  return float(cost["flops"]) / batch_size


def _bert(cls, **model):
  c = cls.default_config()
  c.model.update(dict(ENCODER, **model))
  c.data.update(seq_length=128)
  c.data.vocab.update(type="builtin", path="")
  c.mlm.max_predictions = 20
  return cls(c, vocab_size=VOCAB)


def _gpt(architecture):
  c = GptCausalLm.default_config()
  c.model.update(ENCODER, architecture=architecture, max_position_embeddings=128,
                 norm_position="pre" if architecture == "gpt2" else "post")
  c.data.update(seq_length=128)
  return GptCausalLm(c, vocab_size=VOCAB)


def _xlnet():
  c = XlnetPermutationLm.default_config()
  c.model.update(hidden_size=128, num_layers=2, num_heads=2, head_dim=64,
                 intermediate_size=512, mem_len=48)
  c.data.update(seq_length=64, reuse_length=32)
  return XlnetPermutationLm(c, vocab_size=VOCAB)


def _t5(feed_forward_proj, tie):
  c = T5SpanCorruption.default_config()
  c.model.update(hidden_size=128, head_dim=32, num_heads=4, intermediate_size=512,
                 num_layers=2, num_decoder_layers=2, feed_forward_proj=feed_forward_proj,
                 tie_word_embeddings=tie)
  c.data.update(inputs_length=128, targets_length=32)
  return T5SpanCorruption(c, vocab_size=VOCAB)


def _elmo(softmax):
  c = importlib.import_module("configs.elmo").get_config("tiny")
  c.model.update(char_embedding_dim=16, filters=((1, 32), (2, 32), (3, 64), (4, 128)),
                 n_highway=1, lstm_dim=256, projection_dim=128, dropout=0.0)
  c.lm.update(softmax=softmax, num_samples=256)
  c.data.update(seq_length=8)
  return ElmoBiLMObjective(c, vocab=_words(VOCAB))


# name -> (objective factory, batch rows, _xla_forward_per_example options)
CASES = {
    "bert": (lambda: _bert(BertMlmNsp), 2, {}),
    "ernie": (lambda: _bert(ErnieMlmNsp, max_position_embeddings=128), 2, {}),
    "roberta": (lambda: _bert(RobertaMlm), 2, {}),
    # E != H (the E -> H mapping), 3 layers x 2 inner applications of the shared layers.
    "albert": (lambda: _bert(AlbertMlmSop, embedding_size=64, num_layers=3, inner_group_num=2,
                             max_position_embeddings=128), 2, {}),
    "gpt2": (lambda: _gpt("gpt2"), 2, {}),
    "openai-gpt": (lambda: _gpt("openai-gpt"), 2, {}),
    # One row: the relative-position projection is shared by the rows of a batch (counted
    # per row); with memory (carry) as in training.
    "xlnet": (_xlnet, 1, dict(carry=True)),
    "t5_gated_untied": (lambda: _t5("gated-gelu", False), 2, {}),
    "t5_relu_tied": (lambda: _t5("relu", True), 2, {}),
    "elmo_full": (lambda: _elmo("full"), 2, dict(unroll_scan=True)),
    # The sampled softmax is the training branch (dropout 0: no random bits to count).
    "elmo_sampled": (lambda: _elmo("sampled"), 2, dict(unroll_scan=True, train=True)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_analytic_forward_flops_match_xla(name):
  make, rows, options = CASES[name]
  objective = make()
  analytic = objective.forward_flops_per_example(lookups=False)
  xla = _xla_forward_per_example(objective, rows, **options)
  assert abs(analytic / xla - 1) < TOLERANCE, (name, analytic, xla, analytic / xla)
  # Training is forward + backward, the backward counted as one forward (the paper's 2x).
  assert objective.train_flops_per_example() == pytest.approx(
      flops.TRAIN_FACTOR * objective.forward_flops_per_example())


def test_albert_counts_every_application_of_a_shared_layer():
  one = _bert(AlbertMlmSop, embedding_size=64, num_layers=3, inner_group_num=1,
              max_position_embeddings=128)
  two = _bert(AlbertMlmSop, embedding_size=64, num_layers=3, inner_group_num=2,
              max_position_embeddings=128)
  layer = flops.layer_forward_flops(128, 128, 512, 2)
  # Same parameters per group, three more layer applications.
  assert two.forward_flops_per_example() - one.forward_flops_per_example() == \
      pytest.approx(3 * layer)


def test_lookups_are_one_hot_products_in_the_reported_count():
  """What the trainer reports counts each lookup as 2 x width x rows per token."""
  gpt = _gpt("gpt2")
  s = gpt.data.seq_length
  assert gpt.forward_flops_per_example() - gpt.forward_flops_per_example(lookups=False) == \
      2 * 128 * VOCAB * s + 2 * 128 * s * s          # tokens, positions (s rows, as the script)
  elmo = _elmo("full")
  cfg = elmo.model_config()
  chars = 2 * cfg.char_embedding_dim * cfg.n_characters * cfg.max_characters_per_token
  assert elmo.forward_flops_per_example() - elmo.forward_flops_per_example(lookups=False) == \
      8 * chars


def test_xlnet_last_layer_content_stream_is_not_counted_when_unused():
  """The permutation LM reads the query stream only: one content stream fewer than layers."""
  obj = _xlnet()
  cfg = obj.model_config()
  args = (cfg, obj.data.seq_length, obj.data.num_predict, 48)
  full = flops_families.xlnet_forward_flops(*args, content_output=True)
  lm = flops_families.xlnet_forward_flops(*args)
  one_layer = flops_families.xlnet_forward_flops(
      cfg.replace(num_layers=1), *args[1:], content_output=True)
  no_layers = flops_families.xlnet_forward_flops(cfg.replace(num_layers=0), *args[1:])
  # The difference is one layer's content stream: less than a layer, more than its FFN.
  assert 2 * 2 * 128 * 512 * 64 < full - lm < one_layer - no_layers


def _tiny_objective(name):
  """The registered objective from its configs/<family>.py:tiny (sizes only: a fixed vocab)."""
  module = {"bert_mlm_nsp": "bert", "roberta_mlm": "roberta", "albert_mlm_sop": "albert",
            "gpt_clm": "gpt", "xlnet_plm": "xlnet", "t5_span_corruption": "t5",
            "elmo_bilm": "elmo", "ernie_mlm_nsp": "ernie", "electra_rtd": "electra"}[name]
  c = importlib.import_module(f"configs.{module}").get_config("tiny")
  assert c.objective == name
  if name == "elmo_bilm":
    return ElmoBiLMObjective(c, vocab=_words(c.data.vocab_size))
  c.data.vocab.update(type="builtin", path="")
  return _REGISTRY[name](c, vocab_size=8000)


PRETRAINING = ("albert_mlm_sop", "bert_mlm_nsp", "electra_rtd", "elmo_bilm", "ernie_mlm_nsp",
               "gpt_clm", "roberta_mlm", "t5_span_corruption", "xlnet_plm")


@pytest.mark.parametrize("name", PRETRAINING)
def test_every_pretraining_objective_reports_its_training_flops(name, tmp_path):
  assert name in registered()
  objective = _tiny_objective(name)
  per_example = objective.train_flops_per_example()
  assert per_example is not None and per_example > 0
  # The reporter records the running total the trainer gives it (batch x per example).
  per_step = per_example * objective.config.train.batch_size
  r = reporting.Reporter(str(tmp_path), num_steps=10, tokens_per_step=1, tensorboard=False,
                         flops_per_step=per_step)
  r.start(0)
  r.train(3, {"loss": 1.0}, 1e-3)
  r.close()
  (record,) = reporting.read_history(str(tmp_path))
  assert record["train_flops"] == pytest.approx(3 * per_step)


def test_tiny_config_counts_follow_the_family_formulas():
  """The objectives pass their shapes through: each tiny count equals its formula's."""
  gpt = _tiny_objective("gpt_clm")
  assert gpt.forward_flops_per_example() == flops_families.gpt_forward_flops(
      gpt.model_config(), gpt.data.seq_length)
  t5 = _tiny_objective("t5_span_corruption")
  assert t5.forward_flops_per_example() == flops_families.t5_forward_flops(
      t5.model_config(), t5.data.inputs_length, t5.data.targets_length)
  xl = _tiny_objective("xlnet_plm")
  assert xl.forward_flops_per_example() == flops_families.xlnet_forward_flops(
      xl.model_config(), xl.data.seq_length, xl.data.num_predict, xl.sections["model"].mem_len)
  elmo = _tiny_objective("elmo_bilm")      # tiny: the full softmax
  cfg, t = elmo.model_config(), elmo.data.seq_length
  assert elmo.forward_flops_per_example() == flops_families.elmo_forward_flops(cfg, t)
  elmo.config.lm.update(softmax="sampled", num_samples=64)
  sampled = ElmoBiLMObjective(elmo.config, vocab=elmo.vocab())
  assert sampled.forward_flops_per_example() == flops_families.elmo_forward_flops(cfg, t, 64)
  assert sampled.forward_flops_per_example() < elmo.forward_flops_per_example()


@pytest.mark.slow
def test_trainer_prints_and_records_the_count(tmp_path):
  """A 2-step GPT run (configs/gpt.py:tiny, builtin corpus) prints its FLOPs per step and
  records train_flops = step x that in metrics.jsonl."""
  overrides = ["--config=configs/gpt.py:tiny", "--config.train.num_steps=2",
               "--config.train.log_every=1", "--config.train.eval_every=-1",
               "--config.train.batch_size=4", "--config.train.params_export=False"]
  result = main_runner.run(str(tmp_path), *overrides, tiny=False)
  assert result.returncode == 0, result.stderr[-3000:]
  c = importlib.import_module("configs.gpt").get_config("tiny")
  c.train.batch_size = 4
  expected = GptCausalLm(c).train_flops_per_example() * 4
  line = next(l for l in result.stdout.splitlines() if l.startswith("training FLOPs: "))
  assert float(line.split()[2]) == pytest.approx(expected, rel=1e-3), line
  train = [h for h in reporting.read_history(str(tmp_path)) if h["split"] == "train"]
  assert [h["step"] for h in train] == [1, 2]
  np.testing.assert_allclose([h["train_flops"] for h in train], [expected, 2 * expected],
                             rtol=1e-6)
