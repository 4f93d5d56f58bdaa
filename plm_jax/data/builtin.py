"""The built-in default corpus: synthetic English-like stories, no third-party text.

`python main.py` with no flags trains on this, so a fresh checkout runs end to
end without downloads. Documents are generated procedurally from the small
hand-written lexicon and grammar below, deterministically from (seed, index):

  - each document has one topic (farm, sea, kitchen, ...) which supplies most
    of its nouns, verbs, adjectives and places, and one protagonist;
  - sentences refer back to the previous sentence's object ("Then she washed
    the boat ..."), so consecutive sentences are coherent.

So masked tokens are predictable from context (topic words, agreement,
templates) and next-sentence prediction is learnable (a random segment comes
from another document, usually of another topic, with another protagonist).

The matching WordPiece vocabulary (`write_vocab`) holds the specials, every
lexicon word and punctuation mark, and the suffix pieces ##s ##ed ##d ##ing
##ly, so inflected forms ('walked' -> walk ##ed) exercise whole-word masking.
"""
from __future__ import annotations

import os
import random
import tempfile
from typing import Dict, Iterator, List

NUM_DOCUMENTS = 4000

# topic -> (nouns, verbs (regular, base form), adjectives, places)
TOPICS: Dict[str, tuple] = {
    "farm": ("cow horse goat sheep pig farmer field barn tractor fence seed apple".split(),
             "plant feed milk plough harvest water pull clean".split(),
             "muddy green quiet hungry tall ripe".split(),
             "farm barn meadow orchard".split()),
    "sea": ("boat sail wave fish sailor captain anchor net shell island gull rope".split(),
            "row steer fish anchor sail pull wash watch".split(),
            "salty blue windy deep calm rough".split(),
            "harbor beach coast island".split()),
    "kitchen": ("cook bread soup pot pan knife onion butter egg oven spoon cake".split(),
                "bake cook stir boil slice taste roast mix".split(),
                "hot sweet fresh warm spicy crisp".split(),
                "kitchen bakery cafe market".split()),
    "forest": ("tree fox wolf owl deer bear branch leaf mushroom river path hunter".split(),
               "climb hunt follow gather hide track listen watch".split(),
               "dark wild old silent tall green".split(),
               "forest woods valley hill".split()),
    "school": ("teacher student book lesson pencil desk map letter number class test bell".split(),
               "learn read count spell listen answer test paint".split(),
               "clever young quiet busy careful bright".split(),
               "school library classroom garden".split()),
    "space": ("rocket planet star moon pilot engine signal comet robot orbit camera crater".split(),
              "launch land orbit signal repair explore record scan".split(),
              "bright distant cold silver strange fast".split(),
              "station moon base ship".split()),
    "city": ("bus car street tower shop driver bridge lamp crowd train ticket clock".split(),
             "drive walk park cross wait shop open visit".split(),
             "busy loud crowded modern bright narrow".split(),
             "city square station avenue".split()),
    "music": ("song drum piano violin singer band guitar note stage tune choir concert".split(),
              "play sing practice tune perform listen clap dance".split(),
              "loud soft happy slow lovely gentle".split(),
              "hall theater studio club".split()),
}

NAMES = ("anna ben clara david emma felix grace henry iris jack lucy max nora oliver "
         "paul rosa sam tom vera will").split()
GENERAL_NOUNS = "friend day morning evening bag box door window hat coat dog cat".split()
FUNCTION_WORDS = ("the a and with near at in on to of was were is it this that then later "
                  "after soon again every very story about day he she they their his her "
                  "there we all some one two three because when while but so also still").split()
PUNCTUATION = list(".,!?;:'\"-()")
SUFFIXES = ["##s", "##ed", "##d", "##ing", "##ly"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _past(verb: str) -> str:
  return verb + ("d" if verb.endswith("e") else "ed")


def _ing(verb: str) -> str:
  return verb + "ing"


def _plural(noun: str) -> str:
  return noun if noun in ("sheep", "fish", "deer") else noun + "s"


def vocab_tokens() -> List[str]:
  """The builtin WordPiece vocabulary, in id order ([PAD] = 0)."""
  words = set(NAMES) | set(GENERAL_NOUNS) | set(FUNCTION_WORDS)
  for nouns, verbs, adjs, places in TOPICS.values():
    words |= set(nouns) | set(verbs) | set(adjs) | set(places)
  return SPECIALS + sorted(words) + PUNCTUATION + SUFFIXES


def write_vocab(directory: str) -> str:
  """Writes vocab.txt into `directory` (created if needed); returns its path."""
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, "vocab.txt")
  content = "\n".join(vocab_tokens()) + "\n"
  if not os.path.exists(path) or open(path, encoding="utf-8").read() != content:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(content)
    os.replace(tmp, path)   # atomic: concurrent writers never expose a half file
  return path


def default_vocab_dir() -> str:
  return os.path.join(tempfile.gettempdir(), "plm_jax_builtin_vocab")


class _Story:
  """Sentence generator for one document."""

  def __init__(self, rng: random.Random, topic: str):
    self.rng = rng
    self.nouns, self.verbs, self.adjs, self.places = TOPICS[topic]
    self.name = rng.choice(NAMES).capitalize()
    self.pronoun = rng.choice(["he", "she"])
    self.place = rng.choice(self.places)
    self.obj = self.noun()

  def noun(self) -> str:
    return self.rng.choice(self.nouns if self.rng.random() < 0.85 else GENERAL_NOUNS)

  def sentence(self) -> str:
    r, n = self.rng, self.noun()
    v, adj = r.choice(self.verbs), r.choice(self.adjs)
    templates = [
        lambda: f"{self.name} {_past(v)} the {adj} {n} .",
        lambda: f"The {_plural(n)} {_past(v)} near the {self.place} .",
        lambda: f"Then {self.pronoun} {_past(v)} the {self.obj} with a {n} .",
        lambda: f"It was a {adj} day at the {self.place} .",
        lambda: f"{self.name} was {_ing(v)} the {n} {adj}ly .",
        lambda: f"Later , the {self.obj} was {adj} and {r.choice(self.adjs)} .",
        lambda: f"{self.pronoun.capitalize()} {_past(v)} {r.choice(['one', 'two', 'three'])} "
                f"{_plural(n)} because the {self.obj} was {adj} .",
        lambda: f"When the {n} was {adj} , {self.name} {_past(v)} it again !",
    ]
    out = r.choice(templates)()
    self.obj = n
    return out


def generate_document(index: int, seed: int = 0) -> str:
  """Document `index` of the corpus for `seed`: sentences separated by '\\n'."""
  rng = random.Random(seed * 1_000_003 + index)
  topic = rng.choice(sorted(TOPICS))
  story = _Story(rng, topic)
  lines = [f"This is a story about {story.name} and the {story.place} ."]
  for _ in range(rng.randint(6, 24)):
    lines.append(story.sentence())
  return "\n".join(lines)


def iter_documents(num_documents: int = NUM_DOCUMENTS, seed: int = 0) -> Iterator[str]:
  for i in range(num_documents):
    yield generate_document(i, seed)
