"""Random-weight transformers T5 models for the T5 tests (parity, decoding)."""
import torch
import transformers

from plm_jax.convert import hf_io
import hf_random


def hf_t5(kw, seed=0):
  """A transformers T5 with random, non-trivial weights (untied lm_head for v1.1)."""
  torch.manual_seed(seed)
  model = transformers.T5ForConditionalGeneration(transformers.T5Config(
      **kw, dropout_rate=0.0, attn_implementation="eager")).eval()
  hf_random.randomize_(model)
  if not kw["tie_word_embeddings"]:
    # transformers 5 ties T5's lm_head in memory; give it its own weights (v1.1).
    with torch.no_grad():
      model.lm_head.weight = torch.nn.Parameter(0.2 * torch.randn_like(model.shared.weight))
  return model


def save_hf(model, path):
  """The model's tensors with the lm_head as its own tensor when it is untied."""
  tensors = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
  config = model.config.to_dict()
  config["tie_word_embeddings"] = config["scale_decoder_outputs"]
  hf_io.write_checkpoint(str(path), config, tensors)
  return tensors


def hf_generate(model, ids, mask, max_new_tokens, **kwargs):
  """transformers' `generate` on int arrays [B, S] -> numpy [B or B * num_return_sequences,
  1 + up to max_new_tokens] (start token first; stops early when every row ended), or
  generate's output object with return_dict_in_generate=True.

  transformers 5 sizes generate's default cache from `num_hidden_layers`, which T5 maps to
  the encoder's `num_layers`: with more decoder than encoder layers the cache has too few
  layers and generate raises IndexError. A cache built without a config (its layers added
  as the decoder reaches them) avoids that.
  """
  cache = transformers.EncoderDecoderCache(transformers.DynamicCache(),
                                           transformers.DynamicCache())
  kwargs.setdefault("decoder_start_token_id", 0)
  with torch.no_grad():
    out = model.generate(input_ids=torch.tensor(ids, dtype=torch.long),
                         attention_mask=torch.tensor(mask, dtype=torch.long),
                         max_new_tokens=max_new_tokens, do_sample=False,
                         cache=cache, **kwargs)
  return out if kwargs.get("return_dict_in_generate") else out.numpy()
