"""GPT-1 / GPT-2 fine-tuning backbones: the input transformation, parity of the classifier on
the extract token with Hugging Face's *ForSequenceClassification, a GLUE run (slow)."""
import os

import numpy as np
import pytest

from plm_jax.finetune import backbones
from plm_jax.finetune.heads import FinetuneModel
import hf_random


def test_input_transformation_start_delim_extract():
  bb = backbones.get_backbone("gpt2")
  special = {"eos": 7}
  one = bb.format_inputs([10, 11, 12], None, 16, special)
  assert one["input_ids"].tolist() == [7, 10, 11, 12, 7]
  pair = bb.format_inputs([10, 11], [20, 21, 22], 16, special)
  assert pair["input_ids"].tolist() == [7, 10, 11, 7, 20, 21, 22, 7]
  assert pair["token_type_ids"].tolist() == [0] * 8
  cut = bb.format_inputs(list(range(100, 110)), list(range(200, 205)), 10, special)
  assert cut["input_ids"].tolist() == [7, 100, 101, 102, 7, 200, 201, 202, 203, 7]
  assert bb.layer_depth("transformer/wpe/embedding", 4) == 0
  assert bb.layer_depth("transformer/h/layers_2/mlp/wi/kernel", 4) == 3
  assert bb.layer_depth("transformer/ln_f/scale", 4) == 5
  assert bb.layer_depth("classifier/kernel", 4) == 5


@pytest.mark.parametrize("family,num_labels", [("gpt2", 3), ("openai-gpt", 2)])
def test_sequence_classification_parity_with_hugging_face(tmp_path, family, num_labels):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  from plm_jax.convert import registry
  torch.manual_seed(0)
  kw = dict(vocab_size=93, n_positions=40, n_embd=36, n_layer=3, n_head=3,
            num_labels=num_labels, pad_token_id=0, attn_implementation="eager")
  if family == "gpt2":
    hf = transformers.GPT2ForSequenceClassification(transformers.GPT2Config(**kw))
  else:
    hf = transformers.OpenAIGPTForSequenceClassification(transformers.OpenAIGPTConfig(**kw))
  hf_random.perturb_(hf, everything=True)
  hf.eval()
  hf.save_pretrained(tmp_path)
  conv = registry.get_converter(family)
  cfg, backbone, _ = conv.import_hf(str(tmp_path), with_heads=False)   # drops score.*
  score = hf.score.weight.detach().numpy()
  params = {"transformer": backbone,
            "classifier": {"kernel": score.T, "bias": np.zeros(num_labels, np.float32)}}
  model = FinetuneModel(family, cfg, num_labels=num_labels)
  rng = np.random.default_rng(1)
  lengths = [17, 12, 5, 9]
  mask = (np.arange(17)[None] < np.asarray(lengths)[:, None]).astype(np.int64)
  ids = np.where(mask == 1, rng.integers(1, 93, size=(4, 17)), 0)
  with torch.no_grad():
    want = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()
  got = model.apply({"params": params}, ids.astype(np.int32), mask.astype(np.int32),
                    np.zeros_like(ids, np.int32), deterministic=True)["logits"]
  assert got.shape == (4, num_labels)
  err = float(np.abs(np.asarray(got) - want).max())
  assert err < 1e-4, f"{family} classification logits differ from HF by {err:.2e}"


@pytest.mark.slow
def test_fresh_gpt2_fine_tunes_on_mrpc(tmp_path):
  """A fresh tiny GPT-2 backbone with a learnt BPE runs the GLUE recipe end to end on a
  similarity task: both orders, the auxiliary LM loss (slow: ~1-2 min on 2 cores)."""
  import jax
  from configs import glue as glue_config
  from plm_jax.data import bpe_train, paths
  from plm_jax.train import trainer
  data = paths.data_dir()
  wiki = f"{data}/pretrain/wiki/enwiki/AA/wiki_00.txt"
  if not os.path.isdir(os.path.join(data, "glue")) or not os.path.isfile(wiki):
    pytest.skip("GLUE or the Wikipedia corpus is absent")
  pytest.importorskip("tokenizers")
  bpe_train.train(wiki, str(tmp_path / "bpe"), 1000, reader="wikiextractor", max_documents=50)
  c = glue_config.get_config("mrpc")
  c.task.update(data_dir=os.path.join(data, "glue"), max_seq_length=64, buckets=(32, 64),
                predict_test=False)
  c.model.update(family="gpt2", size="tiny")
  c.vocab.update(type="bpe", path=str(tmp_path / "bpe" / "vocab.json"))
  c.train.update(batch_size=8, num_epochs=0.0, num_steps=3, eval_every=3, log_every=3)
  final = trainer.train_and_evaluate(c, str(tmp_path / "run"), devices=jax.devices()[:1])
  assert final["eval/examples"] == 408 and 0.0 <= final["eval/accuracy"] <= 1.0
  assert final["eval/lm_loss"] > 0 and final["eval/task_loss"] > 0


# ---- GPT-1's auxiliary LM loss and both orders for similarity tasks ----------------------

def _glue_objective(task, family="gpt2", **task_kw):
  from configs import glue as glue_config
  from plm_jax.train import config as train_config
  c = glue_config.get_config(task)
  c.task.update(data_dir="", max_seq_length=16, buckets=(16,), **task_kw)
  c.model.update(family=family, size="tiny", hidden_dropout=0.0, attention_dropout=0.0)
  c.train.update(batch_size=3, num_epochs=0.0, num_steps=1)
  objective = train_config.validate_config(c, num_devices=1)[1]
  if family != "bert":   # a smaller model than size tiny, and no vocabulary to read
    from plm_jax.models import gpt
    cls = gpt.GPT2Config if family == "gpt2" else gpt.OpenAIGPTConfig
    objective._model_config = cls(  # pylint: disable=protected-access
        vocab_size=211, max_position_embeddings=16, hidden_size=32, num_layers=1, num_heads=2,
        intermediate_size=64, embedding_dropout_rate=0.0, hidden_dropout_rate=0.0,
        attention_dropout_rate=0.0)
  return objective


def _pair_batch(objective, rng):
  """Three pairs of different lengths, right-padded to 12, both orders (start A delim B
  extract with the end-of-text id 3 as GPT-1's three special tokens)."""
  rows = []
  for n_a, n_b in ((4, 5), (2, 3), (6, 1)):
    a = rng.integers(10, 60, n_a).tolist()
    b = rng.integers(10, 60, n_b).tolist()
    fwd = objective.backbone.format_inputs(a, b, 16, {"eos": 3})["input_ids"]
    rows.append((fwd, objective.backbone.format_swapped(a, b, 16, {"eos": 3})["input_ids"]))
  pad = lambda x: np.pad(x, (0, 12 - len(x)))   # noqa: E731
  batch = {"input_ids": np.stack([pad(f) for f, _ in rows]),
           "attention_mask": np.stack([pad(np.ones(len(f), np.int32)) for f, _ in rows]),
           "swapped_input_ids": np.stack([pad(s) for _, s in rows]),
           "swapped_attention_mask": np.stack([pad(np.ones(len(s), np.int32)) for _, s in rows])}
  batch["token_type_ids"] = np.zeros_like(batch["input_ids"])
  labels = rng.integers(0, 2, 3) if objective.task.labels else rng.uniform(0, 5, 3)
  batch["label"] = labels.astype(np.int32 if objective.task.labels else np.float32)
  return {k: v.astype(np.int32) if v.dtype == np.int64 else v for k, v in batch.items()}


def _independent_losses(objective, params, batch):
  """Per-example task loss and LM loss from the pretraining model (GPTLMHeadModel) and the
  plain backbone, each order run on its own, the losses in numpy (float64)."""
  import jax
  from plm_jax.models import gpt
  cfg = objective.model_config()
  orders = [("input_ids", "attention_mask")]
  if objective.both_orders:
    orders.append(("swapped_input_ids", "swapped_attention_mask"))

  @jax.jit
  def run(trunk_params):
    out = []
    for ids_key, mask_key in orders:
      ids, mask = batch[ids_key], batch[mask_key]
      state = gpt.GPTSequenceBackbone(cfg).apply({"params": trunk_params}, ids, mask)
      logits = gpt.GPTLMHeadModel(cfg).apply({"params": {"transformer": trunk_params}}, ids,
                                             mask)["logits"]
      out.append((state["last_token_state"], logits))
    return out
  summary, lm_losses = 0.0, []
  for (ids_key, mask_key), (state, logits) in zip(orders, run(params["transformer"])):
    ids, mask = batch[ids_key], batch[mask_key]
    summary = summary + np.asarray(state, np.float64)
    logits = np.asarray(logits, np.float64)
    top = logits.max(-1, keepdims=True)
    logp = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp[:, :-1], ids[:, 1:, None], -1)[..., 0]
    m = mask[:, 1:]
    lm_losses.append((nll * m).sum(-1) / m.sum(-1))
  head = jax.tree_util.tree_map(np.asarray, params["classifier"])
  out = summary @ head["kernel"] + head["bias"]                       # [B, labels]
  if objective.task.labels is None:
    task = (out[:, 0] - batch["label"]) ** 2
  else:
    z = out - out.max(-1, keepdims=True)
    task = np.log(np.exp(z).sum(-1)) - z[np.arange(len(z)), batch["label"]]
  return task, np.mean(lm_losses, axis=0)


@pytest.mark.parametrize("task", ["rte", "stsb"])
def test_aux_lm_loss_is_task_loss_plus_half_lm_loss(task):
  """loss = task loss + 0.5 x the causal LM loss over the transformed input; STS-B (a
  similarity task) reads both orders, summed before the head, and averages their LM losses.
  RTE also checks that the aux term's gradient reaches the tied embedding: rows of tokens no
  input uses get gradient only through the LM head (zero with aux_lm_weight=0)."""
  import flax
  import jax
  objective = _glue_objective(task)
  assert objective.aux_lm_weight == 0.5
  assert objective.both_orders == (task == "stsb")
  params = flax.linen.unbox(jax.jit(objective.init_params)(jax.random.key(0)))
  batch = _pair_batch(objective, np.random.default_rng(0))
  if not objective.both_orders:
    batch = {k: v for k, v in batch.items() if not k.startswith("swapped")}
  task_loss, lm_loss = _independent_losses(objective, params, batch)
  off = _glue_objective(task, aux_lm_weight=0.0) if task == "rte" else None
  unseen = np.setdiff1d(np.arange(100, 200), batch["input_ids"])
  for o, want in ((objective, task_loss + 0.5 * lm_loss), (off, task_loss)):
    if o is None:
      continue
    fn = lambda p, o=o: o.loss_fn(p, batch, None, True)   # noqa: E731
    if off is None:
      (loss, metrics), grads = jax.jit(fn)(params), None
    else:
      (loss, metrics), grads = jax.jit(jax.value_and_grad(fn, has_aux=True))(params)
    want = float(np.mean(want))
    assert abs(float(loss) - want) < 1e-5 * max(1.0, abs(want)), (o.aux_lm_weight, float(loss), want)
    if o.aux_lm_weight:
      assert abs(float(metrics["lm_loss"][0]) / 3 - lm_loss.mean()) < 1e-5
      assert abs(float(metrics["task_loss"][0]) / 3 - task_loss.mean()) < 1e-5
    else:
      assert "lm_loss" not in metrics
    if grads is not None:
      rows = np.abs(np.asarray(grads["transformer"]["wte"]["embedding"])[unseen]).sum()
      assert (rows > 0) == (o.aux_lm_weight > 0), (o.aux_lm_weight, rows)


def test_aux_lm_weight_checks_and_swapped_format():
  from plm_jax.configlib import ConfigError
  with pytest.raises(ConfigError, match=r"config.task.aux_lm_weight=0.5: the bert backbone has "
                                         "no causal LM"):
    _glue_objective("rte", family="bert", aux_lm_weight=0.5)
  with pytest.raises(ValueError, match=r"aux_lm_weight=-0.5: must be -1"):
    _glue_objective("rte", aux_lm_weight=-0.5)
  assert _glue_objective("mrpc", family="bert").aux_lm_weight == 0.0
  assert not _glue_objective("mrpc", family="bert").both_orders
  qqp = _glue_objective("qqp", family="openai-gpt")
  assert qqp.both_orders and "swapped_input_ids" in qqp.batch_spec(2)
  bb = backbones.get_backbone("openai-gpt")
  fwd = bb.format_inputs([10, 11, 12], [20, 21, 22, 23], 8, {"eos": 7})["input_ids"]
  swapped = bb.format_swapped([10, 11, 12], [20, 21, 22, 23], 8, {"eos": 7})["input_ids"]
  assert fwd.tolist() == [7, 10, 11, 7, 20, 21, 22, 7]
  assert swapped.tolist() == [7, 20, 21, 22, 7, 10, 11, 7]
