"""One converter registry keyed by the Hugging Face `model_type`, and the generic engine.

A family plugs in by subclassing `Converter` (its rule table, config mapping and
model classes) and registering an instance:

  @registry.register
  class BertConverter(registry.Converter):
    model_type = "bert"; config_class = BertConfig; rules = RULES; ...

Built-in families live in plm_jax/convert/hf_<family>.py and are found by name
(every `hf_*` module of this package is imported on the first lookup), so adding
one never edits this file; code outside the package calls `register()` itself.

  load_pretrained(path, with_heads=None, dtype='float32', scan_layers=False, seed=0)
      HF directory -> (model, params); dispatches on config.json's model_type
      (on `architectures` only when model_type is absent)
  save_pretrained(params, model_config, hf_dir, family=None)   params -> HF directory
  get_converter(model_type) / converter_for_hf_config(hf_config, source) / registered_types()

Heads (`with_heads`): None = whatever the checkpoint holds (with only some heads,
e.g. BertForMaskedLM, as "init"); False = the backbone model, head tensors
dropped on purpose; True = the model with heads, every head tensor required;
"init" = the model with heads, head params missing from the checkpoint freshly
initialised (seed `seed`). Params under a converter's `optional_prefixes` (BERT's
pooler) are initialised fresh when absent. Fresh params are named in a warning.
"""
import dataclasses
import importlib
import os
import pkgutil
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Type, Union

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from plm_jax.convert import hf_io
from plm_jax.convert.table import (ConversionError, Rule, flatten, flax_to_hf, hf_to_flax,
                                   stack_layers, unflatten, unstack_layers)

WithHeads = Union[None, bool, str]


class Converter:
  """A family's HF <-> plm_jax conversion. Subclasses set the class attributes and the
  two config methods; everything else is the generic engine (override hooks as needed).

  Layouts: the params of `head_model_class` hold the backbone under
  `flax_backbone_prefix` (e.g. 'bert/'); backbone-only params are that subtree. HF
  names of headless checkpoints lack `hf_backbone_prefix` (e.g. 'bert.'). Tables are
  written for the full layout with unrolled layers ('.../layers_{layer}/...').
  """
  model_type: str = ""                      # HF config.json model_type (= plm_jax family name)
  architecture_prefixes: Tuple[str, ...] = ()  # HF class names, used only without model_type
  config_class: Optional[Type] = None       # frozen dataclass of the model config
  base_model_class: Optional[Type[nn.Module]] = None   # backbone (e.g. BertModel)
  head_model_class: Optional[Type[nn.Module]] = None   # backbone + heads (e.g. BertForPreTraining)
  rules: Sequence[Rule] = ()
  head_prefixes: Tuple[str, ...] = ()       # HF name prefixes of the head tensors
  # Fine-tuning task heads (XForSequenceClassification, XForQuestionAnswering): not part of
  # any model here, so dropped from every import (a fine-tuned checkpoint's backbone loads).
  task_head_prefixes: Tuple[str, ...] = ("classifier.", "qa_outputs.")
  hf_backbone_prefix: str = ""
  flax_backbone_prefix: str = ""
  flax_head_prefixes: Tuple[str, ...] = ()  # head param paths; needed when no backbone prefix
  # Full-layout param path prefixes a checkpoint may lack (e.g. BERT's pooler, absent from
  # BertForMaskedLM and BertModel(add_pooling_layer=False)): initialised fresh, with a warning.
  optional_prefixes: Tuple[str, ...] = ()
  # Full-layout param paths a checkpoint may lack (freshly initialised on import), e.g.
  # RoBERTa's pooler, which HF's RobertaForMaskedLM does not have.
  optional_params: Tuple[str, ...] = ()

  # ---- what a family provides ---------------------------------------------------------

  def config_from_hf(self, hf_config: Mapping[str, Any], source: str = "config.json") -> Any:
    """HF config dict -> model config; one-line ValueError for anything unsupported."""
    raise NotImplementedError

  def config_to_hf(self, cfg: Any, with_heads: bool = True) -> Dict[str, Any]:
    raise NotImplementedError

  def rules_for(self, cfg: Any) -> Sequence[Rule]:
    """The rule table for this model config (default: `rules`; T5 differs by tied output)."""
    del cfg
    return self.rules

  def rule_context(self, cfg: Any) -> Dict[str, Any]:
    """Sizes the transforms need (e.g. {'num_heads': ...})."""
    return {}

  def layer_stacks(self, cfg: Any) -> Dict[str, int]:
    """Full-layout path of each layer stack -> its number of layers (for scan_layers)."""
    return {}

  def rename(self, name: str) -> str:
    """Canonical HF tensor name (aliases of older checkpoints)."""
    return name

  def init_inputs(self, cfg: Any) -> Dict[str, Any]:
    return {"input_ids": jnp.zeros((1, 2), jnp.int32)}

  # ---- models and params -------------------------------------------------------------

  def model_for(self, cfg: Any, with_heads: bool) -> nn.Module:
    cls = self.head_model_class if with_heads else self.base_model_class
    if cls is None:
      raise ValueError(f"{self.model_type}: no model {'with' if with_heads else 'without'} heads")
    return cls(cfg)

  def init_params(self, cfg: Any, with_heads: bool, rng: jax.Array) -> Dict:
    return nn.unbox(self.model_for(cfg, with_heads).init(rng, **self.init_inputs(cfg))["params"])

  def _shapes(self, cfg: Any, with_heads: bool) -> Dict[str, Tuple[int, ...]]:
    """Flat full-layout path -> shape, unrolled layers."""
    cfg = replace_config(cfg, scan_layers=False)
    shapes = jax.eval_shape(lambda: self.init_params(cfg, with_heads, jax.random.key(0)))
    prefix = "" if with_heads else self.flax_backbone_prefix
    return {prefix + p: tuple(s.shape) for p, s in flatten(shapes).items()}

  def is_head_layout(self, flat: Mapping[str, Any]) -> bool:
    """Whether flat params are the head model's (else backbone-only)."""
    if self.flax_backbone_prefix:
      return any(p.startswith(self.flax_backbone_prefix) for p in flat)
    return bool(self.flax_head_prefixes) and any(p.startswith(self.flax_head_prefixes) for p in flat)

  def _to_full(self, flat: Mapping[str, Any]) -> Tuple[Dict[str, Any], bool]:
    if self.is_head_layout(flat):
      return dict(flat), True
    return {self.flax_backbone_prefix + p: v for p, v in flat.items()}, False

  def _from_full(self, flat: Mapping[str, Any], with_heads: bool) -> Dict[str, Any]:
    if with_heads:
      return dict(flat)
    n = len(self.flax_backbone_prefix)
    return {p[n:]: v for p, v in flat.items()}

  def restack(self, params: Mapping, cfg: Any, to_scan: bool) -> Dict:
    """Params between unrolled ('layers_i') and scan_layers ('layers' [n, ...]) layouts."""
    flat, heads = self._to_full(flatten(params))
    flat = (stack_layers if to_scan else unstack_layers)(flat, self.layer_stacks(cfg))
    return unflatten(self._from_full(flat, heads))

  # ---- import -------------------------------------------------------------------------

  def check_hf_config(self, hf_config: Mapping[str, Any], source: str) -> None:
    found = converter_for_hf_config(hf_config, source)
    if found.model_type != self.model_type:
      raise ValueError(f"{source}: a {found.model_type!r} checkpoint, not {self.model_type!r}")

  def _canonical_names(self, tensors: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    out, pre = {}, self.hf_backbone_prefix
    for name, value in tensors.items():
      name = self.rename(name)
      if pre and not name.startswith((pre,) + self.head_prefixes + self.task_head_prefixes):
        name = pre + name
      if name in out:
        raise ConversionError(f"checkpoint holds {name} twice (with and without the {pre!r} prefix)")
      out[name] = value
    return out

  def import_hf(self, hf_dir: str, with_heads: WithHeads = None, seed: int = 0
                ) -> Tuple[Any, Dict, bool]:
    """HF directory -> (model config, nested numpy params (unrolled), has_heads)."""
    if with_heads not in (None, True, False, "init"):
      raise ValueError(f"with_heads must be None, True, False or 'init', got {with_heads!r}")
    hf_config = hf_io.read_config(hf_dir)
    config_path = os.path.join(hf_dir, "config.json")
    self.check_hf_config(hf_config, config_path)
    try:
      cfg = self.config_from_hf(hf_config, source=config_path)
    except KeyError as e:
      raise ValueError(f"{config_path}: required key {e.args[0]!r} is missing") from None
    except TypeError as e:   # a value of the wrong type (e.g. a string size)
      raise ValueError(f"{config_path}: a value has the wrong type ({e})") from None
    tensors = self._canonical_names(hf_io.read_weights(hf_dir))
    task = sorted(n for n in tensors if n.startswith(self.task_head_prefixes))
    if task:
      logging.info("%s: task head tensors not imported: %s", hf_dir, ", ".join(task))
      tensors = {n: v for n, v in tensors.items() if n not in task}
    present = {pre for pre in self.head_prefixes if any(n.startswith(pre) for n in tensors)}
    if with_heads is None:
      # Some heads (e.g. BertForMaskedLM: MLM, no NSP): the head model, the rest fresh.
      partial = bool(present) and len(present) < len(self.head_prefixes)
      with_heads = "init" if partial else bool(present) and self.head_model_class is not None
    heads = with_heads is not False
    if not heads:
      tensors = {n: v for n, v in tensors.items() if not n.startswith(self.head_prefixes)}
    expected = self._shapes(cfg, heads)
    optional = [p for p in expected if self.optional_prefixes and p.startswith(self.optional_prefixes)]
    optional += [p for p in self.optional_params if p in expected and p not in optional]
    if with_heads == "init":
      optional += sorted(set(expected) - set(self._shapes(cfg, False)))
    flat = hf_to_flax(tensors, self.rules_for(cfg), expected, self.rule_context(cfg), source=hf_dir,
                      optional=optional)
    missing = [p for p in optional if p not in flat]
    if missing:
      flat.update(self.fresh_params(cfg, missing, seed))
      logging.warning("%s: %d parameter(s) not in the checkpoint were initialised fresh: %s%s",
                      hf_dir, len(missing), ", ".join(missing[:6]),
                      " ..." if len(missing) > 6 else "")
    return cfg, unflatten(self._from_full(flat, heads)), heads

  def fresh_params(self, cfg: Any, paths: Sequence[str], seed: int) -> Dict[str, np.ndarray]:
    """Freshly initialised values of these full-layout paths (params a checkpoint lacks).
    Default: initialise the whole head model; a family may initialise just the parts."""
    fresh = flatten(self.init_params(replace_config(cfg, scan_layers=False), True,
                                     jax.random.key(seed)))
    return {p: np.asarray(fresh[p]) for p in paths}

  def load_pretrained(self, path: str, with_heads: WithHeads = None, dtype: str = "float32",
                      scan_layers: bool = False, seed: int = 0) -> Tuple[nn.Module, Dict]:
    cfg, params, heads = self.import_hf(path, with_heads=with_heads, seed=seed)
    cfg = replace_config(cfg, dtype=dtype, scan_layers=scan_layers)
    if scan_layers:
      params = self.restack(params, cfg, to_scan=True)
    return self.model_for(cfg, heads), jax.tree_util.tree_map(jnp.asarray, params)

  # ---- export -------------------------------------------------------------------------

  def export_hf(self, params: Mapping, cfg: Any) -> Tuple[Dict[str, np.ndarray], bool]:
    """Params (head or backbone layout, unrolled or scanned) -> (HF tensors, with_heads)."""
    flat = {p: np.asarray(v, dtype=np.float32) for p, v in flatten(nn.unbox(params)).items()}
    flat, heads = self._to_full(flat)
    flat = unstack_layers(flat, self.layer_stacks(cfg))
    tensors = flax_to_hf(flat, self.rules_for(cfg), self.rule_context(cfg))
    if not heads and self.hf_backbone_prefix:
      n = len(self.hf_backbone_prefix)
      tensors = {k[n:] if k.startswith(self.hf_backbone_prefix) else k: v for k, v in tensors.items()}
    return tensors, heads

  def save_pretrained(self, params: Mapping, cfg: Any, hf_dir: str) -> None:
    """Writes config.json + model.safetensors that transformers loads (the head model's
    class for head params, the backbone's for backbone-only params)."""
    tensors, heads = self.export_hf(params, cfg)
    hf_io.write_checkpoint(hf_dir, self.config_to_hf(cfg, heads), tensors)


def replace_config(cfg: Any, **changes) -> Any:
  """dataclasses.replace with only the fields the config has; a non-default value for a
  missing field (e.g. scan_layers=True for a family without scan) is a ValueError."""
  names = {f.name for f in dataclasses.fields(cfg)}
  defaults = {"dtype": "float32", "scan_layers": False}
  for k, v in changes.items():
    if k not in names and v != defaults.get(k):
      raise ValueError(f"{type(cfg).__name__} has no field {k!r} (asked for {k}={v!r})")
  return dataclasses.replace(cfg, **{k: v for k, v in changes.items() if k in names})


# ---- the registry -------------------------------------------------------------------------

_REGISTRY: Dict[str, Converter] = {}
_BUILTINS_LOADED = False


def register(converter, replace: bool = False):
  """Registers a Converter instance (or class, instantiated); usable as a decorator.
  Returns its argument. Registering a taken model_type needs replace=True."""
  instance = converter() if isinstance(converter, type) else converter
  if (not isinstance(instance, Converter) or not instance.model_type
      or not dataclasses.is_dataclass(instance.config_class)):
    raise ValueError(f"register: {converter!r} is not a Converter with a model_type and a "
                     "dataclass config_class")
  old = _REGISTRY.get(instance.model_type)
  if old is not None and not replace and type(old) is not type(instance):
    raise ValueError(f"register: model_type {instance.model_type!r} is already registered "
                     f"by {type(old).__qualname__}")
  _REGISTRY[instance.model_type] = instance
  return converter


def unregister(model_type: str) -> None:
  _REGISTRY.pop(model_type, None)


def _load_builtins() -> None:
  global _BUILTINS_LOADED  # pylint: disable=global-statement
  if _BUILTINS_LOADED:
    return
  _BUILTINS_LOADED = True
  import plm_jax.convert as package  # pylint: disable=import-outside-toplevel
  for info in pkgutil.iter_modules(package.__path__):
    if info.name.startswith("hf_") and info.name != "hf_io":
      importlib.import_module(f"plm_jax.convert.{info.name}")


def registered_types() -> List[str]:
  _load_builtins()
  return sorted(_REGISTRY)


def get_converter(model_type: str, source: str = "plm_jax") -> Converter:
  _load_builtins()
  if model_type not in _REGISTRY:
    raise ValueError(f"{source}: model_type {model_type!r} has no converter; "
                     f"registered: {', '.join(sorted(_REGISTRY))}")
  return _REGISTRY[model_type]


def converter_for_hf_config(hf_config: Mapping[str, Any], source: str = "config.json") -> Converter:
  """The converter of `model_type`, or (without one) of the first matching architecture."""
  model_type = hf_config.get("model_type")
  if model_type:
    return get_converter(str(model_type), source)
  _load_builtins()
  archs = [str(a) for a in hf_config.get("architectures") or []]
  for conv in _REGISTRY.values():
    if conv.architecture_prefixes and any(a.startswith(conv.architecture_prefixes) for a in archs):
      return conv
  raise ValueError(f"{source}: no model_type, and architectures {archs} match no registered "
                   f"family; registered: {', '.join(sorted(_REGISTRY))}")


def converter_for_config_class(cfg: Any) -> Converter:
  _load_builtins()
  for conv in _REGISTRY.values():
    if type(cfg) is conv.config_class:
      return conv
  raise ValueError(f"no registered converter uses config class {type(cfg).__qualname__}; "
                   f"registered: {', '.join(sorted(_REGISTRY))}")


def load_pretrained(path: str, **kwargs) -> Tuple[nn.Module, Dict]:
  """HF directory -> (model, params), dispatched on config.json (see the module doc)."""
  hf_config = hf_io.read_config(path)
  conv = converter_for_hf_config(hf_config, os.path.join(path, "config.json"))
  return conv.load_pretrained(path, **kwargs)


def save_pretrained(params: Mapping, model_config: Any, hf_dir: str,
                    family: Optional[str] = None) -> None:
  """params -> HF directory; the family defaults to the one whose config class this is."""
  conv = get_converter(family) if family else converter_for_config_class(model_config)
  conv.save_pretrained(params, model_config, hf_dir)
