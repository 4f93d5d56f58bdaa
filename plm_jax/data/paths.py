"""Where the project's shared data bundle lives: $PLM_JAX_DATA, else ../shared/data beside the repo."""
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def data_dir() -> str:
  return os.path.abspath(os.environ.get("PLM_JAX_DATA")
                         or os.path.join(REPO_ROOT, "..", "shared", "data"))
