"""Runs main.py in a subprocess with tiny test-size overrides (shared by the main/resume tests)."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = os.path.join(REPO, "main.py")

TINY = [
    "--config=" + os.path.join(REPO, "configs", "bert.py") + ":tiny",
    "--config.model.hidden_size=32", "--config.model.num_layers=2", "--config.model.num_heads=2",
    "--config.model.intermediate_size=64", "--config.model.max_position_embeddings=32",
    "--config.data.seq_length=32", "--config.mlm.max_predictions=5",
    "--config.data.shuffle_buffer=64", "--config.train.batch_size=8",
    "--config.train.log_every=10", "--config.train.eval_every=-1", "--config.train.eval_steps=1",
]


def env():
  """One CPU device (the subprocess need not simulate 8), quiet TF."""
  e = dict(os.environ)
  e.pop("XLA_FLAGS", None)
  e["TF_CPP_MIN_LOG_LEVEL"] = "2"
  e["PYTHONPATH"] = REPO + os.pathsep + e.get("PYTHONPATH", "")
  return e


def command(workdir, *overrides, tiny=True):
  return [sys.executable, MAIN, f"--workdir={workdir}"] + (TINY if tiny else []) + list(overrides)


def run(workdir, *overrides, tiny=True, timeout=240):
  return subprocess.run(command(workdir, *overrides, tiny=tiny), env=env(), cwd=REPO,
                        capture_output=True, text=True, timeout=timeout)


def popen(workdir, *overrides):
  return subprocess.Popen(command(workdir, *overrides), env=env(), cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def error_lines(stderr):
  return [line for line in stderr.splitlines() if line.startswith("error:")]


def load_export(workdir):
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  return ocp.StandardCheckpointer().restore(os.path.join(os.path.abspath(workdir), "export",
                                                         "params"))


def committed_steps(workdir):
  """Checkpoint steps in workdir whose save has completed (Orbax wrote its metadata)."""
  d = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(d):
    return []
  return sorted(int(n) for n in os.listdir(d)
                if n.isdigit() and os.path.exists(os.path.join(d, n, "_CHECKPOINT_METADATA")))


def configs_by_objective():
  """objective -> (the configs/<file>.py argument, its config): each configs/*.py at its
  'tiny' argument where it has one (else its default), the first file per objective."""
  import importlib  # pylint: disable=import-outside-toplevel
  out = {}
  names = sorted(f[:-3] for f in os.listdir(os.path.join(REPO, "configs"))
                 if f.endswith(".py") and f not in ("__init__.py", "matrix.py"))
  for name in names:
    module = importlib.import_module(f"configs.{name}")
    try:
      config, arg = module.get_config("tiny"), ":tiny"
    except ValueError:
      config, arg = module.get_config(), ""
    out.setdefault(config.objective, (f"configs/{name}.py{arg}", config))
  return out
