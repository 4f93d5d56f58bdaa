"""Declarative name tables for weight conversion, and the engine that applies them.

A `Rule` pairs a Hugging Face tensor name template with a flax param path
template and a `Transform` (a pair of small functions, one per direction).
Templates hold named placeholders: '{layer}' matches a layer index (digits);
any other '{name}' (e.g. '{stack}' for T5's encoder/decoder, '{proj}') matches
one name component ([A-Za-z0-9_]+, no '.' or '/'). What a placeholder matched on
one side fills the same placeholder on the other side, e.g.
  Rule("{stack}.block.{layer}.layer.0.SelfAttention.{proj}.weight",
       "{stack}/layers_{layer}/attention/{proj}/kernel", TRANSPOSE)
A placeholder repeated inside one template must match the same text each time.
Rule kinds:
  param   the tensor is this flax param (after transform.to_flax)
  tied    the tensor duplicates another flax param (e.g. a tied decoder): on
          import it must equal that param (or fills it when it is absent);
          it is not written on export
  ignore  a non-parameter buffer (position_ids ...): skipped on import, never written
The engine fails loudly: every HF tensor must match a rule, and every
expected flax param must be filled with the right shape.
"""
import dataclasses
import functools
import re
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

FlatParams = Dict[str, np.ndarray]  # '/'-joined flax path -> array


@dataclasses.dataclass(frozen=True)
class Transform:
  """to_flax(hf_array, ctx) and to_hf(flax_array, ctx); ctx holds sizes (e.g. num_heads)."""
  name: str
  to_flax: Callable[[np.ndarray, Mapping], np.ndarray]
  to_hf: Callable[[np.ndarray, Mapping], np.ndarray]


IDENTITY = Transform("identity", lambda x, c: x, lambda x, c: x)
# torch Linear weight [out, in] <-> flax Dense kernel [in, out].
TRANSPOSE = Transform("transpose", lambda x, c: x.T, lambda x, c: x.T)
# [heads*head_dim, embed] (torch) <-> [embed, heads, head_dim] (flax q/k/v kernel).
HEADS_IN_KERNEL = Transform(
    "heads_in_kernel",
    lambda x, c: x.T.reshape(x.shape[1], c["num_heads"], -1),
    lambda x, c: x.reshape(x.shape[0], -1).T)
# [heads*head_dim] <-> [heads, head_dim] (flax q/k/v bias).
HEADS_BIAS = Transform(
    "heads_bias",
    lambda x, c: x.reshape(c["num_heads"], -1),
    lambda x, c: x.reshape(-1))
# [embed, heads*head_dim] (torch output dense) <-> [heads, head_dim, embed] (flax out kernel).
HEADS_OUT_KERNEL = Transform(
    "heads_out_kernel",
    lambda x, c: x.T.reshape(c["num_heads"], -1, x.shape[0]),
    lambda x, c: x.reshape(-1, x.shape[-1]).T)


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_LAYER = r"\d+"
_COMPONENT = r"[A-Za-z0-9_]+"


def placeholders(template: str) -> frozenset:
  """The placeholder names of a template: 'a.{layer}.{proj}' -> {'layer', 'proj'}."""
  return frozenset(_PLACEHOLDER.findall(template))


@functools.lru_cache(maxsize=None)
def _compile(template: str) -> "re.Pattern":
  pattern, seen, pos = [], set(), 0
  for m in _PLACEHOLDER.finditer(template):
    pattern.append(re.escape(template[pos:m.start()]))
    name = m.group(1)
    if name in seen:
      pattern.append(f"(?P={name})")
    else:
      seen.add(name)
      pattern.append(f"(?P<{name}>{_LAYER if name == 'layer' else _COMPONENT})")
    pos = m.end()
  pattern.append(re.escape(template[pos:]))
  return re.compile("".join(pattern))


@dataclasses.dataclass(frozen=True)
class Rule:
  hf: str
  flax: Optional[str] = None
  transform: Transform = IDENTITY
  kind: str = "param"  # param | tied | ignore

  def __post_init__(self):
    if self.kind not in ("param", "tied", "ignore"):
      raise ValueError(f"Rule {self.hf}: unknown kind {self.kind!r}")
    if (self.flax is None) != (self.kind == "ignore"):
      raise ValueError(f"Rule {self.hf}: kind {self.kind!r} and flax path {self.flax!r} disagree")
    if self.flax is None:
      return
    hf, fl = placeholders(self.hf), placeholders(self.flax)
    # Import fills the flax side from the HF match; export ('param' only) the reverse.
    if not fl <= hf or (self.kind == "param" and hf != fl):
      raise ValueError(f"Rule {self.hf} -> {self.flax}: placeholders differ "
                       f"({sorted(hf)} vs {sorted(fl)})")


def _match(template: str, name: str) -> Optional[Dict[str, str]]:
  """The placeholder values of `name` against `template`, or None."""
  m = _compile(template).fullmatch(name)
  return m.groupdict() if m else None


def _fill(template: str, groups: Mapping[str, str]) -> str:
  return template.format(**groups)


def mlm_head_rules(hf: str, flax: str, word_embeddings: str, dense: str = "dense",
                   layer_norm: str = "LayerNorm", bias: Optional[str] = None,
                   decoder: Optional[str] = "decoder") -> List[Rule]:
  """The BERT-style MLM head: dense transform, LayerNorm, output bias, decoder tied to embeddings.

  hf / flax: the head's prefixes ('cls.predictions.' / 'mlm_head/'), the flax side always
  transform / layer_norm / bias; dense / layer_norm / decoder: HF names under hf; bias: the
  output bias's whole HF name (default hf + 'bias'); decoder=None leaves out the tied decoder
  rules; word_embeddings: the flax embedding path the decoder weight is tied to.
  """
  bias = bias or f"{hf}bias"
  rules = [
      Rule(f"{hf}{dense}.weight", f"{flax}transform/kernel", TRANSPOSE),
      Rule(f"{hf}{dense}.bias", f"{flax}transform/bias"),
      Rule(f"{hf}{layer_norm}.weight", f"{flax}layer_norm/scale"),
      Rule(f"{hf}{layer_norm}.bias", f"{flax}layer_norm/bias"),
      Rule(bias, f"{flax}bias"),
  ]
  if decoder:
    rules += [Rule(f"{hf}{decoder}.weight", word_embeddings, kind="tied"),
              Rule(f"{hf}{decoder}.bias", f"{flax}bias", kind="tied")]
  return rules

def find_rule(rules: Sequence[Rule], name: str, side: str,
              kinds: Sequence[str] = ("param", "tied", "ignore")
              ) -> Optional[Tuple[Rule, Dict[str, str]]]:
  """The first rule of `kinds` whose `side` ('hf' or 'flax') template matches `name`."""
  for rule in rules:
    template = getattr(rule, side)
    if template is None or rule.kind not in kinds:
      continue
    groups = _match(template, name)
    if groups is not None:
      return rule, groups
  return None


class ConversionError(ValueError):
  """A checkpoint that does not fit the table (unmapped, missing, wrong shape, untied)."""


def _listing(names: Iterable[str], limit: int = 20) -> str:
  names = sorted(names)
  more = f" ... (+{len(names) - limit} more)" if len(names) > limit else ""
  return ", ".join(names[:limit]) + more


def hf_to_flax(tensors: Mapping[str, np.ndarray], rules: Sequence[Rule],
               expected: Mapping[str, Tuple[int, ...]], ctx: Mapping,
               source: str = "checkpoint", optional: Iterable[str] = ()) -> FlatParams:
  """Applies `rules` to HF `tensors`; returns the params in `expected` (path -> shape).

  Every expected path must be filled, except those in `optional` (the caller fills them).
  """
  out: FlatParams = {}
  unmapped, tied = [], []
  for name in sorted(tensors):
    found = find_rule(rules, name, "hf")
    if found is None:
      unmapped.append(name)
      continue
    rule, groups = found
    if rule.kind == "ignore":
      continue
    path = _fill(rule.flax, groups)
    raw = np.asarray(tensors[name])
    if not np.issubdtype(raw.dtype, np.floating):
      raise ConversionError(f"{source}: tensor {name} has dtype {raw.dtype}; parameters must be "
                            f"floating point (quantized checkpoints are not supported)")
    value = np.asarray(rule.transform.to_flax(raw, ctx))
    if rule.kind == "tied":
      tied.append((name, path, value))
      continue
    if path in out:
      raise ConversionError(f"{source}: two tensors map to flax param {path} (second: {name})")
    out[path] = value
  for name, path, value in tied:
    if path not in out:
      out[path] = value
    elif out[path].shape != value.shape or not np.array_equal(out[path], value):
      raise ConversionError(
          f"{source}: tensor {name} should be tied to (equal) flax param {path} but differs; "
          "untied weights cannot be represented by this model")
  problems = []
  if unmapped:
    problems.append(f"HF tensors not mapped by any rule: {_listing(unmapped)}")
  unexpected = sorted(set(out) - set(expected))
  if unexpected:
    problems.append(f"tensors map to params this model does not have: {_listing(unexpected)}")
  missing = sorted(set(expected) - set(out) - set(optional))
  if missing:
    problems.append(f"flax params not filled by the checkpoint: {_listing(missing)}")
  bad = [f"{p} {out[p].shape} != expected {tuple(expected[p])}" for p in sorted(set(out) & set(expected))
         if tuple(out[p].shape) != tuple(expected[p])]
  if bad:
    problems.append(f"shape mismatches: {_listing(bad)}")
  if problems:
    raise ConversionError(f"{source}: " + "; ".join(problems))
  return out


def flax_to_hf(params: FlatParams, rules: Sequence[Rule], ctx: Mapping) -> Dict[str, np.ndarray]:
  """Inverse direction: every flax param must match a 'param' rule; tied/ignored are not written."""
  out, unmapped = {}, []
  for path in sorted(params):
    found = find_rule(rules, path, "flax", kinds=("param",))
    if found is None:
      unmapped.append(path)
      continue
    rule, groups = found
    out[_fill(rule.hf, groups)] = np.ascontiguousarray(rule.transform.to_hf(np.asarray(params[path]), ctx))
  if unmapped:
    raise ConversionError(f"flax params with no export rule: {_listing(unmapped)}")
  return out


# ---- nested <-> flat params, scanned layer stacks -------------------------------------

def flatten(tree: Mapping, prefix: str = "") -> FlatParams:
  """{'a': {'b': x}} -> {'a/b': x}."""
  flat = {}
  for k, v in tree.items():
    path = f"{prefix}/{k}" if prefix else str(k)
    if isinstance(v, Mapping):
      flat.update(flatten(v, path))
    else:
      flat[path] = v
  return flat


def unflatten(flat: Mapping[str, np.ndarray]) -> Dict:
  tree: Dict = {}
  for path, v in flat.items():
    node = tree
    *parents, leaf = path.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = v
  return tree


def unstack_layers(flat: Mapping[str, np.ndarray], stacks: Mapping[str, int]) -> FlatParams:
  """'{stack}/layers/x' [n, ...] -> '{stack}/layers_{i}/x' (scan_layers -> unrolled).

  `stacks` maps each layer stack's path (e.g. {'encoder': 6, 'decoder': 6}) to its
  number of layers; paths under no stack pass through unchanged.
  """
  out = {}
  for path, v in flat.items():
    for stack, num_layers in stacks.items():
      prefix = f"{stack}/layers/"
      if path.startswith(prefix):
        if v.shape[0] != num_layers:
          raise ConversionError(f"{path}: leading axis {v.shape[0]} != num_layers {num_layers}")
        for i in range(num_layers):
          out[f"{stack}/layers_{i}/{path[len(prefix):]}"] = np.asarray(v[i])
        break
    else:
      out[path] = v
  return out


def stack_layers(flat: Mapping[str, np.ndarray], stacks: Mapping[str, int]) -> FlatParams:
  """'{stack}/layers_{i}/x' -> '{stack}/layers/x' [n, ...] (unrolled -> scan_layers)."""
  patterns = [(stack, n, re.compile(re.escape(stack) + r"/layers_(\d+)/(.*)$"))
              for stack, n in stacks.items()]
  groups: Dict[Tuple[str, str], List] = {}
  out = {}
  for path, v in flat.items():
    for stack, num_layers, pattern in patterns:
      m = pattern.match(path)
      if m:
        i = int(m.group(1))
        if i >= num_layers:
          raise ConversionError(f"{path}: layer {i} beyond num_layers {num_layers}")
        groups.setdefault((stack, m.group(2)), [None] * num_layers)[i] = v
        break
    else:
      out[path] = v
  for (stack, rest), values in groups.items():
    if any(v is None for v in values):
      raise ConversionError(f"{stack}/layers_*/{rest}: some of {len(values)} layers are missing")
    out[f"{stack}/layers/{rest}"] = np.stack([np.asarray(v) for v in values])
  return out
