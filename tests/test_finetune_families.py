"""RoBERTa and ALBERT join fine-tuning: input layouts, head parity with Hugging Face
(random weights built here), fresh and exported runs through the trainer, and errors."""
import json
import os

import numpy as np
import pytest

from configs import glue as glue_config
from plm_jax.data import paths
from plm_jax.finetune import backbones
from plm_jax.finetune.heads import FinetuneModel
import hf_random

GLUE_DIR = os.path.join(paths.data_dir(), "glue")
needs_glue = pytest.mark.skipif(not os.path.isdir(GLUE_DIR), reason=f"{GLUE_DIR} is absent")


def test_roberta_layout_single_pair_and_truncation():
  bb = backbones.get_backbone("roberta")
  special = {"cls": 0, "sep": 2}
  one = bb.format_inputs([10, 11, 12], None, 16, special)
  assert one["input_ids"].tolist() == [0, 10, 11, 12, 2]
  pair = bb.format_inputs([10, 11], [20, 21, 22], 16, special)
  assert pair["input_ids"].tolist() == [0, 10, 11, 2, 2, 20, 21, 22, 2]   # <s> A </s></s> B </s>
  assert pair["token_type_ids"].tolist() == [0] * 9
  cut = bb.format_inputs(list(range(100, 110)), list(range(200, 205)), 12, special)
  assert len(cut["input_ids"]) == 12 and cut["input_ids"].tolist()[-1] == 2
  assert cut["input_ids"].tolist() == [0] + list(range(100, 104)) + [2, 2] + list(range(200, 204)) + [2]
  albert = backbones.get_backbone("albert").format_inputs([10, 11], [20], 16, special)
  assert albert["input_ids"].tolist() == [0, 10, 11, 2, 20, 2]              # BERT's layout
  assert albert["token_type_ids"].tolist() == [0, 0, 0, 0, 1, 1]


def _hf_dir(tmp_path, family, num_labels):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  torch.manual_seed(0)
  if family == "roberta":
    cfg = transformers.RobertaConfig(vocab_size=93, hidden_size=36, num_hidden_layers=3,
                                     num_attention_heads=3, intermediate_size=52,
                                     max_position_embeddings=40, type_vocab_size=1,
                                     num_labels=num_labels)
    model = transformers.RobertaForSequenceClassification(cfg)
  else:
    cfg = transformers.AlbertConfig(vocab_size=91, embedding_size=10, hidden_size=36,
                                    num_hidden_layers=4, num_attention_heads=3,
                                    intermediate_size=52, max_position_embeddings=40,
                                    num_labels=num_labels, hidden_dropout_prob=0.0,
                                    attention_probs_dropout_prob=0.0, classifier_dropout_prob=0.0)
    model = transformers.AlbertForSequenceClassification(cfg)
  hf_random.perturb_(model)   # non-trivial LayerNorm and bias values
  model.eval()
  path = str(tmp_path / family)
  model.save_pretrained(path)
  return model, path


def _head_params(state, family):
  t = lambda k: state[k].detach().numpy()
  if family == "roberta":
    return {"dense": {"kernel": t("classifier.dense.weight").T, "bias": t("classifier.dense.bias")},
            "out_proj": {"kernel": t("classifier.out_proj.weight").T,
                         "bias": t("classifier.out_proj.bias")}}
  return {"kernel": t("classifier.weight").T, "bias": t("classifier.bias")}


@pytest.mark.parametrize("family,num_labels", [("roberta", 3), ("albert", 2), ("roberta", 1)])
def test_sequence_classification_parity_with_hugging_face(tmp_path, family, num_labels):
  torch = pytest.importorskip("torch")
  from plm_jax.convert import registry
  hf_model, path = _hf_dir(tmp_path, family, num_labels)
  conv = registry.get_converter(family)
  with open(os.path.join(path, "config.json")) as f:
    cfg = conv.config_from_hf(json.load(f))
  _, backbone, _ = conv.import_hf(path, with_heads=False)
  params = {family: backbone, "classifier": _head_params(hf_model.state_dict(), family)}
  model = FinetuneModel(family, cfg, num_labels=num_labels)
  rng = np.random.default_rng(1)
  pad = 1 if family == "roberta" else 0
  ids = rng.integers(3, cfg.vocab_size, size=(4, 17))
  lengths = [17, 12, 5, 9]
  mask = (np.arange(17)[None] < np.asarray(lengths)[:, None]).astype(np.int64)
  ids = np.where(mask == 1, ids, pad)
  types = np.zeros_like(ids) if family == "roberta" else (np.arange(17)[None] >= 3) * mask
  with torch.no_grad():
    want = hf_model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                    token_type_ids=torch.tensor(types)).logits.numpy()
  got = model.apply({"params": params}, ids.astype(np.int32), mask.astype(np.int32),
                    types.astype(np.int32), deterministic=True)["logits"]
  assert got.shape == (4, num_labels)
  err = float(np.abs(np.asarray(got) - want).max())
  assert err < 1e-5, f"{family} classification logits differ from HF by {err:.2e}"


def test_albert_layer_decay_needs_unshared_layers():
  from plm_jax.models.albert import AlbertConfig
  bb = backbones.get_backbone("albert")
  shared = AlbertConfig(num_layers=4, num_hidden_groups=2)
  assert "shares its layers" in bb.layer_decay_error(shared)
  plain = AlbertConfig(num_layers=4, share_mode="none")
  assert bb.layer_decay_error(plain) == ""
  assert bb.num_layers(plain) == 4
  assert bb.layer_depth("albert/embeddings/word_embeddings/embedding", 4) == 0
  assert bb.layer_depth("albert/encoder/embedding_hidden_mapping_in/kernel", 4) == 0
  assert bb.layer_depth("albert/encoder/groups_2_layers_0/mlp/wi/kernel", 4) == 3
  assert bb.layer_depth("albert/pooler/dense/kernel", 4) == 5
  with pytest.raises(ValueError, match="scan_layers"):
    bb.apply_overrides(plain, dict(hidden_dropout=0.1, attention_dropout=0.1, dtype="float32",
                                   scan_layers=True, remat_policy="none", fused_ops=True))


def _config(task, family, **kw):
  c = glue_config.get_config(task)
  c.task.data_dir = GLUE_DIR
  c.task.max_seq_length = 64
  c.task.buckets = (32, 64)
  c.task.predict_test = False
  c.model.family = family
  c.model.size = "tiny"
  c.train.batch_size = 8
  c.train.num_epochs = 0.0
  c.train.num_steps = 3
  c.train.eval_every = 3
  c.train.log_every = 3
  c.train.params_export = True
  c.optimizer.learning_rate = 1e-3
  for k, v in kw.items():
    section, key = k.split("__")
    c[section][key] = v
  return c


@pytest.fixture(scope="module")
def bpe_vocab(tmp_path_factory):
  """A 1,000-token byte-level BPE learnt from one Wikipedia file of the corpus."""
  data = paths.data_dir()
  wiki = f"{data}/pretrain/wiki/enwiki/AA/wiki_00.txt"
  if not os.path.isfile(wiki):
    pytest.skip(f"{wiki} is absent")
  pytest.importorskip("tokenizers")
  from plm_jax.data import bpe_train
  out = tmp_path_factory.mktemp("bpe")
  bpe_train.train(wiki, str(out), 1000, reader="wikiextractor", max_documents=50)
  return str(out / "vocab.json")


@needs_glue
# ALBERT's pretrain-then-fine-tune run (about 55 s on 2 cores) is in the slow tier; RoBERTa's
# exercises the same export -> fine-tune path in the fast one.
@pytest.mark.parametrize("family", ["roberta", pytest.param("albert", marks=pytest.mark.slow)])
def test_fresh_run_then_fine_tune_from_its_export(tmp_path, family, bpe_vocab):
  """A fresh tiny backbone fine-tunes on RTE; its export (tokenizer files included) is
  the starting point of a second run, which takes its vocabulary and every backbone
  parameter from it."""
  import jax
  from plm_jax.train import config as train_config, trainer
  vocab = dict(vocab__type="bpe", vocab__path=bpe_vocab) if family == "roberta" else dict(
      vocab__type="builtin")
  first = str(tmp_path / "first")
  final = trainer.train_and_evaluate(_config("rte", family, **vocab), first,
                                     devices=jax.devices()[:1])
  assert final["eval/examples"] == 277 and 0.0 <= final["eval/accuracy"] <= 1.0
  export = os.path.join(first, "export")
  files = set(os.listdir(export))
  assert ({"vocab.json", "merges.txt"} if family == "roberta" else {"vocab.txt"}) <= files
  if family == "roberta":     # the exported tokenizer files load in transformers, same ids
    transformers = pytest.importorskip("transformers")
    from plm_jax.data import bpe, vocab as vocab_lib
    ours = bpe.ByteLevelBPEVocabulary(bpe_vocab)
    hf_tok = transformers.AutoTokenizer.from_pretrained(export)
    text = "The river's mouth, 1,204 km away\tfroze in 1893."
    assert type(hf_tok).__name__.startswith("RobertaTokenizer")
    cls, sep = vocab_lib.special_ids(ours, ("cls", "sep"))
    assert hf_tok(text)["input_ids"] == [cls] + ours.encode(text) + [sep]
  again = _config("mrpc", family)           # vocabulary from the export's tokenizer files
  again.init.hf_dir = export
  _, objective = train_config.validate_config(again, num_devices=1)
  start = objective.initial_params()[family]
  from plm_jax.convert import export as export_lib
  _, _, saved = export_lib.load_export(export)
  flat = lambda t: {"/".join(str(getattr(k, "key", k)) for k in p): np.asarray(v)
                    for p, v in jax.tree_util.tree_flatten_with_path(t)[0]}
  got, want = flat(start), flat(saved[family])
  assert set(got) == set(want) and all(np.array_equal(got[k], want[k]) for k in got)
  assert objective.vocabulary().vocab_size == objective.model_config().vocab_size


@needs_glue
def test_roberta_pad_id_must_match_the_vocabulary(tmp_path, bpe_vocab):
  from plm_jax.train import config as train_config
  _, path = _hf_dir(tmp_path, "roberta", 2)
  cfg = json.load(open(os.path.join(path, "config.json")))
  cfg.update(vocab_size=1000, pad_token_id=0)
  json.dump(cfg, open(os.path.join(path, "config.json"), "w"))
  c = _config("rte", "roberta", vocab__type="bpe", vocab__path=bpe_vocab)
  c.init.hf_dir = path
  with pytest.raises(ValueError, match=r"pad_token_id is 0 but the vocabulary says 1"):
    _, objective = train_config.validate_config(c, num_devices=1)
    objective.model_config()


@needs_glue
def test_squad_refuses_a_roberta_backbone():
  from configs import squad as squad_config
  from plm_jax.train import config as train_config
  c = squad_config.get_config("article_split")
  c.model.family = "roberta"
  with pytest.raises(ValueError, match="config.model.family='roberta'"):
    train_config.validate_config(c, num_devices=1)
