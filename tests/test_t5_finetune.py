"""T5 text-to-text GLUE: the T5 paper's input / target texts (checked against TensorFlow's
rounding on the real STS-B scores), decoded text mapped back to labels with unparseable
outputs counted as wrong, the objective's metrics from decoded tokens, and (slow) a tiny
run of the fine-tuning command on RTE."""
import json
import os

import numpy as np
import pytest

from configs import glue as glue_config, glue_t5
from plm_jax import configlib
from plm_jax.data import paths, spm_train
from plm_jax.finetune import glue, metrics, text_to_text
from plm_jax.objectives.base import get_objective
import main_runner

GLUE_DIR = os.path.join(paths.data_dir(), "glue")
needs_glue = pytest.mark.skipif(not os.path.isdir(GLUE_DIR),
                                reason=f"{GLUE_DIR} is absent (shared data bundle not mounted)")
T = glue.TASKS


def test_inputs_and_targets_as_the_t5_paper():
  ex = {"text_a": "A man is playing.", "text_b": "A man plays.", "label": 1}
  assert text_to_text.inputs_text(T["rte"], ex) == (
      "rte sentence1: A man is playing. sentence2: A man plays.")
  # MNLI (and its mismatched dev set, and AX) list hypothesis before premise (sorted keys).
  for name in ("mnli", "mnli_mm", "ax"):
    assert text_to_text.inputs_text(T[name], ex) == (
        "mnli hypothesis: A man plays. premise: A man is playing.")
  assert text_to_text.inputs_text(T["qnli"], ex) == (
      "qnli question: A man is playing. sentence: A man plays.")
  assert text_to_text.inputs_text(T["sst2"], {"text_a": "great", "text_b": ""}) == (
      "sst2 sentence: great")
  assert [text_to_text.target_text(T["sst2"], i) for i in (0, 1, -1)] == [
      "negative", "positive", ""]
  assert text_to_text.target_text(T["wnli"], 1) == "entailment"
  assert text_to_text.target_text(T["mnli"], 2) == "contradiction"
  # Nearest 0.2, ties to even as tf.round: 3.7 -> 18.5 -> 18 -> '3.6'; 3.9 -> 19.5 -> '4.0'.
  assert [text_to_text.target_text(T["stsb"], s) for s in (3.7, 3.9, 0.0, 5.0, 2.33)] == [
      "3.6", "4.0", "0.0", "5.0", "2.4"]
  assert text_to_text.target_text(T["stsb"], float("nan")) == ""


@needs_glue
def test_stsb_targets_equal_tensorflows_rounding_on_real_scores():
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  rows = glue.read_split(T["stsb"], "validation", data_dir=GLUE_DIR)
  scores = [r["label"] for r in rows]
  ref = tf.strings.as_string(tf.round(tf.constant(scores, tf.float32) * 5) / 5,
                             precision=1).numpy()
  ours = [text_to_text.target_text(T["stsb"], s) for s in scores]   # Python floats, as read
  assert ours == [s.decode() for s in ref]
  assert len(set(ours)) == 26                      # every step of 0.2 from 0.0 to 5.0


def test_unparseable_outputs_count_as_wrong():
  texts = ["positive", " negative ", "Positive", "", "positive positive"]
  labels = np.asarray([1, 0, 1, 0, 0])
  values, valid = text_to_text.prediction_values(T["sst2"], texts, labels)
  assert valid.tolist() == [True, True, False, False, False]
  assert values.tolist() == [1, 0, 0, 1, 1]        # invalid: the class after the gold one
  assert metrics.accuracy(values, labels) == pytest.approx(2 / 5)
  values, valid = text_to_text.prediction_values(T["mnli"], ["neutral", "x"], np.asarray([1, 2]))
  assert values.tolist() == [1, 0] and valid.tolist() == [True, False]
  values, valid = text_to_text.prediction_values(T["stsb"], ["3.6", "high", "nan"],
                                                 np.asarray([3.6, 1.0, 2.0]))
  np.testing.assert_allclose(values, [3.6, -1.0, -1.0], rtol=1e-6)
  assert valid.tolist() == [True, False, False]


@pytest.fixture(scope="module")
def t5_spm(tmp_path_factory):
  """A SentencePiece model with T5's layout, learnt from a few lines (label words included)."""
  d = tmp_path_factory.mktemp("spm_glue")
  words = "entailment not_entailment positive negative the a man is sentence1 sentence2 rte"
  (d / "text.txt").write_text("\n".join([words] * 20 + [
      f"line {i} of text with numbers {i * 7} and words" for i in range(200)]))
  spm_train.train(str(d / "text.txt"), str(d / "t5"), 150, layout="t5",
                  doc_separator="line")
  return str(d / "t5.model")


def _config(task, spm_path, **task_overrides):
  c = glue_t5.get_config(task)
  c.vocab.path = spm_path
  c.task.update(data_dir=GLUE_DIR, **task_overrides)
  return c


def test_metrics_from_decoded_tokens(t5_spm):
  objective = get_objective(_config("rte", t5_spm))
  vocab = objective.vocabulary()
  eos = vocab.eos_id
  assert objective.model_config().vocab_size == 150 + 100 and objective.model_config().eos_token_id == eos

  def row(text, after_eos=()):
    ids = list(vocab.encode(text)) + [eos] + list(after_eos)
    return ids + [0] * (24 - len(ids))
  # entailment (right), not_entailment (wrong), junk after EOS ignored (right), no label word.
  tokens = np.asarray([row("entailment"), row("not_entailment"),
                       row("not_entailment", vocab.encode("man")), row("the man")], np.int32)
  labels = np.asarray([0, 0, 1, 1])
  out = objective.compute_metrics({"tokens": tokens, "label": labels, "idx": np.arange(4)})
  assert out["accuracy"] == pytest.approx(0.5) and out["score"] == out["accuracy"]
  assert out["invalid"] == pytest.approx(0.25)


def test_starts_from_a_hugging_face_t5_directory(t5_spm, tmp_path):
  """init.hf_dir: a transformers T5 directory with its spiece.model (vocabulary from there,
  more embedding rows than ids as T5's 32,128 for 32,100) gives the model and its params."""
  pytest.importorskip("transformers")
  import shutil  # pylint: disable=import-outside-toplevel
  import flax.linen as nn  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  from t5_hf import hf_t5, save_hf  # pylint: disable=import-outside-toplevel
  kw = dict(vocab_size=256, d_model=16, d_kv=4, d_ff=24, num_layers=1, num_heads=2,
            feed_forward_proj="gated-gelu", tie_word_embeddings=False)
  tensors = save_hf(hf_t5(kw), tmp_path)
  shutil.copy(t5_spm, tmp_path / "spiece.model")
  c = _config("rte", "")
  c.init.hf_dir = str(tmp_path)
  objective = get_objective(c)
  assert objective.vocabulary().vocab_size == 250
  assert objective.model_config().vocab_size == 256
  params = objective.initial_params()
  fresh = nn.meta.unbox(jax.eval_shape(objective.init_params, jax.random.key(0)))
  assert jax.tree.structure(params) == jax.tree.structure(fresh)
  assert all(a.shape == b.shape for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(fresh)))
  np.testing.assert_array_equal(params["shared"]["embedding"], tensors["shared.weight"])


def test_families_and_objectives_must_match(t5_spm):
  c = glue_config.get_config("rte")
  c.model.family = "t5"
  with pytest.raises(configlib.ConfigError, match=r"config\.model\.family='t5'.*glue_t2t"):
    get_objective(c)
  c = _config("rte", t5_spm)
  c.model.family = "bert"
  with pytest.raises(configlib.ConfigError, match=r"config\.model\.family='bert'"):
    get_objective(c)
  c = _config("stsb", t5_spm, targets_length=2)
  with pytest.raises(configlib.ConfigError, match=r"config\.task\.targets_length=2"):
    get_objective(c).examples("validation")


@needs_glue
@pytest.mark.slow   # 1-4 min: compiles a train step and the greedy decoder in a subprocess
def test_tiny_rte_run_from_the_command(tmp_path, t5_spm):
  workdir = str(tmp_path / "rte")
  result = main_runner.run(
      workdir, "--config=" + os.path.join(main_runner.REPO, "configs", "glue_t5.py") + ":rte",
      f"--config.vocab.path={t5_spm}", "--config.task.max_seq_length=64",
      "--config.task.buckets=(64,)", "--config.task.targets_length=16",
      "--config.train.num_epochs=0",
      "--config.train.num_steps=20", "--config.train.batch_size=8",
      "--config.train.eval_every=0", "--config.train.eval_steps=2",
      "--config.task.predict_test=False", "--config.optimizer.learning_rate=0.01",
      "--config.model.hidden_dropout=0", tiny=False, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  train = [r["loss"] for r in rows if r.get("split") == "train" and "loss" in r]
  final = [r for r in rows if r.get("split") == "eval"][-1]
  assert train[-1] < 0.5 * train[0], train
  assert final["examples"] == 16 and 0.0 <= final["accuracy"] <= 1.0
  assert final["invalid"] < 0.5              # it learnt to answer with label words


def _t5_for_text(t5_spm):
  """(model, params, vocab): a random tiny v1.1 T5 over the test SentencePiece vocabulary,
  its weights scaled up so that greedy outputs vary."""
  import jax  # pylint: disable=import-outside-toplevel
  from plm_jax.models.t5 import T5Config, T5ForConditionalGeneration  # pylint: disable=import-outside-toplevel
  vocab = get_objective(_config("rte", t5_spm)).vocabulary()
  cfg = T5Config(vocab_size=vocab.vocab_size, hidden_size=32, head_dim=8, intermediate_size=48,
                 num_layers=1, num_decoder_layers=1, num_heads=4, dropout_rate=0.0,
                 feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                 eos_token_id=vocab.eos_id)
  model = T5ForConditionalGeneration(cfg)
  ids = np.ones((1, 4), np.int32)
  params = model.init(jax.random.PRNGKey(3), ids, ids, ids)["params"]
  return model, jax.tree.map(lambda x: 4.0 * x, params), vocab


def _padded(vocab, text):
  """One text as generate_text lays it out alone: ids, EOS, padding to a multiple of 16."""
  ids = list(vocab.encode(text)) + [vocab.eos_id]
  n = -(-len(ids) // 16) * 16
  return (np.asarray([ids + [0] * (n - len(ids))], np.int32),
          np.asarray([[1] * len(ids) + [0] * (n - len(ids))], np.int32))


TEXTS = ["rte sentence1: the man is here", "a",
         "line 7 of text with numbers 49 and words and more words to pass sixteen tokens"]


def test_generate_text_is_text_in_text_out(t5_spm):
  """t5_decoding.generate_text: texts -> ids + EOS, right-padded to a multiple of 16 with
  the mask -> generate -> texts cut at their first EOS (one compilation); an overlong input
  names itself."""
  from plm_jax.models import t5_decoding  # pylint: disable=import-outside-toplevel
  model, params, vocab = _t5_for_text(t5_spm)
  batched = t5_decoding.generate_text(model, params, vocab, TEXTS, max_length=8)
  rows = [list(vocab.encode(t)) + [vocab.eos_id] for t in TEXTS]
  n = -(-max(len(r) for r in rows) // 16) * 16
  assert n >= 32 and min(len(r) for r in rows) == 2     # "a" + EOS: mostly padding
  ids = np.asarray([r + [0] * (n - len(r)) for r in rows], np.int32)
  tokens = np.asarray(t5_decoding.generate(model, params, ids, (ids > 0).astype(np.int32), 8))
  assert batched == t5_decoding.decode_texts(vocab, tokens, vocab.eos_id)
  assert any(batched)                      # not all empty: the check above compares text
  with pytest.raises(ValueError, match=r"texts\[1\] is \d+ tokens .* max_input_length=4"):
    t5_decoding.generate_text(model, params, vocab, ["a", TEXTS[0]], max_input_length=4)
  assert t5_decoding.generate_text(model, params, vocab, []) == []


@pytest.mark.slow   # three more decoder compilations (one per shape, and beam search)
def test_generate_text_alone_equals_batched_and_beam_search_is_the_best_beam(t5_spm):
  from plm_jax.models import t5_decoding  # pylint: disable=import-outside-toplevel
  model, params, vocab = _t5_for_text(t5_spm)
  batched = t5_decoding.generate_text(model, params, vocab, TEXTS, max_length=8)
  alone = [t5_decoding.generate_text(model, params, vocab, [t], max_length=8)[0] for t in TEXTS]
  assert batched == alone
  beams = t5_decoding.generate_text(model, params, vocab, TEXTS[:1], max_length=8, num_beams=3,
                                    length_penalty=0.6)
  best = t5_decoding.generate(model, params, *_padded(vocab, TEXTS[0]), 8, 3, np.float32(0.6))
  assert beams == t5_decoding.decode_texts(vocab, np.asarray(best), vocab.eos_id)


def test_exported_sentencepiece_model_loads_again_with_its_sentinels(t5_spm, tmp_path):
  """A T5 export writes spiece.model as trained, without the 100 sentinels that the
  vocabulary appends (seqio's sp_model has them): fine-tuning from the export, or
  transformers' T5Tokenizer, adds them again, and a model with them twice does not load."""
  from plm_jax.convert import export
  from plm_jax.objectives.t5_pretrain import t5_vocabulary
  from plm_jax.data.config import VocabConfig
  vocab = t5_vocabulary(VocabConfig(type="sentencepiece", path=t5_spm), 100, "config.data.vocab")
  assert export.save_tokenizer(str(tmp_path), vocab) == ("spiece.model",)
  with open(t5_spm, "rb") as a, open(tmp_path / "spiece.model", "rb") as b:
    assert a.read() == b.read()
  again = t5_vocabulary(VocabConfig(type="sentencepiece", path=str(tmp_path / "spiece.model")),
                        100, "config.data.vocab")
  assert again.vocab_size == vocab.vocab_size == 150 + 100
  assert again.encode("<extra_id_0> the man") == vocab.encode("<extra_id_0> the man")
