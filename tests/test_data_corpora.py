"""Corpus readers on the real files in <data>/pretrain (plm_jax.data.paths), plus error paths."""
import os
import re

import pytest

from plm_jax.data import paths
from plm_jax.data import corpora
from plm_jax.data import sentences

PRETRAIN = os.path.join(paths.data_dir(), "pretrain")
needs_data = pytest.mark.skipif(not os.path.isdir(PRETRAIN),
                                reason=f"{PRETRAIN} is absent (shared data bundle not mounted)")

LICENCE_MARKERS = re.compile(
    r"START OF (THE|THIS) PROJECT|END OF (THE|THIS) PROJECT|SMALL PRINT|Project Gutenberg-tm|"
    r"End of (the )?Project Gutenberg|\*\*\*", re.IGNORECASE)


@needs_data
@pytest.mark.parametrize("book", [
    "austen-emma",                          # '*** START OF THIS ...' + 'End of the Project Gutenberg EBook'
    "bronte-jane-eyre",                     # '***START OF THE ...***' without spaces
    "stevenson-dr-jekyll-and-mr-hyde",      # start marker wrapped over two lines
    "dante-divine-comedy-longfellow",       # 1993 '*END*THE SMALL PRINT' header
    "nesbit-five-children-and-it",          # old header + '*Project Gutenberg Etext of ...*' footer
    "shakespeare-twelfth-night",            # old header + 'End of Project Gutenberg Etext'
])
def test_gutenberg_header_footer_removed(book):
  path = os.path.join(PRETRAIN, "books", book + ".txt")
  raw = corpora.read_text(path)
  docs = list(corpora.iter_documents(path, "gutenberg", max_sentences_per_doc=50))
  text = "\n".join(docs)
  assert len(docs) >= 2
  assert LICENCE_MARKERS.search(raw)             # the raw file has them ...
  assert not LICENCE_MARKERS.search(text), LICENCE_MARKERS.search(text)   # ... we don't
  assert "\r" not in text and "\ufeff" not in text
  assert all(1 <= len(d.split("\n")) <= 50 for d in docs)
  # Hard-wrapped paragraphs are unwrapped: sentences are long lines.
  lengths = [len(s) for d in docs for s in d.split("\n")]
  assert max(lengths) > 200


@needs_data
def test_gutenberg_keeps_book_text():
  path = os.path.join(PRETRAIN, "books", "austen-emma.txt")
  text = "\n".join(corpora.iter_documents(path, "gutenberg"))
  assert "Emma Woodhouse, handsome, clever, and rich" in text
  assert text.rstrip().endswith("FINIS")


@needs_data
def test_wikiextractor_articles():
  docs = list(corpora.iter_documents(os.path.join(PRETRAIN, "wiki/enwiki/AA/wiki_0[01].txt"),
                                     "wikiextractor"))
  raw = "".join(corpora.read_text(os.path.join(PRETRAIN, f"wiki/enwiki/AA/wiki_0{i}.txt"))
                for i in (0, 1))
  assert len(docs) == raw.count("</doc>")
  assert docs[0].split("\n")[0] == "Anarchism"
  for d in docs:
    assert "<doc" not in d and "</doc>" not in d
    assert "<br>" not in d and "<ref" not in d and "</ref>" not in d


@needs_data
def test_wikitext_split_into_articles():
  docs = list(corpora.iter_documents(os.path.join(PRETRAIN, "wiki/wikitext-2-raw/wiki.test.raw"),
                                     "wikitext"))
  assert len(docs) > 50
  assert docs[0].startswith("Robert Boulter\n")
  assert all(" = " not in d.split("\n")[0] for d in docs)
  assert all("\r" not in d for d in docs)


def test_wikitext_detokenizer_undoes_its_spacing_and_markers():
  line = (' He had a guest @-@ starring role as " Craig " in " Teddy \'s Story " ( 2004 ) , '
          'earning $ 1 @,@ 500 @.@ 5 ; he did n\'t mind . ')
  assert corpora.detokenize_wikitext(line) == (
      'He had a guest-starring role as "Craig" in "Teddy\'s Story" (2004), '
      'earning $1,500.5; he didn\'t mind.')
  assert corpora.detokenize_wikitext(" = = Career = = ") == "= = Career = ="


@needs_data
def test_wikitext_detok_reader_same_articles_without_markers():
  path = os.path.join(PRETRAIN, "wiki/wikitext-2-raw/wiki.test.raw")
  raw = list(corpora.iter_documents(path, "wikitext"))
  detok = list(corpora.iter_documents(path, "wikitext_detok"))
  assert len(detok) == len(raw)
  assert [d.split("\n")[0] for d in detok] == [
      corpora.detokenize_wikitext(d.split("\n")[0]) for d in raw]
  text = "\n".join(detok)
  assert " @-@ " in "\n".join(raw) and " @" not in text and " , " not in text and " . " not in text
  assert text.count('"') == "\n".join(raw).count('"')   # quotes kept (one is unpaired in the file)


@needs_data
def test_chinese_files_crlf_and_bom():
  path = os.path.join(PRETRAIN, "zh", "xiyouji.txt")          # BOM + LF
  docs = list(corpora.iter_documents(path, "plain", doc_separator="line"))
  assert docs[0].startswith("《西游记》")
  crlf = list(corpora.iter_documents(os.path.join(PRETRAIN, "zh", "hongloumeng.txt"), "plain",
                                     doc_separator="line"))
  assert len(crlf) > 1000 and all("\r" not in d for d in crlf)
  assert sentences.split_sentences("他来了。你好吗？好！") == ["他来了。", "你好吗？", "好！"]


def test_plain_reader_and_errors(tmp_path):
  f = tmp_path / "a.txt"
  f.write_bytes("\ufeffFirst doc line one.\r\nline two.\r\n\r\nSecond doc.\r\n".encode("utf-8"))
  assert list(corpora.iter_documents(str(f), "plain")) == [
      "First doc line one.\nline two.", "Second doc."]
  assert list(corpora.iter_documents(str(f), "plain", doc_separator="line")) == [
      "First doc line one.", "line two.", "Second doc."]
  with pytest.raises(ValueError, match=r"config\.data\.corpus\.paths.*nothing_\*\.txt"):
    list(corpora.iter_documents(str(tmp_path / "nothing_*.txt"), "plain"))
  empty = tmp_path / "empty.txt"
  empty.write_text("\n\n   \n")
  with pytest.raises(ValueError, match=r"config\.data\.corpus\.paths.*no document"):
    list(corpora.iter_documents(str(empty), "plain"))
  with pytest.raises(ValueError, match="config.data.corpus.reader"):
    corpora.get_reader("html")


def test_sentence_splitter_python_and_tf_agree():
  import tensorflow as tf
  text = ('Mr. Smith went to Washington. He said "Hello!" Then he left? '
          'Yes. e.g. this stays. 3 apples were eaten.')
  py = sentences.split_sentences(text)
  assert py == ["Mr. Smith went to Washington.", 'He said "Hello!"', "Then he left?",
                "Yes. e.g. this stays.", "3 apples were eaten."]
  tf_out = [s.decode() for s in sentences.split_sentences_tf(tf.constant(text)).numpy()]
  assert tf_out == py


def test_reader_prefix_mixes_formats_in_one_corpus(tmp_path):
  book = tmp_path / "book.txt"
  book.write_text("*** START OF THIS PROJECT GUTENBERG EBOOK X ***\nIt was a dark night.\n\n"
                  "*** END OF THIS PROJECT GUTENBERG EBOOK X ***\nLicence text here.\n")
  wiki = tmp_path / "wiki_00"
  wiki.write_text('<doc id="1" url="u" title="T">\nT\n\nAn article line.\n</doc>\n')
  docs = list(corpora.iter_documents(f"gutenberg={book},wikiextractor={wiki}", "plain"))
  assert len(docs) == 2
  assert "dark night" in docs[0] and "Licence" not in docs[0] and "START" not in docs[0]
  assert "An article line." in docs[1] and "<doc" not in docs[1]
  with pytest.raises(ValueError, match="matches no file"):
    list(corpora.iter_documents(f"gutenberg={tmp_path}/nothing*.txt", "plain"))
