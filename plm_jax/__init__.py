"""plm_jax: landmark pretrained language models in JAX/Flax."""
__version__ = "0.1.0"


def load_pretrained(path, **kwargs):
  """Imports a Hugging Face checkpoint directory: returns (model, params).

  See plm_jax.convert.hf_bert.load_pretrained for the arguments.
  """
  from plm_jax.convert.hf_bert import load_pretrained as _load  # pylint: disable=import-outside-toplevel
  return _load(path, **kwargs)
