"""Objectives: importing this package registers every built-in pretraining objective
(the fine-tuning ones: plm_jax.finetune.objectives; base.registered() loads both)."""
from plm_jax.objectives.base import Objective, get_objective, register  # noqa: F401
from plm_jax.objectives import bert_pretrain  # noqa: F401  (registers "bert_mlm_nsp")
from plm_jax.objectives import roberta_pretrain  # noqa: F401,E402  (registers "roberta_mlm")
from plm_jax.objectives import albert_pretrain  # noqa: F401,E402  (registers "albert_mlm_sop")
from plm_jax.objectives import elmo_pretrain  # noqa: F401,E402  (registers "elmo_bilm")
from plm_jax.objectives import electra_pretrain  # noqa: F401,E402  (registers "electra_rtd")
from plm_jax.objectives import gpt_lm  # noqa: F401,E402  (registers "gpt_clm")
from plm_jax.objectives import t5_pretrain  # noqa: F401,E402  (registers "t5_span_corruption")
from plm_jax.objectives import xlnet_pretrain  # noqa: F401,E402  (registers "xlnet_plm")
from plm_jax.objectives import ernie_pretrain  # noqa: F401,E402  (registers "ernie_mlm_nsp")
