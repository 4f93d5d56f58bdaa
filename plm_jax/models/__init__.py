"""Model families: a registry name -> (config dataclass, pretraining module)."""
from typing import Tuple

from plm_jax.models.bert import BertConfig, BertForPreTraining, BertModel

FAMILIES = {
    "bert": (BertConfig, BertForPreTraining),
}


def get_family(name: str) -> Tuple[type, type]:
  """(ConfigClass, ModelClass) registered under `name`."""
  if name not in FAMILIES:
    raise ValueError(f"unknown model family {name!r}; known: {sorted(FAMILIES)}")
  return FAMILIES[name]


__all__ = ["BertConfig", "BertForPreTraining", "BertModel", "FAMILIES", "get_family"]
