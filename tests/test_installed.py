"""Installed use: `pip install .` (not editable) into a fresh virtualenv, then, from another
directory, a config built in code trains a few steps through the library."""
import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SNIPPET = textwrap.dedent("""
    import plm_jax
    from plm_jax.objectives.bert_pretrain import BertMlmNsp
    from plm_jax.train import trainer

    assert "site-packages" in plm_jax.__file__, plm_jax.__file__
    c = BertMlmNsp.default_config()          # the objective's own defaults, no configs/ file
    c.model.update(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                   max_position_embeddings=64)
    c.data.seq_length = 32
    c.mlm.max_predictions = 5
    c.data.shuffle_buffer = 64
    c.train.update(batch_size=4, num_steps=3, log_every=1, eval_every=-1, checkpoint_every=3)
    final = trainer.train_and_evaluate(c, "run")
    assert final["step"] == 3.0, final
    print("INSTALLED-OK", plm_jax.__file__)
""")


def test_pip_install_into_a_fresh_virtualenv_and_train(tmp_path):
  venv = tmp_path / "venv"
  # System packages (jax, tensorflow, ...) are visible; plm_jax itself comes only from the wheel.
  subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
  python = str(venv / "bin" / "python")
  install = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps",
                            "--no-build-isolation", REPO], capture_output=True, text=True)
  assert install.returncode == 0, install.stderr[-3000:]
  work = tmp_path / "elsewhere"
  work.mkdir()
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
  env["TF_CPP_MIN_LOG_LEVEL"] = "2"
  run = subprocess.run([python, "-c", SNIPPET], cwd=work, env=env, capture_output=True,
                       text=True, timeout=600)
  assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
  assert "INSTALLED-OK" in run.stdout and str(venv) in run.stdout
  assert (work / "run" / "export" / "plm_config.json").exists()
