r"""GLUE fine-tuning of T5 as text-to-text (objective glue_t2t, plm_jax/finetune/objective_t2t.py).

Run (RTE from ../shared/data/glue; a fresh tiny T5 with the SentencePiece model that
`python -m plm_jax.data.spm_train --layout=t5 ...` writes, see README.md):
  python main.py --config=configs/glue_t5.py:rte --workdir=/tmp/glue_t5_rte \
      --config.vocab.path=/tmp/spm_t5.model

--config.init.hf_dir=DIR starts from a Hugging Face T5 directory (with its spiece.model)
or a plm_jax T5 export (configs/t5.py's WORKDIR/export); config.vocab.path may then stay
empty (the directory's spiece.model).

Inputs are the T5 paper's ('sst2 sentence: ...', 'mnli hypothesis: ... premise: ...'),
targets the label words ('positive'; STS-B: the score rounded to 0.2, '3.6'); dev metrics
come from greedy decoding mapped back to labels (unparseable outputs count as wrong and
are reported as eval/invalid). Without init.hf_dir the model is a fresh T5 (model.size
tiny | small) and config.vocab.path must name a SentencePiece model with T5's layout
(python -m plm_jax.data.spm_train --layout=t5).

Recipe: T5's fine-tuning optimizer (Adafactor, constant learning rate 1e-3, no warmup,
dropout 0.1), batch 32 for 3 epochs (the paper: batch 128 for 2^18 steps over the GLUE
mixture), the best dev checkpoint kept.
"""
import ml_collections

from configs import glue


def get_config(arg: str = "sst2") -> ml_collections.ConfigDict:
  c = glue.get_config(arg)
  c.objective = "glue_t2t"
  c.model.family = "t5"
  c.model.size = "tiny"                  # fresh model only: tiny | small (v1.1 layout)
  c.vocab.type = "auto"                  # the checkpoint's spiece.model when path is empty
  c.task.targets_length = 8              # target tokens with EOS; also the decode length
  c.task.num_beams = 1                   # greedy; > 1: beam search
  c.task.length_penalty = 1.0            # beam search only
  c.task.extra_ids = 100                 # sentinels on top of the SentencePiece model
  o = c.optimizer
  o.name = "adafactor"
  o.learning_rate = 1e-3
  o.warmup_ratio = 0.0
  o.decay = "constant"
  o.weight_decay = 0.0
  o.grad_clip_norm = 0.0                 # Adafactor clips its own updates
  return c
