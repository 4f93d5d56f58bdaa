"""ELECTRA (Clark et al., 2020): a generator (small MLM) and a discriminator sharing embeddings.

Both networks are BERT's post-LN encoder without a pooler, fed by token /
position / segment embeddings of width embedding_size E, projected to the
network's hidden size H by `embeddings_project` when E != H (google-research/
electra model/modeling.py; Hugging Face ElectraModel).

  discriminator head  dense H -> H, hidden_act, dense H -> 1: one logit per token
                      ("replaced" when > 0)            (HF ElectraDiscriminatorPredictions)
  generator head      dense H -> E, GELU, LN, tied decoder E -> V + bias
                      (BERT's MLM head at width E)     (HF ElectraGeneratorPredictions +
                                                       generator_lm_head)

ElectraPretrainingModel holds both networks with ONE embeddings module (word,
position and token-type tables and their LayerNorm), as the released code does
(`untied_generator_embeddings=False`: both networks read the 'electra/embeddings'
scope); each network keeps its own embeddings_project. generator_config() derives
the generator from the discriminator as the released get_generator_config does:
hidden size round(H * fraction), layers round(L * layers_fraction), FFN 4x its
hidden size, max(1, hidden // 64) heads.

Contract (Hugging Face names):
  ElectraConfig                   fields as BertConfig + embedding_size, pretraining_head
                                  ('discriminator' -> ElectraForPreTraining, 'generator' ->
                                  ElectraForMaskedLM: what a converter or export builds)
  ElectraModel(config)            __call__(input_ids, attention_mask=None, token_type_ids=None,
                                  deterministic=True) -> {last_hidden_state [B, L, H]}
  ElectraForPreTraining(config)   ... -> + logits [B, L] (replaced-token logits)
  ElectraForMaskedLM(config)      ... masked_lm_positions=None -> + logits [B, P, V] or [B, L, V]
  ElectraPretrainingModel(config, generator_config)
      generator(input_ids, attention_mask, token_type_ids, masked_lm_positions, deterministic)
          -> MLM logits [B, P, V];
      discriminator(input_ids, attention_mask, token_type_ids, deterministic) -> logits [B, L]
  split_pretraining_params(params) -> (discriminator params, generator params) in the
      layouts of ElectraForPreTraining / ElectraForMaskedLM; join_pretraining_params inverts it.
"""
import dataclasses
from typing import Any, Dict, Mapping, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from plm_jax.models.config_base import ModelConfig
from plm_jax.layers import common
from plm_jax.layers.attention import padding_mask_bias
from plm_jax.layers.embeddings import TextEmbeddings
from plm_jax.layers.mlp import dense
from plm_jax.layers.transformer import Encoder
from plm_jax.models.bert import BertConfig, BertMlmHead, gather_positions

PRETRAINING_HEADS = ("discriminator", "generator")


@dataclasses.dataclass(frozen=True)
class ElectraConfig(ModelConfig):
  vocab_size: int = 30522
  embedding_size: int = 128
  hidden_size: int = 256
  num_layers: int = 12
  num_heads: int = 4
  intermediate_size: int = 1024
  hidden_act: str = "gelu"
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  hidden_dropout_rate: float = 0.1
  attention_dropout_rate: float = 0.1
  initializer_range: float = 0.02
  dtype: str = "float32"
  scan_layers: bool = False
  remat_policy: str = "none"
  fused_ops: bool = True
  check_inputs: bool = False
  # Which pretraining head a converter / export pairs with this network: 'discriminator'
  # (ElectraForPreTraining) or 'generator' (ElectraForMaskedLM). The backbone ignores it.
  pretraining_head: str = "discriminator"


def generator_config(disc: ElectraConfig, hidden_fraction: float = 0.25,
                     layers_fraction: float = 1.0, num_heads: int = 0) -> ElectraConfig:
  """The generator for discriminator `disc` (released get_generator_config): hidden
  round(H * hidden_fraction), layers round(L * layers_fraction), FFN 4x hidden, heads
  max(1, hidden // 64) unless num_heads > 0; same embeddings (E, vocabulary, positions)."""
  hidden = int(round(disc.hidden_size * hidden_fraction))
  layers = int(round(disc.num_layers * layers_fraction))
  if hidden <= 0 or layers <= 0:
    raise ValueError(f"generator of hidden size {hidden} and {layers} layers (fractions "
                     f"{hidden_fraction}, {layers_fraction} of {disc.hidden_size}, "
                     f"{disc.num_layers}): both must be >= 1")
  heads = num_heads if num_heads > 0 else max(1, hidden // 64)
  if hidden % heads:
    raise ValueError(f"generator hidden size {hidden} is not divisible by its {heads} heads")
  return disc.replace(hidden_size=hidden, num_layers=layers, intermediate_size=4 * hidden,
                      num_heads=heads, pretraining_head="generator")


def make_embeddings(cfg: ElectraConfig, name: Optional[str] = None) -> TextEmbeddings:
  return TextEmbeddings(
      vocab_size=cfg.vocab_size, hidden_size=cfg.embedding_size,
      max_position_embeddings=cfg.max_position_embeddings,
      type_vocab_size=cfg.type_vocab_size, layer_norm_eps=cfg.layer_norm_eps,
      dropout_rate=cfg.hidden_dropout_rate, initializer_range=cfg.initializer_range,
      dtype=common.get_dtype(cfg.dtype), fused_ops=cfg.fused_ops,
      check_inputs=cfg.check_inputs, name=name)


class ElectraModel(nn.Module):
  """Backbone: embeddings (width E) [-> embeddings_project E -> H] -> encoder. No pooler.

  Params: embeddings/... (unless `shared_embeddings`, a TextEmbeddings created by the
  caller, whose params live where it was created), embeddings_project (E != H), encoder.
  """
  config: ElectraConfig
  shared_embeddings: Optional[nn.Module] = None

  def setup(self):
    cfg = self.config
    if self.shared_embeddings is None:
      self.embeddings = make_embeddings(cfg)
    if cfg.embedding_size != cfg.hidden_size:
      self.embeddings_project = dense(cfg.hidden_size, (None, "embed"), cfg.initializer_range,
                                      common.get_dtype(cfg.dtype), "embeddings_project")
    self.encoder = Encoder(cfg)

  def _embeddings(self) -> TextEmbeddings:
    return self.embeddings if self.shared_embeddings is None else self.shared_embeddings

  def __call__(self, input_ids: jax.Array, attention_mask: Optional[jax.Array] = None,
               token_type_ids: Optional[jax.Array] = None,
               deterministic: bool = True) -> Dict[str, jax.Array]:
    """input_ids/attention_mask/token_type_ids [batch, length] -> {last_hidden_state
    [batch, length, H]} float32."""
    cfg = self.config
    x = self._embeddings()(input_ids, token_type_ids, deterministic=deterministic)  # [B, L, E]
    if cfg.embedding_size != cfg.hidden_size:
      x = self.embeddings_project(x).astype(jnp.float32)                          # [B, L, H]
    x = self.encoder(x, padding_mask_bias(attention_mask), deterministic=deterministic)
    return {"last_hidden_state": x}

  def attend(self, query: jax.Array) -> jax.Array:
    """Tied decoder: [..., E] -> [..., vocab]."""
    return self._embeddings().attend(query)


class ElectraDiscriminatorHead(nn.Module):
  """dense H -> H, hidden_act, dense H -> 1. Params: dense, dense_prediction."""
  config: ElectraConfig

  @nn.compact
  def __call__(self, hidden: jax.Array) -> jax.Array:
    """hidden [batch, length, H] -> logits [batch, length] float32."""
    cfg = self.config
    dtype = common.get_dtype(cfg.dtype)
    h = dense(cfg.hidden_size, ("embed", "mlp"), cfg.initializer_range, dtype, "dense")(hidden)
    h = common.activation(cfg.hidden_act, cfg.fused_ops)(h)
    logits = dense(1, ("mlp", None), cfg.initializer_range, dtype, "dense_prediction")(h)
    return logits[..., 0].astype(jnp.float32)


def _mlm_head_config(cfg: ElectraConfig) -> BertConfig:
  """BERT's MLM head at width E: transform H -> E, GELU (HF's generator head: always GELU),
  LN over E, tied decoder E -> V."""
  return BertConfig(vocab_size=cfg.vocab_size, hidden_size=cfg.embedding_size,
                    hidden_act="gelu", layer_norm_eps=cfg.layer_norm_eps,
                    initializer_range=cfg.initializer_range, dtype=cfg.dtype,
                    fused_ops=cfg.fused_ops)


class ElectraForPreTraining(nn.Module):
  """ElectraModel ('electra') + replaced-token head ('discriminator_predictions')."""
  config: ElectraConfig

  def setup(self):
    self.electra = ElectraModel(self.config)
    self.discriminator_predictions = ElectraDiscriminatorHead(self.config)

  def __call__(self, input_ids: jax.Array, attention_mask: Optional[jax.Array] = None,
               token_type_ids: Optional[jax.Array] = None,
               deterministic: bool = True) -> Dict[str, jax.Array]:
    out = self.electra(input_ids, attention_mask, token_type_ids, deterministic=deterministic)
    return dict(out, logits=self.discriminator_predictions(out["last_hidden_state"]))


class ElectraForMaskedLM(nn.Module):
  """ElectraModel ('electra') + MLM head ('generator_predictions', tied decoder + bias)."""
  config: ElectraConfig

  def setup(self):
    self.electra = ElectraModel(self.config)
    self.generator_predictions = BertMlmHead(_mlm_head_config(self.config))

  def __call__(self, input_ids: jax.Array, attention_mask: Optional[jax.Array] = None,
               token_type_ids: Optional[jax.Array] = None,
               masked_lm_positions: Optional[jax.Array] = None,
               deterministic: bool = True) -> Dict[str, jax.Array]:
    out = self.electra(input_ids, attention_mask, token_type_ids, deterministic=deterministic)
    hidden = out["last_hidden_state"]
    if masked_lm_positions is not None:
      hidden = gather_positions(hidden, masked_lm_positions)  # [batch, P, H]
    return dict(out, logits=self.generator_predictions(hidden, self.electra.attend))


class ElectraPretrainingModel(nn.Module):
  """Generator + discriminator over one shared embeddings module.

  Params: embeddings/... (shared), generator/{embeddings_project, encoder},
  generator_predictions/..., discriminator/{embeddings_project, encoder},
  discriminator_predictions/....
  """
  config: ElectraConfig            # the discriminator
  generator_config: ElectraConfig

  def setup(self):
    cfg, gen = self.config, self.generator_config
    if (gen.embedding_size, gen.vocab_size, gen.max_position_embeddings, gen.type_vocab_size) != (
        cfg.embedding_size, cfg.vocab_size, cfg.max_position_embeddings, cfg.type_vocab_size):
      raise ValueError("ElectraPretrainingModel: the generator and discriminator share "
                       "embeddings, so their embedding_size, vocab_size, "
                       "max_position_embeddings and type_vocab_size must be equal")
    self.embeddings = make_embeddings(cfg)
    self.generator = ElectraModel(gen, shared_embeddings=self.embeddings)
    self.generator_predictions = BertMlmHead(_mlm_head_config(gen))
    self.discriminator = ElectraModel(cfg, shared_embeddings=self.embeddings)
    self.discriminator_predictions = ElectraDiscriminatorHead(cfg)

  def generate(self, input_ids, attention_mask, token_type_ids, masked_lm_positions,
               deterministic: bool = True) -> jax.Array:
    """Masked inputs -> generator MLM logits [batch, P, vocab] at masked_lm_positions."""
    hidden = self.generator(input_ids, attention_mask, token_type_ids,
                            deterministic=deterministic)["last_hidden_state"]
    hidden = gather_positions(hidden, masked_lm_positions)                  # [B, P, H_g]
    return self.generator_predictions(hidden, self.generator.attend)

  def discriminate(self, input_ids, attention_mask, token_type_ids,
                   deterministic: bool = True) -> jax.Array:
    """Corrupted inputs -> replaced-token logits [batch, length]."""
    hidden = self.discriminator(input_ids, attention_mask, token_type_ids,
                                deterministic=deterministic)["last_hidden_state"]
    return self.discriminator_predictions(hidden)

  def __call__(self, input_ids, attention_mask, token_type_ids, masked_lm_positions,
               deterministic: bool = True) -> Tuple[jax.Array, jax.Array]:
    """Both networks on the same inputs (used to initialise): (MLM logits, RTD logits)."""
    return (self.generate(input_ids, attention_mask, token_type_ids, masked_lm_positions,
                          deterministic),
            self.discriminate(input_ids, attention_mask, token_type_ids, deterministic))


_NETWORKS = (("discriminator", "discriminator_predictions"),
             ("generator", "generator_predictions"))


def split_pretraining_params(params: Mapping) -> Tuple[Dict, Dict]:
  """ElectraPretrainingModel params -> (ElectraForPreTraining params, ElectraForMaskedLM
  params), each with its own reference to the shared embeddings."""
  out = []
  for network, head in _NETWORKS:
    backbone = dict(params[network])
    backbone["embeddings"] = params["embeddings"]
    out.append({"electra": backbone, head: params[head]})
  return out[0], out[1]


def join_pretraining_params(discriminator: Mapping, generator: Mapping) -> Dict:
  """Inverse of split_pretraining_params. The two networks' embeddings must be equal (a
  one-line ValueError naming the first differing table otherwise)."""
  shared = discriminator["electra"]["embeddings"]
  flat_d = jax.tree_util.tree_flatten_with_path(shared)[0]
  flat_g = dict(jax.tree_util.tree_flatten_with_path(generator["electra"]["embeddings"])[0])
  if len(flat_d) != len(flat_g):
    raise ValueError("generator and discriminator embeddings have different parameters")
  for path, value in flat_d:
    other = flat_g.get(path)
    if other is None or np.shape(other) != np.shape(value) or not np.array_equal(
        np.asarray(other), np.asarray(value)):
      name = "/".join(str(getattr(k, "key", k)) for k in path)
      raise ValueError(f"embeddings/{name} differs between the generator and the "
                       f"discriminator; ELECTRA pretraining shares the embeddings")
  out: Dict[str, Any] = {"embeddings": shared}
  for (network, head), params in zip(_NETWORKS, (discriminator, generator)):
    out[network] = {k: v for k, v in params["electra"].items() if k != "embeddings"}
    out[head] = params[head]
  return out
