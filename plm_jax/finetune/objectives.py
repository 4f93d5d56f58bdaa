"""The fine-tuning objectives: importing this module registers them ("glue", "squad",
"glue_t2t")."""
from plm_jax.finetune import objective_glue  # noqa: F401  (registers "glue")
from plm_jax.finetune import objective_squad  # noqa: F401  (registers "squad")
from plm_jax.finetune import objective_t2t  # noqa: F401  (registers "glue_t2t")
