"""GPT causal LM objective: packing, the loss against a direct computation, document masking."""
import flax.linen as nn
import jax
import numpy as np
import pytest

from plm_jax.data import gpt_pretrain
from plm_jax.objectives import gpt_perplexity
from plm_jax.objectives.gpt_lm import GptCausalLm

EOT = 2


def _docs(*docs):
  flat = np.concatenate([np.asarray(d, np.int32) for d in docs])
  splits = np.cumsum([0] + [len(d) for d in docs])
  return flat, splits


def test_pack_starts_documents_with_eot_and_numbers_segments():
  flat, splits = _docs([10, 11, 12], [20, 21], [], [30, 31, 32, 33])
  ids, seg, pos = gpt_pretrain.pack_np(flat, splits, seq_length=5, eot_id=EOT,
                                       cross_documents=True)
  assert ids.tolist() == [[2, 10, 11, 12, 2], [20, 21, 2, 30, 31], [32, 33, 0, 0, 0]]
  assert seg.tolist() == [[1, 1, 1, 1, 2], [1, 1, 2, 2, 2], [1, 1, 0, 0, 0]]
  assert pos.tolist() == [[0, 1, 2, 3, 4], [0, 1, 2, 3, 4], [0, 1, 0, 0, 0]]
  _, seg2, pos2 = gpt_pretrain.pack_np(flat, splits, seq_length=5, eot_id=EOT,
                                       cross_documents=False)
  assert seg2.tolist() == seg.tolist()
  assert pos2.tolist() == [[0, 1, 2, 3, 0], [0, 1, 0, 1, 2], [0, 1, 0, 0, 0]]


def _objective(cross_documents, seq_length=12):
  c = GptCausalLm.default_config()
  c.model.update(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                 max_position_embeddings=16, hidden_dropout_rate=0.0,
                 attention_dropout_rate=0.0, embedding_dropout_rate=0.0)
  c.data.update(seq_length=seq_length, cross_documents=cross_documents)
  return GptCausalLm(c, vocab_size=40)


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_loss_is_mean_next_token_nll_and_documents_stay_apart():
  flat, splits = _docs([5, 6, 7, 8, 9], [11, 12, 13, 14])
  ids, seg, pos = gpt_pretrain.pack_np(flat, splits, seq_length=12, eot_id=EOT,
                                       cross_documents=False)
  batch = {"input_ids": ids, "segment_ids": seg, "position_ids": pos}
  obj = _objective(cross_documents=False)
  params = jax.jit(obj.init_params)(jax.random.key(0))
  params = nn.meta.unbox(params)
  loss, metrics = jax.jit(lambda p, b: obj.loss_fn(p, b, None, True))(params, batch)

  # Reference: each document on its own (positions from 0, nothing else to attend to);
  # the prediction from one document's last token to the next document's <eot> is unscored.
  model = obj.make_model()
  forward = jax.jit(lambda p, x: model.apply({"params": p}, x)["logits"])
  nll = []
  for doc in ([EOT, 5, 6, 7, 8, 9, 0], [EOT, 11, 12, 13, 14, 0, 0]):   # padding after: causal
    logits = np.asarray(forward(params, np.asarray([doc]))[0])
    doc = [t for t in doc if t]
    lp = _log_softmax(logits[:len(doc) - 1].astype(np.float64))
    nll += [-lp[i, doc[i + 1]] for i in range(len(doc) - 1)]
  assert float(metrics["loss"][1]) == len(nll) == 9
  np.testing.assert_allclose(float(loss), np.mean(nll), rtol=2e-5)

  # Crossing documents: one more prediction (9 -> <eot>), and the second document sees the first.
  obj_x = _objective(cross_documents=True)
  ids_x, seg_x, pos_x = gpt_pretrain.pack_np(flat, splits, seq_length=12, eot_id=EOT,
                                             cross_documents=True)
  loss_x, metrics_x = jax.jit(lambda p, b: obj_x.loss_fn(p, b, None, True))(
      params, {"input_ids": ids_x, "segment_ids": seg_x, "position_ids": pos_x})
  assert float(metrics_x["loss"][1]) == 10
  assert abs(float(loss_x) - float(loss)) > 1e-4


def test_bad_config_is_one_line_error():
  c = GptCausalLm.default_config()
  c.model.architecture = "openai-gpt"          # post-LN architecture with pre-LN layers
  with pytest.raises(ValueError, match="config.model.norm_position"):
    GptCausalLm(c, vocab_size=40)
  c = GptCausalLm.default_config()
  c.data.seq_length = 2048
  with pytest.raises(ValueError, match="config.data.seq_length"):
    GptCausalLm(c, vocab_size=40)


@pytest.mark.parametrize("n,context,stride", [(10, 4, 2), (10, 4, 4), (3, 8, 2), (17, 5, 3)])
def test_sliding_windows_score_every_token_once_with_enough_context(n, context, stride):
  plan = gpt_perplexity.windows(n, context, stride)
  scored = [i for start, end, first in plan for i in range(first, end)]
  assert scored == list(range(1, n))
  for start, end, first in plan:
    assert end - start <= context and start < first
    assert first - start >= min(max(context - stride, 1), first)


def test_unigram_baseline_is_the_entropy_of_the_counts():
  ids = np.asarray([0, 1, 1, 2, 2, 2])
  p = np.asarray([2, 3, 4, 1]) / 10.0                 # add-one counts over vocab 4
  expected = np.exp(-np.mean(np.log(p[ids[1:]])))
  assert gpt_perplexity.unigram_perplexity(ids, 4) == pytest.approx(expected)


class _Chars:
  """A stand-in vocabulary for file_ids: one id per character, eos 0."""
  eos_id = 0

  def encode_ids(self, text):
    return [ord(c) for c in text]


def test_file_ids_detokenize_scores_the_undone_text(tmp_path):
  raw = tmp_path / "wiki.test.raw"
  raw.write_text(" = Title = \n A guest @-@ starring role , as \" Craig \" . \n", encoding="utf-8")
  undone = gpt_perplexity.file_ids(str(raw), _Chars(), detokenize=True)
  as_is = gpt_perplexity.file_ids(str(raw), _Chars())
  text = "= Title =\nA guest-starring role, as \"Craig\".\n"
  assert undone.tolist() == [0] + [ord(c) for c in text]
  assert as_is.tolist() == [0] + [ord(c) for c in raw.read_text(encoding="utf-8")]
