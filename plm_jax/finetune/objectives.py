"""The fine-tuning objectives: importing this module registers them ("glue", "squad")."""
from plm_jax.finetune import objective_glue  # noqa: F401  (registers "glue")
from plm_jax.finetune import objective_squad  # noqa: F401  (registers "squad")
