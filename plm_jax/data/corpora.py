"""Document readers for local pretraining corpora.

Every reader yields documents as `str`, with paragraphs or sentences separated
by "\n" (the sentence splitter in the tf.data pipeline cuts lines further).
Readers are looked up by name (config.data.corpus.reader):

  plain          documents separated by blank lines ('blank_line') or one per
                 line ('line')
  gutenberg      Project Gutenberg ebooks: header/licence and footer removed,
                 hard-wrapped paragraphs unwrapped, each book cut into
                 documents of at most max_sentences_per_doc sentences
  wikiextractor  WikiExtractor output: one <doc ...>...</doc> article per
                 document, markup remnants (<br>, <ref>..</ref>, ...) dropped
  wikitext       WikiText raw: articles start at ' = Title = ' lines
  wikitext_detok the same articles with WikiText's tokenisation undone (detokenize_wikitext),
                 as the GPT-2 paper scored WikiText: text as a model trained on ordinary
                 prose expects it

All readers accept CRLF line endings and a UTF-8 byte-order mark, and read
files in sorted path order, so the document stream is deterministic.

A file that is not text (NUL bytes, or more than MAX_BAD_SHARE of its bytes
undecodable as UTF-8 or control characters) is an error naming it, or with
on_bad_file='skip' is skipped and counted in a warning. A CorpusReport passed
to iter_documents records the documents and bytes each file gave.
"""
from __future__ import annotations

import dataclasses
import glob
import os
import re
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from absl import logging

from plm_jax.data import sentences as sentences_lib

PATHS_KEY = "config.data.corpus.paths"


def expand_globs(paths: str, config_key: str = PATHS_KEY) -> List[str]:
  """Comma-separated globs -> sorted file list; a glob matching no file is an error."""
  files: List[str] = []
  patterns = [p.strip() for p in (paths or "").split(",") if p.strip()]
  if not patterns:
    raise ValueError(f"{config_key} is empty: give one or more comma-separated file globs")
  for pattern in patterns:
    matched = sorted(f for f in glob.glob(os.path.expanduser(pattern)) if os.path.isfile(f))
    if not matched:
      raise ValueError(f"{config_key}: glob {pattern!r} matches no file")
    files.extend(m for m in matched if m not in files)
  return files


BAD_FILE_CHOICES = ("error", "skip")
MAX_BAD_SHARE = 0.02      # undecodable bytes + control characters, as a share of the bytes
_CONTROLS = re.compile("[\x00-\x08\x0e-\x1f\x7f]")


class BadFileError(ValueError):
  """A corpus file that is binary or not decodable as text."""


@dataclasses.dataclass
class FileReport:
  path: str
  bytes: int = 0
  documents: int = 0
  replaced: int = 0          # undecodable sequences replaced by U+FFFD
  skipped: str = ""          # why the file was skipped ('' = read)


@dataclasses.dataclass
class CorpusReport:
  """What each file of a corpus gave (filled by iter_documents)."""
  files: List[FileReport] = dataclasses.field(default_factory=list)

  @property
  def documents(self) -> int:
    return sum(f.documents for f in self.files)

  @property
  def bytes(self) -> int:
    return sum(f.bytes for f in self.files if not f.skipped)

  @property
  def skipped(self) -> List[FileReport]:
    return [f for f in self.files if f.skipped]

  def summary(self) -> str:
    read = [f for f in self.files if not f.skipped]
    line = (f"{len(read)} file(s), {self.documents:,} documents, "
            f"{self.bytes / 1e6:,.1f} MB")
    if self.skipped:
      line += f"; skipped {len(self.skipped)} binary/undecodable file(s)"
    return line


def decode_text(data: bytes, path: str) -> Tuple[str, int]:
  """bytes -> (str with LF line endings and no byte-order mark, bytes replaced).

  A few undecodable bytes (a Latin-1 letter in a UTF-8 book) are replaced by
  U+FFFD; a file with NUL bytes, or with more than MAX_BAD_SHARE undecodable
  bytes and control characters, is not text: BadFileError naming the file.
  """
  if b"\x00" in data:
    raise BadFileError(f"{path}: not a text file (it contains NUL bytes)")
  text = data.decode("utf-8", errors="replace")
  replaced = text.count("\ufffd")       # one per undecodable sequence (or a U+FFFD in the file)
  controls = len(_CONTROLS.findall(text))
  share = (replaced + controls) / max(1, len(data))
  if share > MAX_BAD_SHARE:
    raise BadFileError(f"{path}: not UTF-8 text ({share:.0%} of its bytes are undecodable or "
                       f"control characters)")
  text = text.lstrip("\ufeff")
  return text.replace("\r\n", "\n").replace("\r", "\n"), replaced


def read_text(path: str) -> str:
  """A corpus file as text (see decode_text); BadFileError when it is not text."""
  with open(path, "rb") as f:
    return decode_text(f.read(), path)[0]


def _paragraphs(text: str) -> Iterator[List[str]]:
  """Blocks of consecutive non-blank lines."""
  block: List[str] = []
  for line in text.split("\n"):
    if line.strip():
      block.append(line.strip())
    elif block:
      yield block
      block = []
  if block:
    yield block


# ---- plain ----------------------------------------------------------------------------

def read_plain(text: str, doc_separator: str = "blank_line", **_) -> Iterator[str]:
  if doc_separator == "line":
    for line in text.split("\n"):
      if line.strip():
        yield line.strip()
  elif doc_separator == "blank_line":
    for block in _paragraphs(text):
      yield "\n".join(block)
  else:
    raise ValueError("config.data.corpus.doc_separator: expected 'blank_line' or 'line', "
                     f"got {doc_separator!r}")


# ---- gutenberg --------------------------------------------------------------------------

# Start of the book proper: the line after the marker.
_GUTENBERG_START = re.compile(
    r"^\s*\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG"          # 2000s-2010s style
    r"|^\s*\*END\*\s*THE SMALL PRINT"                               # 1990s 'small print'
    r"|^\s*\*{3}\s*START OF THE PROJECT GUTENBERG", re.IGNORECASE)
# Start of the footer: the book ends before this line.
_GUTENBERG_END = re.compile(
    r"^\s*\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG"
    r"|^\s*\**\s*End of (the )?Project Gutenberg"
    r"|^\s*End of Project Gutenberg'?s", re.IGNORECASE)
# Loose footer lines such as "*Project Gutenberg Etext of Five Children and It*"
# are only trusted near the end of the file.
_GUTENBERG_TAIL = re.compile(r"^\W*Project Gutenberg('s|\u2019s)?\s+E-?(text|book)", re.IGNORECASE)
# Producer credits and edition notes right after the start marker.
_GUTENBERG_CREDIT = re.compile(
    r"(produced by|prepared by|transcribed by|project gutenberg|etext|e-text|ebook|"
    r"proofread|distributed proofread|http://|www\.)", re.IGNORECASE)


def strip_gutenberg(text: str) -> str:
  """Removes the Gutenberg header/licence and footer from an ebook's text."""
  lines = text.split("\n")
  start = 0
  for i, line in enumerate(lines):
    if _GUTENBERG_START.search(line):
      start = i + 1
      # "*** START OF ... EBOOK THE STRANGE CASE OF DR." may wrap: skip to the
      # line that closes the marker with '***'.
      if line.lstrip().startswith("***") and not line.rstrip().endswith("***"):
        for j in range(i + 1, min(i + 4, len(lines))):
          if lines[j].rstrip().endswith("***"):
            start = j + 1
            break
      break
  end = len(lines)
  for i in range(start, len(lines)):
    if _GUTENBERG_END.search(lines[i]):
      end = i
      break
  tail_from = max(start, end - 30)
  for i in range(tail_from, end):
    if _GUTENBERG_TAIL.search(lines[i]):
      end = i
      break
  body = lines[start:end]
  # Drop credit paragraphs ("Produced by ...") among the first few paragraphs.
  out: List[str] = []
  seen_paragraphs = 0
  block: List[str] = []
  def flush():
    nonlocal seen_paragraphs
    if block:
      joined = " ".join(block)
      if not (seen_paragraphs < 6 and _GUTENBERG_CREDIT.search(joined)):
        out.extend(block + [""])
      seen_paragraphs += 1
      block.clear()
  for line in body:
    if line.strip():
      block.append(line)
    else:
      flush()
  flush()
  return "\n".join(out)


def read_gutenberg(text: str, max_sentences_per_doc: int = 256, **_) -> Iterator[str]:
  """One book -> documents of <= max_sentences_per_doc sentences, one per line."""
  if max_sentences_per_doc < 1:
    raise ValueError("config.data.corpus.max_sentences_per_doc must be >= 1")
  doc: List[str] = []
  for block in _paragraphs(strip_gutenberg(text)):
    paragraph = re.sub(r"\s+", " ", " ".join(block)).strip()
    for sentence in sentences_lib.split_sentences(paragraph):
      doc.append(sentence)
      if len(doc) >= max_sentences_per_doc:
        yield "\n".join(doc)
        doc = []
  if doc:
    yield "\n".join(doc)


# ---- wikiextractor -----------------------------------------------------------------------

_DOC_OPEN = re.compile(r"^<doc\b[^>]*>\s*$")
_DOC_CLOSE = re.compile(r"^</doc>\s*$")
_REF = re.compile(r"<ref\b[^<>]*/>|<ref\b[^<>]*>.*?</ref>", re.IGNORECASE | re.DOTALL)
# An HTML-like tag, possibly spanning lines; '<' followed by a digit or space
# (a real less-than sign) is left alone.
_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*(\s[^<>]*)?/?>")
_OPEN_TAG_AT_EOL = re.compile(r"<[a-zA-Z][a-zA-Z0-9]*$")


def clean_wiki_markup(text: str) -> str:
  """Drops <ref>..</ref>, <br>, <span ...> and similar remnants from an article."""
  text = _REF.sub("", text)
  text = _TAG.sub(" ", text)
  lines = (_OPEN_TAG_AT_EOL.sub("", re.sub(r"[ \t]+", " ", l)).strip() for l in text.split("\n"))
  return "\n".join(l for l in lines if l)


def read_wikiextractor(text: str, **_) -> Iterator[str]:
  """<doc ...> title \\n paragraphs </doc> -> one document per article.

  The title line (the first line of each article) is kept as the first line.
  """
  doc: List[str] = []
  inside = False
  for line in text.split("\n"):
    if _DOC_OPEN.match(line):
      inside, doc = True, []
      continue
    if _DOC_CLOSE.match(line):
      cleaned = clean_wiki_markup("\n".join(doc))
      if cleaned:
        yield cleaned
      inside, doc = False, []
      continue
    if inside:
      doc.append(line)
  if inside and doc:   # unterminated last article
    cleaned = clean_wiki_markup("\n".join(doc))
    if cleaned:
      yield cleaned


# ---- wikitext ---------------------------------------------------------------------------

_WIKITEXT_TITLE = re.compile(r"^ ?= [^=].* = ?$")


def read_wikitext(text: str, **_) -> Iterator[str]:
  """WikiText raw: a new article starts at each ' = Title = ' line (level-1 heading)."""
  doc: List[str] = []
  for line in text.split("\n"):
    if _WIKITEXT_TITLE.match(line):
      if doc:
        yield "\n".join(doc)
      doc = [line.strip(" =")]
      continue
    line = line.strip()
    if not line:
      continue
    if line.startswith("=") and line.endswith("="):   # sub-heading ' = = Career = = '
      line = line.strip(" =")
    doc.append(line)
  if doc:
    yield "\n".join(doc)


# WikiText's tokenisation, undone. WikiText splits numbers at ',' '.' '-' with '@' markers
# (' 1 @,@ 000 ', ' guest @-@ starring '), puts spaces around every punctuation mark and
# before clitics (' Teddy 's ', ' do n't '), and pads quotes and brackets (' " Craig " ').
_WIKITEXT_JOINERS = re.compile(r" @([-,.])@ ")
_SPACE_BEFORE = re.compile(r" ([,.;:!?%)\]}]|'s\b|'re\b|'ve\b|'ll\b|'d\b|'m\b|n't\b)")
_SPACE_AFTER = re.compile(r"([(\[{$]) ")
_QUOTED = re.compile(r'" ([^"]*?) "')


def detokenize_wikitext(line: str) -> str:
  """One WikiText line back to ordinary text: ' guest @-@ starring role , as " Craig " '
  -> 'guest-starring role, as "Craig"'. Headings keep their '=' marks."""
  line = _WIKITEXT_JOINERS.sub(r"\1", line)
  line = _QUOTED.sub(r'"\1"', line)
  line = _SPACE_BEFORE.sub(r"\1", line)
  line = _SPACE_AFTER.sub(r"\1", line)
  return line.strip()


def read_wikitext_detok(text: str, **_) -> Iterator[str]:
  """read_wikitext's articles, every line through detokenize_wikitext."""
  for doc in read_wikitext(text):
    yield "\n".join(detokenize_wikitext(line) for line in doc.split("\n"))


READERS: Dict[str, Callable[..., Iterator[str]]] = {
    "plain": read_plain,
    "gutenberg": read_gutenberg,
    "wikiextractor": read_wikiextractor,
    "wikitext": read_wikitext,
    "wikitext_detok": read_wikitext_detok,
}


def get_reader(name: str) -> Callable[..., Iterator[str]]:
  if name not in READERS:
    raise ValueError(f"config.data.corpus.reader: unknown reader {name!r}; known: {sorted(READERS)}")
  return READERS[name]


def reader_globs(paths: str, default_reader: str) -> List[Tuple[str, str]]:
  """'gutenberg=books/*.txt,wiki/*' -> [('gutenberg', 'books/*.txt'), (default, 'wiki/*')].

  A glob may name its own reader with a `reader=` prefix, so one corpus can mix
  formats (books + Wikipedia); the others use `default_reader`.
  """
  out = []
  for pattern in (p.strip() for p in (paths or "").split(",")):
    if not pattern:
      continue
    name, sep, rest = pattern.partition("=")
    if sep and name in READERS:
      out.append((name, rest.strip()))
    else:
      out.append((default_reader, pattern))
  return out


def iter_documents(paths: str, reader: str = "plain", *, doc_separator: str = "blank_line",
                   max_sentences_per_doc: int = 256, config_key: str = PATHS_KEY,
                   on_bad_file: str = "error",
                   report: Optional[CorpusReport] = None) -> Iterator[str]:
  """All documents of the files matched by `paths`, in sorted file order.

  `paths` is comma-separated globs, each optionally prefixed `reader=` (see
  reader_globs). Raises ValueError (naming `config_key` and the glob) when a
  glob matches no file or when the files hold no document at all; a binary or
  undecodable file raises BadFileError (on_bad_file='error') or is skipped
  with a warning that counts them ('skip'). `report` receives one FileReport
  per file.
  """
  if on_bad_file not in BAD_FILE_CHOICES:
    raise ValueError(f"config.data.corpus.on_bad_file: expected one of {BAD_FILE_CHOICES}, "
                     f"got {on_bad_file!r}")
  report = CorpusReport() if report is None else report
  get_reader(reader)
  pairs = reader_globs(paths, reader)
  if not pairs:
    expand_globs(paths, config_key)   # raises the "is empty" error
  plan = [(get_reader(name), expand_globs(pattern, config_key)) for name, pattern in pairs]
  count = 0
  seen = set()
  for read, files in plan:
    for path in files:
      if path in seen:
        continue
      seen.add(path)
      with open(path, "rb") as f:
        data = f.read()
      entry = FileReport(path, bytes=len(data))
      report.files.append(entry)
      try:
        text, entry.replaced = decode_text(data, path)
      except BadFileError as e:
        if on_bad_file == "error":
          raise BadFileError(f"{config_key}: {e}; remove it from the globs, convert it to UTF-8, "
                             f"or set config.data.corpus.on_bad_file=skip") from None
        entry.skipped = str(e)
        continue
      for doc in read(text, doc_separator=doc_separator,
                      max_sentences_per_doc=max_sentences_per_doc):
        entry.documents += 1
        count += 1
        yield doc
  if report.skipped:
    names = ", ".join(f.path for f in report.skipped[:3])
    logging.warning("%s: skipped %d binary/undecodable file(s) of %d: %s%s", config_key,
                    len(report.skipped), len(report.files), names,
                    " ..." if len(report.skipped) > 3 else "")
  if count == 0:
    raise ValueError(f"{config_key}: {paths!r} holds no document (reader {reader!r})")
