"""Learn ERNIE's phrase and entity lexicons from a corpus (plm_jax.data.ernie_units).

  python -m plm_jax.data.ernie_lexicon --input='../shared/data/pretrain/zh/*.txt' \\
      --phrases_out=/tmp/zh_phrases.txt --entities_out=/tmp/zh_entities.txt

phrases: adjacent jieba word pairs seen >= --phrase_min_count times with PMI >=
--phrase_min_pmi, the best --max_phrases; entities: words jieba's dictionary tags as
proper nouns (nr, ns, nt, nz) seen >= --entity_min_count times. Both one entry a line,
UTF-8, for --config.ernie.phrase_lexicon / --config.ernie.entity_lexicon. The input is
read with the plain reader (documents separated by blank lines), the first --max_chars
characters of it.
"""
from __future__ import annotations

from typing import Iterator

from absl import app, flags

from plm_jax.data import corpora, ernie_units

FLAGS = flags.FLAGS
flags.DEFINE_string("input", None, "comma-separated file globs")
flags.DEFINE_string("reader", "plain", "corpus reader (plm_jax.data.corpora)")
flags.DEFINE_string("phrases_out", "", "phrase lexicon to write (empty: none)")
flags.DEFINE_string("entities_out", "", "entity lexicon to write (empty: none)")
flags.DEFINE_integer("max_chars", 20_000_000, "read at most this many characters")
flags.DEFINE_integer("phrase_min_count", 5, "a phrase's word pair seen at least this often")
flags.DEFINE_float("phrase_min_pmi", 3.0, "a phrase's PMI at least this (natural log)")
flags.DEFINE_integer("max_phrases", 20_000, "keep the best this many phrases")
flags.DEFINE_integer("entity_min_count", 3, "an entity seen at least this often")
flags.DEFINE_integer("max_entities", 20_000, "keep the most frequent this many entities")


def _documents() -> Iterator[str]:
  total = 0
  for doc in corpora.iter_documents(FLAGS.input, FLAGS.reader, config_key="--input"):
    yield doc
    total += len(doc)
    if total >= FLAGS.max_chars:
      return


def main(argv):
  del argv
  docs = list(_documents())
  if FLAGS.phrases_out:
    phrases = ernie_units.learn_phrases(docs, FLAGS.phrase_min_count, FLAGS.max_phrases,
                                        FLAGS.phrase_min_pmi)
    ernie_units.write_lexicon(FLAGS.phrases_out, phrases)
    print(f"wrote {FLAGS.phrases_out}: {len(phrases):,} phrases")
  if FLAGS.entities_out:
    entities = ernie_units.learn_entities(docs, FLAGS.entity_min_count, FLAGS.max_entities)
    ernie_units.write_lexicon(FLAGS.entities_out, entities)
    print(f"wrote {FLAGS.entities_out}: {len(entities):,} entities")


if __name__ == "__main__":
  flags.mark_flags_as_required(["input"])
  app.run(main)
