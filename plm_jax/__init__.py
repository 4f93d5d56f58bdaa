"""plm_jax: landmark pretrained language models in JAX/Flax."""
__version__ = "0.1.0"


def load_pretrained(path, **kwargs):
  """Imports a Hugging Face checkpoint directory: returns (model, params).

  Dispatches on config.json's model_type through plm_jax.convert.registry (see
  registry.load_pretrained for the options: with_heads, dtype, scan_layers, seed).
  model.apply({"params": params}, input_ids=..., attention_mask=..., token_type_ids=...)
  returns a dict with the Hugging Face output names (e.g. last_hidden_state).
  """
  from plm_jax.convert.registry import load_pretrained as _load  # pylint: disable=import-outside-toplevel
  return _load(path, **kwargs)
