"""The document stream every corpus objective reads: mixed over the whole corpus from the first
step, reshuffled per epoch, deterministic; held-out evaluation spread over every document;
binary / undecodable corpus files refused or skipped and counted."""
import os

import numpy as np
import pytest

from plm_jax.data import corpora, sources
from plm_jax.data.config import CorpusConfig


def _corpus_parts(tmp_path, sizes):
  """One file per part ('p0.txt', 'p1.txt', ...), one document per line, tagged with its part."""
  paths = []
  for part, n in enumerate(sizes):
    path = tmp_path / f"p{part}.txt"
    path.write_text("".join(f"part{part} document {i} text.\n" for i in range(n)))
    paths.append(str(path))
  return paths


def _stream(corpus, split, n, seed=0, shuffle=True):
  ds = sources.document_source(corpus).get_dataset(split=split, shuffle=shuffle, seed=seed)
  return [ex["text"].decode() for ex in ds.repeat().take(n).as_numpy_iterator()]


def _part(doc):
  return int(doc.split()[0][len("part"):])


def test_first_5_percent_of_the_stream_mixes_every_part_of_the_corpus(tmp_path):
  sizes = (6000, 1500, 500)          # files read in sorted order: p0 first, p2 last
  _corpus_parts(tmp_path, sizes)
  corpus = CorpusConfig(type="text", paths=str(tmp_path / "p*.txt"), doc_separator="line",
                        eval_every_nth=50)
  total = len(sources.load_documents(corpus, "train"))
  head = _stream(corpus, "train", total // 20)
  shares = np.bincount([_part(d) for d in head], minlength=3) / len(head)
  expected = np.asarray(sizes) / sum(sizes)
  assert np.all(np.abs(shares - expected) < 0.04), (shares, expected)


def test_random_next_segments_come_from_the_whole_corpus(tmp_path):
  """NSP draws its random-next segments from the documents grouped with each one
  (data.group_size); with the stream mixed, a group-mate is from the same book (file)
  as often as two documents of the corpus are."""
  books, per_book, group = 50, 40, 16
  _corpus_parts(tmp_path, [per_book] * books)
  corpus = CorpusConfig(type="text", paths=str(tmp_path / "p*.txt"), doc_separator="line",
                        eval_every_nth=1000)
  n = len(sources.load_documents(corpus, "train"))
  stream = [_part(d) for d in _stream(corpus, "train", n)]
  groups = [stream[i:i + group] for i in range(0, n - group + 1, group)]
  same = np.mean([sum(g[j] == g[k] for k in range(group) if k != j) / (group - 1)
                  for g in groups for j in range(group)])
  base = (per_book - 1) / (books * per_book - 1)       # 0.0195
  assert abs(same - base) < 0.01, (same, base)


def test_each_epoch_is_a_new_permutation_and_the_stream_is_deterministic(tmp_path):
  _corpus_parts(tmp_path, (300, 100))
  corpus = CorpusConfig(type="text", paths=str(tmp_path / "p*.txt"), doc_separator="line")
  docs = sources.load_documents(corpus, "train")
  n = len(docs)
  two_epochs = _stream(corpus, "train", 2 * n, seed=3)
  assert sorted(two_epochs[:n]) == sorted(docs) == sorted(two_epochs[n:])
  assert two_epochs[:n] != two_epochs[n:]
  assert two_epochs == _stream(corpus, "train", 2 * n, seed=3)
  assert two_epochs != _stream(corpus, "train", 2 * n, seed=4)


def test_held_out_sample_is_spread_across_every_held_out_document(tmp_path):
  _corpus_parts(tmp_path, (4000, 4000))
  corpus = CorpusConfig(type="text", paths=str(tmp_path / "p*.txt"), doc_separator="line",
                        eval_every_nth=10)
  held = sources.load_documents(corpus, "validation")      # 800, in file order
  first = _stream(corpus, "validation", len(held) // 10, shuffle=False)
  deciles = np.bincount([held.index(d) * 10 // len(held) for d in first], minlength=10)
  assert np.all(deciles > 0), deciles     # the first 10% of eval draws on all of the held-out set
  assert abs(np.mean([_part(d) == 1 for d in first]) - 0.5) < 0.15
  assert _stream(corpus, "validation", len(held), shuffle=False) == list(sources.eval_order(held))
  # Long documents are cut into parts served round-robin: the first parts of all documents
  # come before any second part.
  long_docs = tuple("\n".join(f"doc {d} line {i}" for i in range(20)) for d in range(5))
  order = sources.eval_order(long_docs, part_lines=8)
  assert len(order) == 15 and all(p.endswith("line 7") for p in order[:5])
  assert sorted("\n".join(order).split("\n")) == sorted("\n".join(long_docs).split("\n"))


@pytest.mark.parametrize("content,why", [
    (bytes(range(256)) * 8, "NUL bytes"),
    (np.random.default_rng(0).integers(1, 256, 4000, dtype=np.uint8).tobytes(), "not UTF-8"),
    ("text\x01\x02\x03\x04 ".encode() * 50, "control characters"),
], ids=["nul", "random_bytes", "controls"])
def test_binary_file_is_an_error_naming_it_or_skipped_and_counted(tmp_path, caplog, content, why):
  good = tmp_path / "a.txt"
  good.write_text("A document.\n\nAnother one.\n")
  bad = tmp_path / "b.bin"
  bad.write_bytes(content)
  glob_ = str(tmp_path / "*")
  with pytest.raises(corpora.BadFileError) as e:
    list(corpora.iter_documents(glob_, "plain"))
  assert str(bad) in str(e.value) and "on_bad_file=skip" in str(e.value)
  assert why.split()[0] in str(e.value) or "undecodable" in str(e.value)
  report = corpora.CorpusReport()
  docs = list(corpora.iter_documents(glob_, "plain", on_bad_file="skip", report=report))
  assert docs == ["A document.", "Another one."]
  assert [(f.path, f.documents, f.bytes, bool(f.skipped)) for f in report.files] == [
      (str(good), 2, good.stat().st_size, False), (str(bad), 0, len(content), True)]
  assert any("skipped 1 binary/undecodable file(s) of 2" in r.getMessage()
             for r in caplog.records)
  assert "2 documents" in report.summary() and "skipped 1" in report.summary()


def test_a_few_latin1_bytes_in_a_book_are_replaced_not_refused(tmp_path):
  path = tmp_path / "book.txt"
  path.write_bytes(("It was a fine day. " * 200).encode() + "Caf\xe9 au lait.".encode("latin-1"))
  report = corpora.CorpusReport()
  docs = list(corpora.iter_documents(str(path), "plain", report=report))
  assert docs[0].endswith("Caf\ufffd au lait.") and report.files[0].replaced == 1


def test_only_the_binary_file_is_skipped_in_a_mixed_text_glob(tmp_path):
  """Through the corpus config: the run reads the text files and skips the binary one."""
  _corpus_parts(tmp_path, (40, 40))
  (tmp_path / "p9.txt").write_bytes(os.urandom(3000).replace(b"\x00", b"\x01"))
  corpus = CorpusConfig(type="text", paths=str(tmp_path / "p*.txt"), doc_separator="line",
                        on_bad_file="skip", eval_every_nth=10)
  docs = sources.load_documents(corpus, "train") + sources.load_documents(corpus, "validation")
  assert len(docs) == 80 and all(d.startswith("part") for d in docs)
  with pytest.raises(corpora.BadFileError, match="p9.txt"):
    sources.load_documents(CorpusConfig(type="text", paths=str(tmp_path / "p*.txt")), "train")
