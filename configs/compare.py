r"""The comparison: the families pretrained at one training-FLOP budget, fine-tuned alike.

Run (resumable; a rerun skips every finished run and rewrites the report):
  python main.py --config=configs/compare.py:smoke --workdir=/tmp/compare_smoke
  python main.py --config=configs/compare.py:cpu --workdir=./workdir/compare_cpu

Sizes:
  smoke  BERT and ELECTRA tiny on the builtin corpus, a budget of about 100 steps, WNLI,
         two seeds: checks the machinery in a couple of minutes (scores are chance level)
  cpu    the families on the books + Wikipedia corpus (../shared/data/pretrain) at 1e13
         training FLOPs each, CoLA, SST-2, MRPC, STS-B and RTE with three seeds, and ERNIE
         against BERT masking on ChnSentiCorp from the Chinese novels (see _cpu for the
         shapes and the vocabularies); about 2.5 hours on 2 CPU cores
  paper  the papers' model sizes, steps and batches (no budget: each family's own steps),
         for a user with a pod; its prepare steps learn the papers' vocabulary sizes from the
         corpus. Plan it on any machine with
           python main.py --config=configs/compare.py:paper --dry_run --devices=64 \
               --peak_flops=275e12 --workdir=/tmp/compare_paper
         (64 TPU v4 chips: a v4-128 slice; the vocabularies not learnt yet are planned with
         stand-ins of their size, plm_jax.data.stand_in_vocab)
Each family entry: pretrain (a config file:size), overrides (nested {section: {key: value}}
onto it), export (the subdirectory of its export that fine-tunes: ELECTRA's discriminator),
finetune {family, config (configs/<config>.py of its cells), overrides}, task_set.
"""
import ml_collections

from plm_jax.data import paths

SIZES = ("smoke", "cpu", "paper")


def _family(pretrain, overrides=None, export="", family="", config="glue", ft_overrides=None,
            task_set="glue", paper_family=""):
  out = {"pretrain": pretrain, "overrides": overrides or {}, "export": export,
         "finetune": {"family": family, "config": config, "overrides": ft_overrides or {}},
         "task_set": task_set}
  if paper_family:
    out["paper_family"] = paper_family
  return out


def get_config(arg: str = "smoke") -> ml_collections.ConfigDict:
  if arg not in SIZES:
    raise ValueError(f"configs/compare.py: unknown size {arg!r}; choose one of {list(SIZES)}")
  c = ml_collections.ConfigDict()
  c.comparison = ml_collections.ConfigDict()
  c.finetune = ml_collections.ConfigDict()
  if arg == "smoke":
    c.comparison.budget_flops = 3e10
    c.comparison.seeds = (0, 1)
    c.comparison.pretrain_evals = 2
    c.comparison.order = ("bert", "electra")
    c.comparison.notes = ("Smoke size: fresh tiny models on the builtin corpus and vocabulary; "
                          "checks the machinery, the scores mean nothing.")
    c.prepare = {}
    tiny = {"data": {"seq_length": 64}, "mlm": {"max_predictions": 10},
            "train": {"batch_size": 8, "eval_steps": 2}}
    c.families = {
        "bert": _family("configs/bert.py:tiny", tiny, family="bert"),
        "electra": _family("configs/electra.py:tiny", tiny, export="discriminator",
                           family="electra"),
    }
    c.pretrain_base = {"optimizer": {"warmup_steps": 0, "warmup_ratio": 0.1}}
    c.finetune.task_sets = {"glue": ("wnli",)}
    c.finetune.base = {"train": {"num_epochs": 0.0, "num_steps": 4, "eval_every": 2,
                                 "batch_size": 8, "checkpoint_every": 4},
                       "task": {"max_seq_length": 64, "buckets": (64,), "predict_test": False},
                       "optimizer": {"learning_rate": 1e-3}}
    c.finetune.task_overrides = {}
    return c
  if arg == "cpu":
    return _cpu(c)
  return _paper(c)


def _paper(c):
  """Each family at its paper's size, steps and batch (no budget: their own compute differs,
  as in the papers; ELECTRA-Small and BERT-Small are Table 1's compute-matched pair)."""
  c.comparison.budget_flops = 0.0
  c.comparison.seeds = (0, 1, 2)
  c.comparison.order = ("elmo", "gpt", "bert_small", "electra_small", "bert", "roberta",
                        "albert", "electra", "xlnet", "t5", "ernie")
  c.comparison.notes = ("Paper scale: each family's published size, steps and batch, on the "
                        "data each config names (set config.families.<name>.overrides.data "
                        "for the corpus and vocabulary you have).")
  # The papers' vocabulary sizes, learnt from the corpus (books + Wikipedia here; the dry run
  # plans with stand-ins of the same layout and size, plm_jax.data.stand_in_vocab). BERT,
  # ELECTRA and their Small sizes read BERT's uncased WordPiece (30,522) as released.
  spm_args = ("--input", _CORPUS, "--max_sentences", "2000000")
  c.prepare = {
      "gpt1_bpe": {"module": "plm_jax.data.bpe_train",   # GPT-1: 40,000 merges, 40,478 ids
                   "args": ("--input", _CORPUS, "--kind", "gpt1", "--vocab_size", "40478",
                            "--out_dir", "{workdir}/vocab/gpt1_bpe"),
                   "creates": ("{workdir}/vocab/gpt1_bpe/vocab.json",)},
      "bpe50k": {"module": "plm_jax.data.bpe_train",     # RoBERTa: byte-level, 50,265 ids
                 "args": ("--input", _CORPUS, "--vocab_size", "50265",
                          "--out_dir", "{workdir}/vocab/bpe50k"),
                 "creates": ("{workdir}/vocab/bpe50k/vocab.json",)},
      "spm30k": {"module": "plm_jax.data.spm_train",     # ALBERT: SentencePiece 30,000
                 "args": spm_args + ("--vocab_size", "30000",
                                     "--model_prefix", "{workdir}/vocab/spm30k"),
                 "creates": ("{workdir}/vocab/spm30k.model",)},
      "spm32k": {"module": "plm_jax.data.spm_train",     # XLNet: SentencePiece 32,000
                 "args": spm_args + ("--vocab_size", "32000",
                                     "--model_prefix", "{workdir}/vocab/spm32k"),
                 "creates": ("{workdir}/vocab/spm32k.model",)},
      "spm32k_t5": {"module": "plm_jax.data.spm_train",  # T5: 32,000 + 100 sentinels
                    "args": spm_args + ("--vocab_size", "32000", "--layout", "t5",
                                        "--model_prefix", "{workdir}/vocab/spm32k_t5"),
                    "creates": ("{workdir}/vocab/spm32k_t5.model",)},
      "zh_vocab": {"module": "plm_jax.data.zh_vocab",    # ERNIE 1.0: 18,000 characters
                   "args": ("--input", "{data}/pretrain/zh/*.txt", "--vocab_size", "18000",
                            "--out", "{workdir}/vocab/zh_vocab18k.txt"),
                   "creates": ("{workdir}/vocab/zh_vocab18k.txt",)},
  }

  def vocab(path, kind, **sections):
    return dict({"data": _vocab(path, kind)}, **sections)

  # Gradient accumulation where a paper's batch does not fit one pass on the planned slice
  # (64 TPU v4 chips, 32 GiB each): the same step, in micro-batches (the dry run's memory
  # per device is that of the micro-batch)
  def accumulate(n):
    return {"train": {"grad_accum_steps": n}}

  c.families = {
      "elmo": _family("configs/elmo.py:original", family="elmo"),
      "gpt": _family("configs/gpt.py:gpt1", vocab("{workdir}/vocab/gpt1_bpe/vocab.json", "bpe"),
                     family="openai-gpt"),
      "bert_small": _family("configs/electra.py:bert_small", family="electra",
                            paper_family="bert"),
      "electra_small": _family("configs/electra.py:small", export="discriminator",
                               family="electra", paper_family="electra"),
      "bert": _family("configs/bert.py:base",
                      vocab(paths.bert_uncased_vocab(), "wordpiece"), family="bert"),
      "roberta": _family("configs/roberta.py:base",
                         vocab("{workdir}/vocab/bpe50k/vocab.json", "bpe", **accumulate(8)),
                         family="roberta"),
      "albert": _family("configs/albert.py:base",
                        vocab("{workdir}/vocab/spm30k.model", "sentencepiece",
                              **accumulate(4)),
                        family="albert"),
      "electra": _family("configs/electra.py:base", export="discriminator", family="electra"),
      "xlnet": _family("configs/xlnet.py:base",
                       vocab("{workdir}/vocab/spm32k.model", "sentencepiece"), family="xlnet"),
      "t5": _family("configs/t5.py:base",
                    vocab("{workdir}/vocab/spm32k_t5.model", "sentencepiece"), family="t5",
                    config="glue_t5"),
      "ernie": _family("configs/ernie.py:base",
                       vocab("{workdir}/vocab/zh_vocab18k.txt", "wordpiece"), family="ernie"),
  }
  c.pretrain_base = {}
  c.finetune.task_sets = {"glue": ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli",
                                   "rte")}
  c.finetune.base = {"train": {"batch_size": 32}, "optimizer": {"learning_rate": 1e-4}}
  c.finetune.task_overrides = {}
  return c


# One network shape for every Transformer family (hidden 128, 4 layers of 2 heads, FFN 512;
# T5: 2 encoder + 2 decoder layers), sequences of 128 tokens, batches of 32.
_H, _LAYERS, _HEADS, _FFN, _SEQ, _BATCH = 128, 4, 2, 512, 128, 32
_SPM = "{workdir}/vocab/spm.model"            # SentencePiece 8k, BERT's special pieces
_SPM_T5 = "{workdir}/vocab/spm_t5.model"      # the same training, T5's special pieces
_BPE = "{workdir}/vocab/bpe/vocab.json"       # byte-level BPE 8k (GPT-2's scheme)
_CORPUS = "gutenberg={data}/pretrain/books/*.txt,wikiextractor={data}/pretrain/wiki/enwiki/*/wiki_*"


def _encoder(**extra):
  return dict(dict(hidden_size=_H, num_layers=_LAYERS, num_heads=_HEADS,
                   intermediate_size=_FFN), **extra)


def _vocab(path, kind):
  return {"vocab": {"type": kind, "path": path}}


def _cpu(c):
  c.comparison.budget_flops = 1.0e13
  c.comparison.seeds = (0, 1, 2)
  c.comparison.pretrain_evals = 4
  c.comparison.order = ("elmo", "gpt", "bert", "roberta", "albert", "electra", "xlnet", "t5",
                        "ernie", "ernie_zh", "bert_zh")
  c.comparison.notes = (
      "Vocabularies, all learnt from the same corpus, 8,000 entries: one SentencePiece "
      "model (unigram, lower-cased) shared by BERT, ALBERT, ELECTRA, ERNIE and XLNet; T5 "
      "the same training with T5's special pieces (<pad> </s> <unk>, sentinels on top); "
      "RoBERTa and GPT a byte-level BPE (GPT-2's scheme, RoBERTa's defining tokenizer; GPT's "
      "fine-tuning needs an end-of-text token that the SentencePiece layout lacks); ELMo "
      "its own 10,000-word vocabulary over characters (a word-level model). The vocabularies "
      "were learnt on the whole corpus, the held-out pretraining documents included.")
  prep_spm = ("--input", _CORPUS, "--vocab_size", "8000", "--max_sentences", "300000")
  c.prepare = {
      "spm": {"module": "plm_jax.data.spm_train",
              "args": prep_spm + ("--model_prefix", "{workdir}/vocab/spm"), "creates": (_SPM,)},
      "spm_t5": {"module": "plm_jax.data.spm_train",
                 "args": prep_spm + ("--model_prefix", "{workdir}/vocab/spm_t5",
                                     "--layout", "t5"), "creates": (_SPM_T5,)},
      "bpe": {"module": "plm_jax.data.bpe_train",
              "args": ("--input", _CORPUS, "--out_dir", "{workdir}/vocab/bpe",
                       "--vocab_size", "8000", "--max_documents", "1500"),
              "creates": (_BPE,)},
      "zh_vocab": {"module": "plm_jax.data.zh_vocab",
                   "args": ("--input", "{data}/pretrain/zh/*.txt", "--out",
                            "{workdir}/vocab/zh_vocab.txt", "--vocab_size", "8000"),
                   "creates": ("{workdir}/vocab/zh_vocab.txt",)},
      "zh_lexicons": {"module": "plm_jax.data.ernie_lexicon",
                      "args": ("--input", "{data}/pretrain/zh/*.txt", "--phrases_out",
                               "{workdir}/vocab/zh_phrases.txt", "--entities_out",
                               "{workdir}/vocab/zh_entities.txt"),
                      "creates": ("{workdir}/vocab/zh_phrases.txt",
                                  "{workdir}/vocab/zh_entities.txt")},
  }
  seq = {"seq_length": _SEQ}
  train = {"batch_size": _BATCH, "eval_steps": 10}
  spm = dict(_vocab(_SPM, "sentencepiece"), **seq)
  bpe = dict(_vocab(_BPE, "bpe"), **seq)
  c.families = {
      # ELMo fine-tunes feature-based (frozen biLM, a task BiLSTM; plm_jax/finetune/
      # objective_elmo.py), one layer of 256 cells each way at this size
      "elmo": _family("configs/elmo_books_wiki.py:tiny", {"train": train}, family="elmo",
                      ft_overrides={"model": {"elmo": {"task_dim": 256, "task_layers": 1}}}),
      "gpt": _family("configs/gpt_books_wiki.py:tiny",
                     {"model": dict(_encoder(), architecture="openai-gpt",
                                    norm_position="post", scale_residual_init=False),
                      "data": bpe, "train": train}, family="openai-gpt"),
      "bert": _family("configs/bert_books_wiki.py:tiny",
                      {"model": _encoder(), "data": spm, "train": train}, family="bert"),
      "roberta": _family("configs/roberta_books_wiki.py:tiny",
                         {"model": _encoder(max_position_embeddings=_SEQ + 2), "data": bpe,
                          "train": train}, family="roberta"),
      "albert": _family("configs/albert_books_wiki.py:tiny",
                        {"model": _encoder(embedding_size=64), "data": spm, "train": train},
                        family="albert"),
      "electra": _family("configs/electra_books_wiki.py:tiny",
                         {"model": _encoder(embedding_size=_H), "data": spm, "train": train},
                         export="discriminator", family="electra"),
      "xlnet": _family("configs/xlnet_books_wiki.py:tiny",
                       {"model": _encoder(head_dim=_H // _HEADS), "data": spm,
                        "train": train}, family="xlnet"),
      "t5": _family("configs/t5_books_wiki.py:tiny",
                    {"model": dict(hidden_size=_H, num_layers=_LAYERS // 2,
                                   num_decoder_layers=_LAYERS // 2, num_heads=_HEADS,
                                   head_dim=_H // _HEADS, intermediate_size=_FFN),
                     "data": dict(_vocab(_SPM_T5, "sentencepiece"), inputs_length=_SEQ),
                     "train": train}, family="t5", config="glue_t5"),
      "ernie": _family("configs/ernie.py:tiny",
                       {"model": _encoder(max_position_embeddings=_SEQ),
                        "data": dict(spm, corpus={"type": "text", "paths": _CORPUS,
                                                  "eval_every_nth": 50}),
                        "mlm": {"max_predictions": 20}, "train": train}, family="ernie"),
      # ERNIE 1.0 against BERT's masking on Chinese (the same model and data, only the
      # masking differs), fine-tuned on ChnSentiCorp
      "ernie_zh": _family("configs/ernie_zh.py:tiny", _zh_overrides("knowledge"), family="ernie",
                          task_set="zh", paper_family="ernie"),
      "bert_zh": _family("configs/ernie_zh.py:tiny", _zh_overrides("bert"), family="ernie",
                         task_set="zh", paper_family="bert"),
  }
  c.pretrain_base = {"optimizer": {"warmup_steps": 0, "warmup_ratio": 0.1}}
  c.finetune.task_sets = {"glue": ("cola", "sst2", "mrpc", "stsb", "rte"),
                          "zh": ("chnsenticorp",)}
  # 100 steps of 32 (RTE: 1.3 epochs, SST-2: 5% of one) evaluated once at the end, three
  # length buckets: 141 cells in about 80 minutes on 2 CPU cores
  c.finetune.base = {"train": {"num_epochs": 0.0, "num_steps": 100, "eval_every": 100,
                               "batch_size": 32, "checkpoint_every": 100},
                     "task": {"max_seq_length": _SEQ, "buckets": (32, 64, _SEQ),
                              "predict_test": False},
                     "optimizer": {"learning_rate": 1e-3}}
  c.finetune.task_overrides = {}
  return c


def _zh_overrides(masking):
  return {"model": _encoder(max_position_embeddings=_SEQ),
          "data": {"seq_length": _SEQ, "vocab": {"path": "{workdir}/vocab/zh_vocab.txt"}},
          "mlm": {"max_predictions": 20},
          "ernie": {"masking": masking,
                    "phrase_lexicon": "{workdir}/vocab/zh_phrases.txt",
                    "entity_lexicon": "{workdir}/vocab/zh_entities.txt"},
          "train": {"batch_size": _BATCH, "eval_steps": 10}}
