"""GPT-1 / GPT-2 fine-tuning backbones: the input transformation, parity of the classifier on
the extract token with Hugging Face's *ForSequenceClassification, a GLUE run (slow)."""
import os

import numpy as np
import pytest

from plm_jax.finetune import backbones
from plm_jax.finetune.heads import FinetuneModel


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
  with torch.no_grad():
    for name, p in hf.named_parameters():
      p.add_(0.1 * torch.randn_like(p))
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
def test_fresh_gpt2_fine_tunes_on_rte(tmp_path):
  """A fresh tiny GPT-2 backbone with a learnt BPE runs the GLUE recipe end to end (slow:
  ~1-2 min on 2 cores)."""
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
  c = glue_config.get_config("rte")
  c.task.update(data_dir=os.path.join(data, "glue"), max_seq_length=64, buckets=(32, 64),
                predict_test=False)
  c.model.update(family="gpt2", size="tiny")
  c.vocab.update(type="bpe", path=str(tmp_path / "bpe" / "vocab.json"))
  c.train.update(batch_size=8, num_epochs=0.0, num_steps=3, eval_every=3, log_every=3)
  final = trainer.train_and_evaluate(c, str(tmp_path / "run"), devices=jax.devices()[:1])
  assert final["eval/examples"] == 277 and 0.0 <= final["eval/accuracy"] <= 1.0
