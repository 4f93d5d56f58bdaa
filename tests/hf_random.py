"""Random, non-trivial weights for the transformers models that the parity tests build.

A freshly initialised HF model has LayerNorm scales of exactly 1 and biases of exactly 0,
which would hide a converter that drops or swaps them. These helpers move every parameter
away from its initial value, in place, drawing from torch's global generator (seed it
first with torch.manual_seed for a reproducible model).
"""


def _norm_param_ids(model):
  """ids of the parameters of every LayerNorm-like module (nn.LayerNorm, T5LayerNorm, ...)."""
  ids = set()
  for module in model.modules():
    if "LayerNorm" in type(module).__name__:
      ids.update(id(p) for p in module.parameters(recurse=False))
  return ids


def randomize_(model, scale: float = 0.2):
  """LayerNorm scales ~ 1 + scale * N(0, 1); every other parameter ~ N(0, scale**2)."""
  import torch  # pylint: disable=import-outside-toplevel
  norms = _norm_param_ids(model)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if id(p) in norms and name.endswith("weight"):
        p.copy_(1 + scale * torch.randn_like(p))
      else:
        p.normal_(0.0, scale)
  return model


def perturb_(model, scale: float = 0.1, everything: bool = False):
  """Adds scale * N(0, 1) to the LayerNorm parameters and the biases (to every parameter
  with everything=True), keeping the rest of HF's initialisation."""
  import torch  # pylint: disable=import-outside-toplevel
  norms = _norm_param_ids(model)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if everything or id(p) in norms or name.endswith("bias"):
        p.add_(scale * torch.randn_like(p))
  return model
