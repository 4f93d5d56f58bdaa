"""ERNIE joins fine-tuning: the `ernie` backbone against transformers'
ErnieForSequenceClassification (task ids on), and ChnSentiCorp as a task."""
import json
import os

import numpy as np
import pytest

from plm_jax.data import paths
from plm_jax.finetune import backbones, glue, metrics
from plm_jax.finetune.heads import FinetuneModel
import hf_random


def test_ernie_sequence_classification_parity(tmp_path):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  from plm_jax.convert import registry  # pylint: disable=import-outside-toplevel
  torch.manual_seed(0)
  cfg = transformers.ErnieConfig(vocab_size=91, hidden_size=36, num_hidden_layers=2,
                                 num_attention_heads=3, intermediate_size=52,
                                 max_position_embeddings=40, num_labels=2, use_task_id=True,
                                 hidden_act="relu")
  hf = transformers.ErnieForSequenceClassification(cfg)
  hf_random.perturb_(hf, everything=True)
  hf.eval()
  hf.save_pretrained(tmp_path)
  conv = registry.get_converter("ernie")
  with open(os.path.join(tmp_path, "config.json")) as f:
    model_cfg = conv.config_from_hf(json.load(f))
  _, backbone, _ = conv.import_hf(str(tmp_path), with_heads=False)   # classifier.* dropped
  state = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
  head = {"kernel": state["classifier.weight"].T, "bias": state["classifier.bias"]}
  model = FinetuneModel("ernie", model_cfg, num_labels=2)
  rng = np.random.default_rng(1)
  ids = rng.integers(3, 91, size=(3, 15))
  mask = (np.arange(15)[None] < np.asarray([15, 9, 4])[:, None]).astype(np.int64)
  ids = np.where(mask == 1, ids, 0)
  types = (np.arange(15)[None] >= 3) * mask
  with torch.no_grad():
    want = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
              token_type_ids=torch.tensor(types)).logits.numpy()
  got = model.apply({"params": {"bert": backbone, "classifier": head}}, ids.astype(np.int32),
                    mask.astype(np.int32), types.astype(np.int32), deterministic=True)["logits"]
  err = float(np.abs(np.asarray(got) - want).max())
  assert np.shape(got) == (3, 2) and err < 1e-5, err
  bb = backbones.get_backbone("ernie")
  assert bb.module_name == "bert" and bb.format_inputs([5], None, 8, {"cls": 1, "sep": 2}
                                                      )["input_ids"].tolist() == [1, 5, 2]


def test_chnsenticorp_task_reads_the_shared_files():
  d = os.path.join(paths.data_dir(), "chinese")
  if not os.path.isdir(os.path.join(d, "chnsenticorp")):
    pytest.skip(f"{d}/chnsenticorp not present")
  task = glue.get_task("chnsenticorp")
  counts = {}
  for split in ("train", "validation", "test"):
    rows = glue.read_split(task, split, data_dir=d)
    counts[split] = (len(rows), sum(r["label"] for r in rows))
  # 9,600 / 1,200 / 1,200 with 4,798 / 590 / 602 positive (the data README); the test row
  # whose label is written '    0' reads as 0.
  assert counts == {"train": (9600, 4798), "validation": (1200, 590), "test": (1200, 602)}
  assert metrics.task_metrics("chnsenticorp", [1, 0, 1], [1, 1, 1])["accuracy"] == pytest.approx(
      2 / 3)


def test_labelled_test_split_gets_metrics_beside_the_submission(tmp_path):
  """ChnSentiCorp's test file has labels (GLUE's have none): finalize scores it too."""
  d = os.path.join(paths.data_dir(), "chinese")
  if not os.path.isdir(os.path.join(d, "chnsenticorp")):
    pytest.skip(f"{d}/chnsenticorp not present")
  from configs import glue as glue_config  # pylint: disable=import-outside-toplevel
  from plm_jax.objectives.base import get_objective  # pylint: disable=import-outside-toplevel
  c = glue_config.get_config("chnsenticorp")
  c.vocab.type, c.model.size = "builtin", "tiny"
  objective = get_objective(c)
  rows = glue.read_split(objective.task, "test", data_dir=d)
  labels = np.asarray([r["label"] for r in rows])
  wrong = np.arange(len(rows)) < 300            # the first 300 predictions flipped

  def predict(split):
    assert split == "test"
    return {"idx": np.asarray([r["idx"] for r in rows]), "label": labels,
            "prediction": np.where(wrong, 1 - labels, labels)}

  out = objective.finalize(str(tmp_path), predict)
  got = json.load(open(out["test metrics"]))
  assert got == {"accuracy": pytest.approx(900 / 1200), "score": got["accuracy"]}
  lines = open(out["submission"]).read().splitlines()
  assert len(lines) == 1201 and lines[1] == f"0\t{1 - labels[0]}"
