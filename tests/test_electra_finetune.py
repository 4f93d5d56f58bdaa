"""ELECTRA joins fine-tuning with its discriminator: parity of the sequence-classification
model with transformers' ElectraForSequenceClassification, layout and layer depths."""
import json
import os

import numpy as np
import pytest

from plm_jax.finetune import backbones
from plm_jax.finetune.heads import FinetuneModel
import hf_random


@pytest.mark.parametrize("num_labels", [3, 1])
def test_electra_sequence_classification_parity(tmp_path, num_labels):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  from plm_jax.convert import registry  # pylint: disable=import-outside-toplevel
  torch.manual_seed(0)
  cfg = transformers.ElectraConfig(vocab_size=91, embedding_size=10, hidden_size=36,
                                   num_hidden_layers=2, num_attention_heads=3,
                                   intermediate_size=52, max_position_embeddings=40,
                                   num_labels=num_labels)
  hf = transformers.ElectraForSequenceClassification(cfg)
  hf_random.perturb_(hf)   # non-trivial LayerNorm and bias values
  hf.eval()
  hf.save_pretrained(tmp_path)
  conv = registry.get_converter("electra")
  with open(os.path.join(tmp_path, "config.json")) as f:
    model_cfg = conv.config_from_hf(json.load(f))
  _, backbone, _ = conv.import_hf(str(tmp_path), with_heads=False)   # classifier.* dropped
  state = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
  head = {name: {"kernel": state[f"classifier.{name}.weight"].T,
                 "bias": state[f"classifier.{name}.bias"]} for name in ("dense", "out_proj")}
  model = FinetuneModel("electra", model_cfg, num_labels=num_labels)
  rng = np.random.default_rng(1)
  ids = rng.integers(3, 91, size=(4, 17))
  mask = (np.arange(17)[None] < np.asarray([17, 12, 5, 9])[:, None]).astype(np.int64)
  ids = np.where(mask == 1, ids, 0)
  types = (np.arange(17)[None] >= 3) * mask
  with torch.no_grad():
    want = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
              token_type_ids=torch.tensor(types)).logits.numpy()
  got = model.apply({"params": {"electra": backbone, "classifier": head}}, ids.astype(np.int32),
                    mask.astype(np.int32), types.astype(np.int32), deterministic=True)["logits"]
  err = float(np.abs(np.asarray(got) - want).max())
  assert np.shape(got) == (4, num_labels) and err < 1e-5, err


def test_electra_layout_and_layer_depths():
  bb = backbones.get_backbone("electra")
  pair = bb.format_inputs([10, 11], [20], 16, {"cls": 1, "sep": 2})
  assert pair["input_ids"].tolist() == [1, 10, 11, 2, 20, 2]       # BERT's layout
  assert pair["token_type_ids"].tolist() == [0, 0, 0, 0, 1, 1]
  from plm_jax.models.electra import ElectraConfig  # pylint: disable=import-outside-toplevel
  n = bb.num_layers(ElectraConfig(num_layers=12))
  depth = lambda p: bb.layer_depth(p, n)
  # The released fine-tuning's depths: embeddings (and the projection) 0, layer i: i + 1,
  # head 14, so with decay d layer 11 trains at d ** 2 and the embeddings at d ** 14.
  assert depth("electra/embeddings/word_embeddings/embedding") == 0
  assert depth("electra/embeddings_project/kernel") == 0
  assert depth("electra/encoder/layers_0/mlp/wi/kernel") == 1
  assert depth("electra/encoder/layers_11/mlp/wi/kernel") == 12
  assert depth("classifier/out_proj/kernel") == 14 and n + 1 == 14
