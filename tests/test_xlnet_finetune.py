"""XLNet joins fine-tuning: A <sep> B <sep> <cls> with segment ids 0 / 1 / 2, left padding,
the last-token sequence summary of XLNetForSequenceClassification (parity with transformers),
layer depths, and a tiny GLUE run on real WNLI rows."""
import json
import os

import jax
import numpy as np
import pytest

from configs import glue as glue_config
from plm_jax.data import paths
from plm_jax.finetune import backbones, batching
from plm_jax.finetune.heads import FinetuneModel
import hf_random

GLUE_DIR = os.path.join(paths.data_dir(), "glue")
SPECIAL = {"cls": 3, "sep": 4}


def test_layout_pair_single_truncation_and_depths():
  bb = backbones.get_backbone("xlnet")
  pair = bb.format_inputs([10, 11], [20, 21, 22], 16, SPECIAL)
  assert pair["input_ids"].tolist() == [10, 11, 4, 20, 21, 22, 4, 3]
  assert pair["token_type_ids"].tolist() == [0, 0, 0, 1, 1, 1, 1, 2]
  one = bb.format_inputs([10, 11, 12], None, 16, SPECIAL)
  assert one["input_ids"].tolist() == [10, 11, 12, 4, 3]
  assert one["token_type_ids"].tolist() == [0, 0, 0, 0, 2]
  cut = bb.format_inputs(list(range(100, 110)), list(range(200, 205)), 10, SPECIAL)
  assert cut["input_ids"].tolist() == [100, 101, 102, 4, 200, 201, 202, 203, 4, 3]
  assert bb.pad_left and bb.module_name == "transformer"
  assert bb.layer_depth("transformer/word_embedding", 4) == 0
  assert bb.layer_depth("transformer/mask_emb", 4) == 0
  assert bb.layer_depth("transformer/layer_2/rel_attn/q", 4) == 3
  assert bb.layer_depth("sequence_summary/summary/kernel", 4) == 5
  assert bb.layer_depth("logits_proj/kernel", 4) == 5


def _left_padded(bb, pairs, length):
  """Model inputs of (ids_a, ids_b) pairs, stacked as the GLUE batches are (left padding)."""
  examples = []
  for a, b in pairs:
    ex = bb.format_inputs(a, b, length, SPECIAL)
    ex["attention_mask"] = np.ones(len(ex["input_ids"]), np.int32)
    examples.append(ex)
  return batching._stack(examples, length, ("input_ids", "token_type_ids", "attention_mask"),
                         pad_left=True)


@pytest.mark.parametrize("num_labels", [3, 1])
def test_sequence_classification_parity_with_hugging_face(tmp_path, num_labels):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  from plm_jax.convert import registry  # pylint: disable=import-outside-toplevel
  torch.manual_seed(0)
  cfg = transformers.XLNetConfig(vocab_size=91, d_model=32, n_layer=2, n_head=2, d_inner=48,
                                 num_labels=num_labels)
  hf = transformers.XLNetForSequenceClassification(cfg)
  hf_random.perturb_(hf)   # non-trivial LayerNorm and bias values
  hf.eval()
  hf.save_pretrained(tmp_path)
  conv = registry.get_converter("xlnet")
  model_cfg, backbone, _ = conv.import_hf(str(tmp_path), with_heads=False)  # head dropped
  state = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
  head = {"sequence_summary": {"summary": {"kernel": state["sequence_summary.summary.weight"].T,
                                           "bias": state["sequence_summary.summary.bias"]}},
          "logits_proj": {"kernel": state["logits_proj.weight"].T,
                          "bias": state["logits_proj.bias"]}}
  bb = backbones.get_backbone("xlnet")
  rng = np.random.default_rng(1)
  pairs = [(rng.integers(5, 91, n).tolist(), None if m is None else rng.integers(5, 91, m).tolist())
           for n, m in ((9, 6), (3, None), (5, 2), (12, 4))]
  x = _left_padded(bb, pairs, 20)
  assert (x["attention_mask"][:, 0] == 0).all() and (x["input_ids"][:, -1] == 3).all()
  with torch.no_grad():
    want = hf(input_ids=torch.tensor(x["input_ids"], dtype=torch.long),
              attention_mask=torch.tensor(x["attention_mask"], dtype=torch.long),
              token_type_ids=torch.tensor(x["token_type_ids"], dtype=torch.long)).logits.numpy()
  model = FinetuneModel("xlnet", bb.apply_overrides(model_cfg, dict(
      hidden_dropout=0.1, attention_dropout=0.1, dtype="float32", scan_layers=False,
      remat_policy="none", fused_ops=True)), num_labels=num_labels)
  got = model.apply({"params": {"transformer": backbone, **head}}, x["input_ids"],
                    x["attention_mask"], x["token_type_ids"], deterministic=True)["logits"]
  err = float(np.abs(np.asarray(got) - want).max())
  assert np.shape(got) == (4, num_labels) and err < 1e-4, err
  # The summary reads the last position and ignores the left padding: a padding token's
  # change leaves the logits exactly as they were, the first real token's changes them.
  apply = lambda ids: np.asarray(model.apply(
      {"params": {"transformer": backbone, **head}}, ids, x["attention_mask"],
      x["token_type_ids"], deterministic=True)["logits"])
  first = int(np.argmax(x["attention_mask"][0]))
  assert first > 0
  padded, real = x["input_ids"].copy(), x["input_ids"].copy()
  padded[0, 0] = 50
  real[0, first] = 50 if real[0, first] != 50 else 51
  np.testing.assert_array_equal(apply(padded), np.asarray(got))
  assert not np.array_equal(apply(real)[0], np.asarray(got)[0])


def test_overrides_refuse_scan_and_drop_memory_and_bi_data():
  from plm_jax.models.xlnet import XLNetConfig  # pylint: disable=import-outside-toplevel
  bb = backbones.get_backbone("xlnet")
  o = dict(hidden_dropout=0.2, attention_dropout=0.1, dtype="float32", scan_layers=False,
           remat_policy="none", fused_ops=True)
  cfg = bb.apply_overrides(XLNetConfig(mem_len=384, reuse_len=256, bi_data=True), o)
  assert (cfg.dropout_rate, cfg.mem_len, cfg.reuse_len, cfg.bi_data) == (0.2, 0, 0, False)
  with pytest.raises(ValueError, match="scan_layers"):
    bb.apply_overrides(XLNetConfig(), dict(o, scan_layers=True))


@pytest.mark.slow   # ~55 s end to end on real WNLI rows; the head's parity and padding tests stay
@pytest.mark.skipif(not os.path.isdir(GLUE_DIR), reason=f"{GLUE_DIR} is absent")
def test_tiny_xlnet_fine_tunes_on_wnli_left_padded(tmp_path):
  """A fresh tiny XLNet on the real WNLI rows: the batches end with <cls> (segment 2) and pad
  on the left; a few steps run and evaluate every dev example with finite metrics."""
  from plm_jax.data import vocab as vocab_lib  # pylint: disable=import-outside-toplevel
  from plm_jax.train import config as train_config, trainer  # pylint: disable=import-outside-toplevel
  c = glue_config.get_config("wnli")
  c.task.update(data_dir=GLUE_DIR, max_seq_length=64, buckets=(32, 64), predict_test=False)
  c.model.update(family="xlnet", size="tiny")
  c.train.update(batch_size=8, num_epochs=0.0, num_steps=4, eval_every=4, log_every=2,
                 checkpoint_every=4)
  c.optimizer.learning_rate = 1e-3
  _, objective = train_config.validate_config(c, num_devices=1)
  cls, sep = vocab_lib.special_ids(objective.vocabulary(), ("cls", "sep"))
  batch = next(iter(objective.get_dataset("train", 8, seed=0).as_numpy_iterator()))
  mask, ids, types = batch["attention_mask"], batch["input_ids"], batch["token_type_ids"]
  lengths = mask.sum(1)
  assert (lengths < mask.shape[1]).any()                      # some rows are padded ...
  for row, n in zip(mask, lengths):                            # ... on the left
    assert row.tolist() == [0] * (len(row) - n) + [1] * n
  assert (ids[:, -1] == cls).all() and (types[:, -1] == 2).all() and (ids[:, -2] == sep).all()
  for i, n in enumerate(lengths):                              # A <sep> B <sep> <cls>
    real_ids, real_types = ids[i, -n:], types[i, -n:]
    seps = np.flatnonzero(real_ids == sep)
    assert len(seps) == 2 and seps[1] == n - 2
    assert (real_types[:seps[0] + 1] == 0).all() and (real_types[seps[0] + 1:-1] == 1).all()
  final = trainer.train_and_evaluate(c, str(tmp_path / "wnli"), devices=jax.devices()[:1])
  assert final["step"] == 4.0 and final["eval/examples"] == 71
  assert np.isfinite(final["eval/loss"]) and 0.0 <= final["eval/accuracy"] <= 1.0
  assert np.isfinite(json.loads(json.dumps(final))["eval/score"])
