"""ELMo on the GLUE command (config.model.family=elmo, plm_jax/finetune/objective_elmo.py):
word splitting, the character ids of a real RTE pair in the batches, one-line errors, and a
matrix cell from the bilm-tf test model (the loss falls, the frozen biLM stays as it was,
result.json and the report)."""
import json
import os

import jax
import numpy as np
import pytest
import tensorflow as tf

from configs import glue as glue_config
from configs import matrix as matrix_config
from plm_jax.data import elmo_chars, paths
from plm_jax.finetune import elmo_features, matrix, objective_elmo
from plm_jax.train.config import validate_config

BILM_DIR = os.path.join(paths.data_dir(), "elmo", "bilm-tf-test-model")
GLUE_DIR = os.path.join(paths.data_dir(), "glue")
needs_bilm = pytest.mark.skipif(not os.path.isdir(BILM_DIR), reason=f"{BILM_DIR} absent")
needs_rte = pytest.mark.skipif(not os.path.isdir(os.path.join(GLUE_DIR, "RTE")),
                               reason=f"{GLUE_DIR}/RTE absent")


def _config(task="tiny_rte", data_dir=GLUE_DIR, hf_dir=BILM_DIR):
  c = glue_config.get_config(task)
  c.model.family = "elmo"
  c.init.hf_dir = hf_dir
  c.task.data_dir = data_dir
  return c


def _flat(tree):
  return {"/".join(str(getattr(k, "key", k)) for k in p): np.asarray(v)
          for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_split_words_is_the_pretraining_split():
  texts = ["Don't stop--the U.S. (and  its\tallies) aren't here, caf\u00e9\u00a0au lait.",
           "  one\ntwo  ", "$5.00 & 10% \"quoted\""]
  for text in texts:
    line = text.replace("\n", " ")         # tf_tokenize reads one sentence per line
    want = [w.decode("utf-8") for w in elmo_chars.tf_tokenize(tf.constant(line)).numpy()]
    assert [elmo_chars.BOS] + elmo_chars.split_words(text) + [elmo_chars.EOS] == want
  assert elmo_chars.split_words("Don't.") == ["Don", "'", "t", "."]
  assert elmo_chars.split_words("caf\u00e9\u00a0au") == ["caf\u00e9\u00a0au"]   # ASCII spaces only


def test_sentence_words_and_word_table():
  words = objective_elmo.sentence_words("a b, c d e", 5)
  assert words == ["<S>", "a", "b", ",", "</S>"]
  ids, table = objective_elmo.word_table([words, ["<S>", "b", "</S>"]], 50)
  assert [i.tolist() for i in ids] == [[1, 2, 3, 4, 5], [1, 3, 5]]
  assert table.shape == (6, 50) and not table[0].any()
  np.testing.assert_array_equal(table[3], elmo_chars.word_char_ids("b"))
  np.testing.assert_array_equal(table[1], elmo_chars.word_char_ids("<S>"))


@needs_bilm
@needs_rte
def test_rte_pair_batches_carry_its_character_ids():
  c = _config()
  c.task.update(max_seq_length=16, buckets=(8, 16))
  _, objective = validate_config(c)
  batches = list(objective.get_dataset("validation", 32, 0).as_numpy_iterator())
  rows = {int(i): (b, k) for b in batches for k, i in enumerate(b["idx"])}
  assert len(rows) == 277 and {b["chars_a"].shape[1] for b in batches} <= {8, 16}
  b, k = next(iter(objective.get_dataset("train", 8, 0).as_numpy_iterator())), 0
  assert b["chars_a"].shape[0] == 8 and b["chars_a"].max() <= 261
  # dev 0: "Dana Reeve, the widow of ..." / "Christopher Reeve had an accident."
  b, k = rows[0]
  assert b["chars_a"].shape[1:] == (16, 50)
  dana = [259, 69, 98, 111, 98, 260] + [261] * 44      # <w> D a n a </w> pad (ids + 1)
  np.testing.assert_array_equal(b["chars_a"][k, 1], dana)
  np.testing.assert_array_equal(b["chars_a"][k, 0, :4], [259, 257, 260, 261])    # <S>
  want_a = ["Dana", "Reeve", ",", "the", "widow", "of", "the", "actor", "Christopher",
            "Reeve", ",", "has", "died", "of"]                  # 16 words with <S> and </S>
  np.testing.assert_array_equal(b["chars_a"][k], elmo_chars.batch_to_char_ids([want_a])[0])
  want_b = ["Christopher", "Reeve", "had", "an", "accident", "."]
  n = len(want_b) + 2
  np.testing.assert_array_equal(b["chars_b"][k, :n], elmo_chars.batch_to_char_ids([want_b])[0])
  assert not b["chars_b"][k, n:].any()                         # padding words: all zeros
  assert b["label"][k] == 1                                    # not_entailment
  spec = objective.batch_spec(8)
  assert spec["chars_a"].shape == (8, 16, 50) and set(spec) == {"chars_a", "chars_b", "label",
                                                                 "idx"}


@needs_bilm
def test_bad_inputs_are_one_line_errors(tmp_path):
  def error(c):
    with pytest.raises(ValueError) as e:
      validate_config(c)
    assert "\n" not in str(e.value)
    return str(e.value)

  assert error(_config(hf_dir="")).startswith("config.init.hf_dir='': family elmo needs a "
                                               "pretrained biLM")
  hf = tmp_path / "hf_bert"
  hf.mkdir()
  (hf / "config.json").write_text("{}")
  assert error(_config(hf_dir=str(hf))) == (f"config.init.hf_dir: {hf}: neither a bilm-tf "
                                            "model (options.json + .hdf5) nor a plm_jax export "
                                            "(plm_config.json)")
  assert "no such directory" in error(_config(hf_dir=str(tmp_path / "nope")))
  bert = tmp_path / "bert_export"
  bert.mkdir()
  (bert / "plm_config.json").write_text(json.dumps(
      {"family": "bert", "config_class": "plm_jax.models.bert.BertConfig", "config": {}}))
  assert "a 'bert' export (BertConfig), not an ELMo biLM" in error(_config(hf_dir=str(bert)))
  c = _config()
  c.model.dtype = "bfloat16"
  assert error(c).startswith("config.model.dtype='bfloat16': not available for family elmo")
  c = _config()
  c.vocab.type, c.vocab.path = "wordpiece", "/x/vocab.txt"
  assert error(c).startswith("config.vocab.path='/x/vocab.txt': family elmo reads characters")
  c = _config()
  c.optimizer.layer_decay = 0.8
  assert "family elmo has no layer-wise learning rates" in error(c)
  c = _config()
  c.model.elmo.task_dim = 0
  assert error(c).startswith("config.model.elmo.task_dim=0: must be >= 1")
  from configs import squad as squad_config
  c = squad_config.get_config("tiny")
  c.model.family, c.init.hf_dir = "elmo", BILM_DIR
  assert "ELMo is fine-tuned feature-based, by objective 'glue' only" in error(c)


def _learnable_rte(directory):
  """16 RTE-layout pairs: entailment iff sentence2 repeats sentence1 (the pair features'
  |u - v| is then 0), so a few steps can fit them."""
  sents = ["The cat sat on the mat.", "Prices rose sharply in May.", "He left early.",
           "The river flooded the town.", "She won the race easily.", "Rain is expected.",
           "The bank closed at noon.", "They built a new bridge."]
  rows = [(s, s if i % 2 == 0 else sents[(j + 3) % 8], "entailment" if i % 2 == 0
           else "not_entailment") for j, s in enumerate(sents) for i in range(2)]
  os.makedirs(os.path.join(directory, "RTE"))
  for name in ("train.tsv", "dev.tsv"):
    with open(os.path.join(directory, "RTE", name), "w", encoding="utf-8") as f:
      f.write("index\tsentence1\tsentence2\tlabel\n")
      f.writelines(f"{i}\t{a}\t{b}\t{y}\n" for i, (a, b, y) in enumerate(rows))


def _size(tree):
  return sum(int(np.prod(np.shape(x))) for x in jax.tree_util.tree_leaves(tree))


@needs_bilm
def test_steps_lower_the_loss_and_leave_the_frozen_bilm_as_it_was(tmp_path):
  """The objective's loss and the trainer's optimizer with the objective's frozen params:
  eight full-batch steps on 16 learnable pairs lower the loss, the biLM's params stay bit
  for bit (and have no optimizer state), the task model and the scalar mix move."""
  from plm_jax.train import optimizers, trainer
  data = str(tmp_path / "glue")
  _learnable_rte(data)
  c = _config(data_dir=data)
  c.task.update(max_seq_length=16, buckets=(16,))
  c.model.elmo.dropout = 0.0
  c.optimizer.update(learning_rate=1e-2, warmup_ratio=0.0, decay="constant")
  run, objective = validate_config(c)
  setup = trainer.build_setup(c, devices=jax.devices()[:1])
  bilm = objective.initial_params()["encoder"]["bilm"]
  params = jax.tree.map(np.asarray, jax.jit(objective.init_params)(jax.random.PRNGKey(0)))
  trainable = _size(params) - _size(bilm)
  # The trainer's optimizer keeps Adam's two moments for the trainable params only.
  assert _size(setup.abstract_state.opt_state) == 2 * trainable + 1
  params = elmo_features.with_bilm(params, bilm)
  tx = optimizers.make_optimizer(run.optimizer, run.train.num_steps, None,
                                 objective.frozen_params(params))
  batch = next(iter(objective.get_dataset("train", 16, 0).as_numpy_iterator()))

  @jax.jit
  def step(p, o):
    (loss, _), g = jax.value_and_grad(objective.loss_fn, has_aux=True)(p, batch, None, True)
    updates, o = tx.update(g, o, p)
    return jax.tree.map(lambda a, u: a + u, p, updates), o, loss

  p, o, losses = params, tx.init(params), []
  for _ in range(8):
    p, o, loss = step(p, o)
    losses.append(float(loss))
  assert losses[-1] < losses[0] - 0.02, losses
  before, after = _flat(params), _flat(p)
  for k, v in before.items():
    if "/bilm/" in k:
      np.testing.assert_array_equal(after[k], v, err_msg=k)
  for k in ("encoder/mix/weights", "encoder/task_forward/kernel", "task_output/kernel"):
    assert np.abs(after[k] - before[k]).max() > 0, k


@pytest.mark.slow   # the whole pipeline twice (a run and its resume): about 60-90 s on 2 cores
@needs_bilm
def test_matrix_cell_trains_the_task_model_and_leaves_the_bilm_frozen(tmp_path):
  """A matrix entry {hf_dir: bilm-tf test model, family: elmo} on a learnable RTE file: the
  cell writes result.json and the report's row, the training loss falls, and the export's
  biLM params equal the bilm-tf weights bit for bit while the task model moved."""
  data = str(tmp_path / "glue")
  _learnable_rte(data)
  m = matrix_config.get_config("smoke")
  m.models = {"elmo_test": {"hf_dir": BILM_DIR, "family": "elmo",
                            "overrides": {"model": {"elmo": {"task_dim": 16, "task_layers": 1,
                                                             "mlp_dim": 16, "dropout": 0.0}}}}}
  m.tasks, m.seeds = ("rte",), (0,)
  m.base = {"train": {"num_epochs": 0.0, "num_steps": 24, "batch_size": 8, "log_every": 4,
                      "eval_every": 12, "checkpoint_every": 12, "params_export": True},
            "task": {"max_seq_length": 16, "buckets": (16,), "predict_test": False,
                     "data_dir": data},
            "optimizer": {"learning_rate": 1e-2, "warmup_ratio": 0.0}}
  workdir = str(tmp_path / "matrix")
  out = matrix.run_matrix(m, workdir)
  cell = matrix.cell_dir(workdir, "elmo_test", "rte", 0)
  result = json.load(open(os.path.join(cell, matrix.RESULT)))
  assert result["steps"] == 24 and result["dev"]["examples"] == 16
  assert 0.0 <= result["dev"]["score"] <= 1.0
  assert out["summary"]["elmo_test"]["rte"]["score"]["values"] == [result["dev"]["score"]]
  assert "| elmo_test | " in open(os.path.join(workdir, "report.md")).read()
  from plm_jax.train.reporting import read_history
  train = [r["loss"] for r in read_history(cell) if r["split"] == "train"]
  assert len(train) >= 3 and np.mean(train[-2:]) < train[0] - 0.05, train   # seen 0.695 -> 0.61
  assert result["dev"]["accuracy"] >= 0.75                                  # seen 0.875
  from plm_jax.convert import export
  family, cfg, params = export.load_export(os.path.join(cell, "export"))
  assert family == "elmo" and cfg.task_dim == 16 and cfg.bilm.projection_dim == 16
  bilm = _flat(elmo_features.load_bilm(BILM_DIR).params)
  trained = _flat(params["encoder"]["bilm"])
  assert set(trained) == set(bilm)
  for k, v in bilm.items():
    np.testing.assert_array_equal(trained[k], v, err_msg=k)
  assert np.abs(_flat(params)["encoder/mix/weights"]).max() > 0      # fresh zeros, moved
  # The export's biLM is readable as a starting point again.
  again = elmo_features.load_bilm(os.path.join(cell, "export"))
  assert again.config == elmo_features.read_bilm_config(BILM_DIR)
  # A longer rerun of the cell resumes from its last checkpoint (step 24).
  from plm_jax.train import trainer
  config = matrix.cell_config(m, "elmo_test", "rte", 0)
  config.train.num_steps = 28
  resumed = trainer.train_and_evaluate(config, cell)
  assert resumed["step"] == 28.0 and resumed["best/score"] >= result["dev"]["score"]
