"""Data spine: special tokens and word boundaries come from the vocabulary (WordPiece '##',
SentencePiece U+2581), tasks are registered once by name, and full-sentence packing crosses
document boundaries (RoBERTa)."""
import numpy as np
import seqio
import tensorflow as tf

import mlm_batches
from configs import bert
from plm_jax.data import builtin, preprocessors, spm_train, tasks, vocab as vocab_lib


def test_sentencepiece_word_rule_and_specials_come_from_the_vocabulary(tmp_path):
  corpus = tmp_path / "docs.txt"
  corpus.write_text("\n\n".join(builtin.generate_document(i) for i in range(200)))
  v = spm_train.train(str(corpus), str(tmp_path / "spm"), 300, model_type="bpe",
                      max_sentences=0)
  pieces = [v.id_to_token(i) for i in range(v.vocab_size)]
  cont = vocab_lib.continuation_mask(v)
  assert cont.any() and (~cont).any()
  assert all(c == (not p.startswith("\u2581")) for p, c in zip(pieces, cont))
  ids = v.encode("the farmer walked")
  starts = [not cont[i] for i in ids]
  assert sum(starts) == 3 and starts[0]                # one word start per word
  pad, cls, sep, mask = vocab_lib.special_ids(v, ("pad", "cls", "sep", "mask"))
  assert pieces[cls] == "[CLS]" and pieces[mask] == "[MASK]" and pad == 0
  other = vocab_lib.SentencePieceVocabulary(str(tmp_path / "spm.model"),
                                            special_tokens={"cls": "<cls>"})
  try:
    vocab_lib.special_ids(other, ("cls",))
    raise AssertionError("a missing special token must be an error")
  except ValueError as e:
    assert "<cls>" in str(e) and "config.data.vocab.path" in str(e)


def test_wordpiece_word_rule():
  v = mlm_batches.vocabulary(bert.get_config("tiny"))
  cont = vocab_lib.continuation_mask(v)
  assert cont[v.token_to_id("##ed")] and not cont[v.token_to_id("walk")]


def test_tasks_are_registered_once_by_name():
  calls = []

  def make():
    calls.append(1)
    return dict(source=seqio.FunctionDataSource(
        lambda split, shuffle_files, seed=None: tf.data.Dataset.range(3).map(
            lambda i: {"x": i}), splits=["train"]), preprocessors=[], output_features={})
  name = tasks.task_name("spine_test", {"a": 1})
  assert name == tasks.task_name("spine_test", {"a": 1}) != tasks.task_name("spine_test", {"a": 2})
  first = tasks.get_or_register(name, make)
  assert tasks.get_or_register(name, make) is first and calls == [1]
  # Two datasets of one objective share one registered task.
  c = bert.get_config("tiny")
  before = set(seqio.TaskRegistry.names())
  mlm_batches.dataset(c, "train", 4, seed=0)
  mlm_batches.dataset(c, "validation", 4, seed=0, num_epochs=1)
  added = set(seqio.TaskRegistry.names()) - before
  assert len([n for n in added if n.startswith("bert_mlm_nsp_")]) <= 1


def test_full_sentence_packing_crosses_documents():
  v = mlm_batches.vocabulary(bert.get_config("tiny"))
  pad, cls, sep = vocab_lib.special_ids(v, ("pad", "cls", "sep"))
  docs = [["the cow ate .", "the pig slept ."], ["a boat sailed .", "the sailor rowed ."],
          ["the cook baked bread ."]]
  ds = tf.data.Dataset.from_tensor_slices({"sentences": tf.ragged.constant(docs)})
  ds = preprocessors.tokenize_sentences(ds, v)
  length = 16
  out = list(preprocessors.pack_full_sentences(ds, vocabulary=v, seq_length=length,
                                               group_size=3).as_numpy_iterator())
  rows = np.stack([o["input_ids"] for o in out])
  assert rows.shape[1] == length and (rows[:, 0] == cls).all()
  flat_sentences = [v.encode(s) for d in docs for s in d]
  # Every sentence appears whole and in order; some row holds the end of one document,
  # a [SEP], and the start of the next.
  body = [t for r in rows for t in r[1:] if t not in (pad, cls)]
  words = [t for t in body if t != sep]
  assert words == [t for s in flat_sentences for t in s]
  crossing = [r for r in rows if list(r).count(sep) >= 2]
  assert crossing, rows
  assert all((o["attention_mask"] == (o["input_ids"] != pad)).all() for o in out)
