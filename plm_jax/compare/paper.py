"""Published points the comparison report draws beside its own (labelled as the paper's).

ELECTRA (Clark et al., ICLR 2020), Table 1: small models compared on the GLUE dev set
("GLUE score": CoLA MCC, STS-B Spearman, accuracy elsewhere, WNLI left out), with each
model's training and inference FLOPs (the paper's analytic count, one example of 128 tokens
for inference) and parameters. These were trained on other data, for far longer and at
paper scale: the report shows them for the ordering and the FLOP axis, not as targets.
"""
from __future__ import annotations

# model -> (training FLOPs, inference FLOPs, parameters, GLUE dev score)
ELECTRA_TABLE1 = {
    "ELMo": (3.3e18, 2.6e10, 96e6, 71.2),
    "GPT": (4.0e19, 3.0e10, 117e6, 78.8),
    "BERT-Small": (1.4e18, 3.7e9, 14e6, 75.1),
    "BERT-Base": (6.4e19, 2.9e10, 110e6, 82.2),
    "ELECTRA-Small": (1.4e18, 3.7e9, 14e6, 79.9),
    "ELECTRA-Base": (6.4e19, 2.9e10, 110e6, 85.1),
}
SOURCE = "Clark et al. 2020 (ELECTRA), Table 1"

# The family each paper row stands for (the report's families are named by family).
FAMILY_OF = {"ELMo": "elmo", "GPT": "gpt", "BERT-Small": "bert", "BERT-Base": "bert",
             "ELECTRA-Small": "electra", "ELECTRA-Base": "electra"}

# The pairwise orderings the paper reports at (roughly) equal or lower compute, used by the
# report's discussion: (better, worse, where).
PAPER_ORDERINGS = (
    ("electra", "bert", "ELECTRA Table 1: ELECTRA-Small 79.9 vs BERT-Small 75.1 at 1.4e18 FLOPs"),
    ("electra", "gpt", "ELECTRA Table 1: ELECTRA-Small 79.9 vs GPT 78.8 at 1/30 of its compute"),
    ("electra", "elmo", "ELECTRA Table 1: ELECTRA-Small 79.9 vs ELMo 71.2"),
    ("bert", "elmo", "ELECTRA Table 1: BERT-Small 75.1 vs ELMo 71.2"),
    ("bert", "gpt", "BERT Table 1: BERT-Base 79.6 vs OpenAI GPT 75.1 (GLUE test)"),
    ("roberta", "bert", "RoBERTa paper: its recipe (dynamic masking, no NSP, more data and "
     "steps) above BERT on GLUE dev"),
    ("xlnet", "bert", "XLNet paper: XLNet above BERT on GLUE dev when both train on the same "
     "BooksCorpus + Wikipedia data"),
    ("bert", "albert", "ALBERT paper: ALBERT-base (12M parameters, shared layers) below "
     "BERT-base (108M) on the GLUE dev average at equal steps"),
    ("ernie", "bert", "ERNIE 1.0 paper: knowledge masking above BERT's masking on Chinese tasks"),
)
