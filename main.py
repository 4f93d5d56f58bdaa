"""Pretrain a model: `python main.py` runs BERT tiny on the built-in corpus (~3 min, CPU).

  python main.py                                    # configs/bert.py:tiny, workdir ./workdir/bert_tiny
  python main.py --config=configs/bert.py:base --workdir=gs://bucket/bert_base \
      --config.train.num_steps=100                  # any config field can be overridden
  python main.py --distributed                      # multi-host: jax.distributed.initialize()

The workdir holds checkpoints/ (resumed automatically), tensorboard/ and, at
the end, export/ (params + model config). A config, data or checkpoint problem
prints one line `error: <message>` to stderr and exits with status 2.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_HERE = os.path.dirname(os.path.abspath(__file__))



def _fail(message: str) -> None:
  sys.stderr.write(f"error: {message.splitlines()[0] if message else 'unknown error'}\n")
  sys.stderr.flush()
  sys.exit(2)


def _unknown_override(error: Exception) -> str:
  """Names the --config.* override that config_flags could not resolve."""
  key = str(error).strip("\"' ")
  for arg in sys.argv[1:]:
    path = arg.split("=", 1)[0]
    if path.startswith("--config.") and key in path[len("--config."):].split("."):
      return f"{arg}: unknown config key {key!r} (see the config file for the known keys)"
  return f"unknown config key {key!r}"


# config_flags resolves the --config.* overrides of sys.argv while the flag is
# defined; an override of a key that does not exist fails right here.
try:
  _CONFIG = config_flags.DEFINE_config_file(
      "config", default=os.path.join(_HERE, "configs", "bert.py") + ":tiny",
      help_string="Config file and size, e.g. configs/bert.py:tiny.", lock_config=True)
except (AttributeError, KeyError) as _e:
  _fail(_unknown_override(_e))
_WORKDIR = flags.DEFINE_string(
    "workdir", "./workdir/bert_tiny",
    "Run directory: checkpoints (auto-resume), TensorBoard events, export.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", os.environ.get("PLM_JAX_DISTRIBUTED", "") == "1",
    "Call jax.distributed.initialize() first (multi-host TPU/GPU; "
    "also enabled by PLM_JAX_DISTRIBUTED=1).")


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; use --config.<key>=<value> overrides")
  if not flags.FLAGS["verbosity"].present:  # Orbax logs every save at INFO; -v 0 shows it
    logging.set_verbosity(logging.WARNING)
  import logging as py_logging  # pylint: disable=import-outside-toplevel
  py_logging.getLogger("jax._src.xla_bridge").setLevel(py_logging.WARNING)
  import jax  # pylint: disable=import-outside-toplevel
  if _DISTRIBUTED.value:
    jax.distributed.initialize()
  from plm_jax.train import trainer  # pylint: disable=import-outside-toplevel
  try:
    config = _CONFIG.value
    _ = "train" in config  # a file that failed to load raises on first use
  except Exception as e:  # pylint: disable=broad-except  (missing file, or the file raised)
    _fail(_config_load_error(e))
  try:
    trainer.train_and_evaluate(config, _WORKDIR.value)
  except (ValueError, FileNotFoundError, trainer.NonFiniteLossError) as e:
    _fail(str(e))


def _config_load_error(error: Exception) -> str:
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  arg = next((a for a in sys.argv[1:] if a.startswith("--config=")), "--config")
  return f"{arg}: cannot load the config file ({lines[-1] if lines else type(error).__name__})"


def _parse_flags(argv):
  """absl's parser, but a bad flag or config override is one `error:` line, exit 2."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    text = str(e).strip()
    if "Traceback" in text:  # config file raised: keep the flag and the exception line
      text = text.split("Traceback")[0].strip() + " " + text.splitlines()[-1].strip()
    _fail(" ".join(text.split()))


def _run():
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  _run()
