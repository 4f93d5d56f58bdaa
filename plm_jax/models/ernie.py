"""ERNIE 1.0 (Sun et al., 2019): BERT's network, plus an optional task-type embedding.

ERNIE 1.0 changes what is masked (knowledge masking, plm_jax.data.ernie_masking),
not the network: the backbone, MLM head and next-sentence head are BERT's
(plm_jax.models.bert), so the params are BERT's too, under 'bert/'. The one
architectural addition, kept for Hugging Face's `ErnieModel` / `ErnieForPreTraining`
(whose checkpoints also carry ERNIE 2.0 / 3.0 weights), is `use_task_id`: a
task-type table of `task_type_vocab_size` rows whose embedding is added to the
word + position + token-type sum before the embedding LayerNorm
(bert/embeddings/task_type_embeddings/embedding). ERNIE 1.0 itself has none.

Contract (arguments and output names as in Hugging Face transformers):
  ErnieConfig                BertConfig fields + use_task_id, task_type_vocab_size
  ErnieModel(config)         BertModel: __call__(input_ids, attention_mask=None,
                             token_type_ids=None, deterministic=True, position_ids=None,
                             task_type_ids=None) -> last_hidden_state, pooler_output
  ErnieForPreTraining(config) BertForPreTraining (+ task_type_ids=None) -> last_hidden_state,
                             pooler_output, prediction_logits, seq_relationship_logits
"""
import dataclasses

from plm_jax.models.bert import BertConfig, BertForPreTraining, BertModel


@dataclasses.dataclass(frozen=True)
class ErnieConfig(BertConfig):
  use_task_id: bool = False          # add the task-type embedding (ERNIE 2.0 / 3.0 files)
  task_type_vocab_size: int = 3      # its rows (Hugging Face's default)


class ErnieModel(BertModel):
  """BertModel with an ErnieConfig (the task-type table when use_task_id)."""
  config: ErnieConfig


class ErnieForPreTraining(BertForPreTraining):
  """BertForPreTraining with an ErnieConfig: params 'bert', 'mlm_head', 'nsp_head'."""
  config: ErnieConfig
