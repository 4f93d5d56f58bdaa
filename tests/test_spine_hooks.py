"""The objective hooks fine-tuning and the next families need: initial params from an imported
Hugging Face checkpoint, evaluation over every example of an eval set that ends in a partial
batch, state carried between steps (resumed bit-exactly), and one vocabulary per run."""
import dataclasses
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow as tf

import train_fakes
from plm_jax.configlib import param
from plm_jax.layers.mlp import dense
from plm_jax.models.bert import BertConfig, BertModel
from plm_jax.objectives import base
from plm_jax.train import evaluation, trainer

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

HF = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
          intermediate_size=32, max_position_embeddings=16)
N_EVAL, LENGTH, CLASSES = 21, 12, 3


class _Classifier(nn.Module):
  config: BertConfig

  @nn.compact
  def __call__(self, input_ids, attention_mask):
    out = BertModel(self.config, name="bert")(input_ids, attention_mask)
    return dense(CLASSES, ("embed", None), 0.02, jnp.float32, "classifier")(out["pooler_output"])


@dataclasses.dataclass(frozen=True)
class _InitSection:
  hf_dir: str = ""
  num_examples: int = param(N_EVAL, gt=0)


@base.register("test_bert_classifier")
class BertClassifier(base.Objective):
  """A fine-tuning objective: pretrained backbone from HF, fresh head, host-side accuracy."""
  family = "bert"
  SECTIONS = {"init": _InitSection}

  def model_config(self):
    return BertConfig(**{"vocab_size": HF["vocab_size"], "hidden_size": HF["hidden_size"],
                         "num_layers": HF["num_hidden_layers"],
                         "num_heads": HF["num_attention_heads"],
                         "intermediate_size": HF["intermediate_size"],
                         "max_position_embeddings": HF["max_position_embeddings"]})

  def make_model(self):
    return _Classifier(self.model_config())

  def init_params(self, rng):
    ids = jnp.zeros((1, LENGTH), jnp.int32)
    return self.make_model().init(rng, ids, ids)["params"]

  def initial_params(self):
    return {"bert": base.load_pretrained_params(self.sections["init"].hf_dir)}

  def batch_spec(self, batch_size):
    i32 = jnp.int32
    return {"input_ids": jax.ShapeDtypeStruct((batch_size, LENGTH), i32),
            "attention_mask": jax.ShapeDtypeStruct((batch_size, LENGTH), i32),
            "label": jax.ShapeDtypeStruct((batch_size,), i32),
            "index": jax.ShapeDtypeStruct((batch_size,), i32)}

  def get_dataset(self, split, batch_size, seed, shard_index=0, num_shards=1, num_epochs=None):
    rs = np.random.RandomState(0 if split == "train" else 1)
    n = self.sections["init"].num_examples
    lengths = rs.randint(3, LENGTH + 1, size=n)
    mask = (np.arange(LENGTH)[None] < lengths[:, None]).astype(np.int32)
    ds = tf.data.Dataset.from_tensor_slices({
        "input_ids": (rs.randint(1, HF["vocab_size"], size=(n, LENGTH)) * mask).astype(np.int32),
        "attention_mask": mask, "label": rs.randint(0, CLASSES, size=n).astype(np.int32),
        "index": np.arange(n, dtype=np.int32)})
    ds = ds.shard(num_shards, shard_index).repeat(num_epochs)
    return ds.batch(batch_size, drop_remainder=split == "train")

  def loss_fn(self, params, batch, rng, deterministic, normalizers=None):
    logits = self.make_model().apply({"params": params}, batch["input_ids"],
                                     batch["attention_mask"])
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), batch["label"][:, None], 1)[:, 0]
    w = base.example_weights(batch)
    return jnp.sum(nll * w) / jnp.maximum(jnp.sum(w), 1.0), {"loss": (jnp.sum(nll * w), jnp.sum(w))}

  def predict_fn(self, params, batch):
    logits = self.make_model().apply({"params": params}, batch["input_ids"],
                                     batch["attention_mask"])
    return {"logits": logits, "label": batch["label"], "index": batch["index"]}

  def compute_metrics(self, predictions):
    self.last_predictions = predictions
    correct = np.argmax(predictions["logits"], -1) == predictions["label"]
    return {"accuracy": float(correct.mean()), "scored": float(len(correct))}


def _classifier_config(hf_dir, **train):
  c = BertClassifier.default_config()
  c.init.hf_dir = str(hf_dir)
  c.train.update(dict(batch_size=8, num_steps=2, log_every=1, eval_every=-1,
                      checkpoint_every=0))
  c.train.update(train)
  return c


def test_initial_params_from_hf_and_every_eval_example_counted_once(tmp_path):
  torch.manual_seed(0)
  hf = transformers.BertModel(transformers.BertConfig(**HF)).eval()
  hf.save_pretrained(tmp_path / "hf")
  c = _classifier_config(tmp_path / "hf")
  setup = trainer.build_setup(c, jax.devices()[:2])
  state = trainer.initial_state(setup, seed=0)
  fresh = setup.init_fn(jax.random.PRNGKey(0))
  # The backbone is the checkpoint's, exactly; the classifier head is the fresh init.
  ref = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
  np.testing.assert_array_equal(
      np.asarray(state.params["bert"]["embeddings"]["word_embeddings"]["embedding"]),
      ref["embeddings.word_embeddings.weight"])
  np.testing.assert_array_equal(
      np.asarray(state.params["bert"]["encoder"]["layers_1"]["mlp"]["wi"]["kernel"]),
      ref["encoder.layer.1.intermediate.dense.weight"].T)
  np.testing.assert_array_equal(np.asarray(state.params["classifier"]["kernel"]),
                                np.asarray(fresh.params["classifier"]["kernel"]))
  # Eval: 21 examples in batches of 8 -> the last batch has 5 real rows and 3 of padding.
  evaluator = evaluation.Evaluator(setup, 8, setup.objective.batch_spec(8))
  metrics = evaluator.evaluate(state.params)
  assert metrics["examples"] == N_EVAL and metrics["scored"] == N_EVAL
  preds = setup.objective.last_predictions
  assert sorted(preds["index"].tolist()) == list(range(N_EVAL))
  # The padded batch does not disturb the real rows: same logits as an unpadded forward pass.
  data = next(setup.objective.get_dataset("validation", N_EVAL, 0, num_epochs=1)
              .as_numpy_iterator())
  direct = setup.objective.make_model().apply({"params": state.params}, data["input_ids"],
                                              data["attention_mask"])
  order = np.argsort(preds["index"])
  np.testing.assert_allclose(preds["logits"][order], np.asarray(direct), atol=1e-5)
  # The loss metric is the mean over the 21 examples too, not over 24 rows.
  nll = -np.take_along_axis(np.asarray(jax.nn.log_softmax(direct)), data["label"][:, None], 1)
  np.testing.assert_allclose(metrics["loss"], nll.mean(), rtol=1e-5)
  # A checkpoint of another shape is named, not silently mixed in.
  bad = dict(HF, intermediate_size=40)
  transformers.BertModel(transformers.BertConfig(**bad)).save_pretrained(tmp_path / "bad")
  setup_bad = trainer.build_setup(_classifier_config(tmp_path / "bad"), jax.devices()[:2])
  with pytest.raises(ValueError, match=r"^initial params: parameter bert/encoder/layers_0/mlp/"
                                       r"wi/bias has shape \(40,\) in the checkpoint but "
                                       r"\(32,\) in the model$"):
    trainer.initial_state(setup_bad, seed=0)


# ---- carried state ---------------------------------------------------------------------------

@base.register("test_fake_with_carry")
class CarryObjective(train_fakes.FakeObjective):
  """The fake LM plus a per-example memory [B, 4] that each step reads and rewrites."""

  def init_carry(self, batch_size):
    return {"memory": jnp.zeros((batch_size, 4), jnp.float32), "steps": jnp.zeros((), jnp.int32)}

  def loss_fn_with_carry(self, params, batch, rng, deterministic, carry, normalizers=None):
    loss, metrics = self.loss_fn(params, batch, rng, deterministic)
    emb = params["embedding"][:, :4]                                   # [V, 4]
    memory = 0.5 * carry["memory"] + jnp.mean(emb[batch["ids"]], axis=1)
    loss = loss + 0.1 * jnp.mean(jnp.square(memory))
    return loss, metrics, {"memory": memory, "steps": carry["steps"] + 1}


def _carry_run(workdir, steps):
  c = train_fakes.fake_config(num_steps=steps, checkpoint_every=3)
  c.objective = "test_fake_with_carry"
  return trainer.train_and_evaluate(c, workdir, devices=jax.devices()[:2])


def _saved_state(workdir, step):
  return ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step),
                                                         "state"))


def test_carried_state_is_checkpointed_and_resumes_bit_exactly(tmp_path):
  a, b = str(tmp_path / "a"), str(tmp_path / "b")
  _carry_run(a, 3)
  _carry_run(a, 6)          # resumes from step 3, carry restored
  _carry_run(b, 6)
  sa, sb = _saved_state(a, 6), _saved_state(b, 6)
  assert int(sa["carry"]["steps"]) == 6 and np.abs(sa["carry"]["memory"]).max() > 0
  for x, y in zip(jax.tree_util.tree_leaves(sa), jax.tree_util.tree_leaves(sb)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  # A resume that dropped the carry would differ: step 3's memory is not step 6's.
  assert not np.array_equal(_saved_state(a, 3)["carry"]["memory"], sa["carry"]["memory"])
  c = train_fakes.fake_config(grad_accum_steps=2)
  c.objective = "test_fake_with_carry"
  with pytest.raises(ValueError, match=r"^config.train.grad_accum_steps=2: must be 1 for "
                                       r"objective 'test_fake_with_carry'"):
    trainer.build_setup(c, jax.devices()[:2])


def test_vocabulary_is_built_once_per_run(tmp_path, monkeypatch):
  from plm_jax.data import vocab as vocab_lib  # pylint: disable=import-outside-toplevel
  built = []
  original = vocab_lib.WordPieceVocabulary.__init__

  def counting(self, *args, **kwargs):
    built.append(args[0] if args else kwargs.get("vocab_path"))
    original(self, *args, **kwargs)

  monkeypatch.setattr(vocab_lib.WordPieceVocabulary, "__init__", counting)
  c = train_fakes.tiny_bert_config(num_steps=2, eval_every=1, eval_steps=2, checkpoint_every=2)
  c.data.shuffle_buffer = 64
  trainer.train_and_evaluate(c, str(tmp_path), devices=jax.devices()[:1])
  assert len(built) == 1, built
