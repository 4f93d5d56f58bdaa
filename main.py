r"""Pretrain a model: `python main.py` runs BERT tiny on the built-in corpus (~3 min, CPU).

  python main.py                                    # configs/bert.py:tiny in ./workdir/bert_tiny
  python main.py --config=configs/bert.py:base --workdir=/tmp/bert_base \
      --config.train.batch_size=8 --config.train.num_steps=100    # any config key can be overridden
  python main.py --config=configs/bert.py:base --config_help       # every key: value and comment
  python main.py --distributed                      # multi-host: jax.distributed.initialize()
  python main.py --distributed --coordinator_address=localhost:12345 --num_processes=2 \
      --process_id=0                                # one of two processes (not a managed cluster)
  python main.py --config=configs/bert.py:large --dry_run --devices=256 --peak_flops=275e12
      # plan only: parameters, FLOPs and per-device memory of the compiled train step on a
      # 256-device mesh (simulated on CPU), step time at 275 TFLOP/s per device
  python main.py --config=configs/compare.py:smoke --workdir=/tmp/compare_smoke
      # a comparison config: every family pretrained at one FLOP budget, fine-tuned, one
      # report (plm_jax/compare); with --dry_run it plans each family's pretraining step

The workdir (default ./workdir/<config file>_<size>) holds checkpoints/ (resumed
automatically), tensorboard/ and, at the end, export/ (params, model config and
tokenizer files). A config, data or checkpoint problem prints one line
`error: <message>` to stderr and exits with status 2; nothing is created before
the config and data have been checked. A multi-process run (--distributed) trains in a
child of this process, which reports a lost peer (JAX's heartbeat abort) as one `error:`
line and exits with status 75 (plm_jax/supervise.py).
"""
import os
import re
import sys

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
  """Names the --config.* override that config_flags could not resolve (and the key
  ConfigDict suggests instead)."""
  while error.args and isinstance(error.args[0], Exception):   # AttributeError(KeyError(...))
    error = error.args[0]
  text = str(error.args[0]) if error.args else str(error)
  key = text.splitlines()[0].strip("\"' ") if text else "?"
  match = re.search(r'Did you mean "([^"]+)"', text)
  hint = f"; did you mean {match.group(1)!r}?" if match else ""
  hint += " (python main.py --config_help lists every key)"
  for arg in sys.argv[1:]:
    path = arg.split("=", 1)[0]
    if path.startswith("--config.") and key in path[len("--config."):].split("."):
      return f"{arg}: unknown config key {key!r}{hint}"
  return f"unknown config key {key!r}{hint}"


def default_workdir(config_spec: str) -> str:
  """./workdir/<config file name>[_<argument>]: configs/bert.py:small -> ./workdir/bert_small."""
  path, _, arg = config_spec.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  if arg:
    name += "_" + re.sub(r"[^A-Za-z0-9._-]+", "_", arg)
  return os.path.join(".", "workdir", name)


# A multi-process run (--distributed --num_processes > 1) trains in a child process of this
# one, which turns the child's death by a lost peer into one error line (plm_jax/supervise.py).
if __name__ == "__main__":
  from plm_jax import supervise  # pylint: disable=g-import-not-at-top  (standard library only)
  if supervise.wanted(sys.argv[1:]):
    _spec = supervise.flag(sys.argv[1:], "config") or "configs/bert.py:tiny"
    sys.exit(supervise.run(sys.argv, supervise.flag(sys.argv[1:], "workdir")
                           or default_workdir(_spec)))
  supervise.die_with_parent()


# config_flags resolves the --config.* overrides of sys.argv while the flag is
# defined; an override of a key that does not exist fails right here.
try:
  _CONFIG = config_flags.DEFINE_config_file(
      "config", default=os.path.join(_HERE, "configs", "bert.py") + ":tiny",
      help_string="Config file and size, e.g. configs/bert.py:tiny; override any key with "
      "--config.<key>=<value> (--config_help lists them).", lock_config=True)
except (AttributeError, KeyError) as _e:
  _fail(_unknown_override(_e))
_WORKDIR = flags.DEFINE_string(
    "workdir", None,
    "Run directory: checkpoints (auto-resume), TensorBoard events, export. "
    "Default: ./workdir/<config file>_<size>, e.g. ./workdir/bert_tiny.")
_CONFIG_HELP = flags.DEFINE_bool(
    "config_help", False, "Print every key of --config with its value and comment, then exit.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", os.environ.get("PLM_JAX_DISTRIBUTED", "") == "1",
    "Call jax.distributed.initialize() first (multi-host TPU/GPU; "
    "also enabled by PLM_JAX_DISTRIBUTED=1). On TPU pods and SLURM/MPI clusters JAX finds "
    "the coordinator and process ids itself; elsewhere give the three flags below.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "With --distributed: host:port of process 0's coordinator "
    "(default: $JAX_COORDINATOR_ADDRESS, or the cluster's own).")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "With --distributed: the number of processes (hosts).",
    lower_bound=1)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "With --distributed: this process's index in [0, num_processes).",
    lower_bound=0)
_HEARTBEAT = flags.DEFINE_integer(
    "heartbeat_timeout", 100, "With --distributed: seconds without a heartbeat after which a "
    "process counts as dead and the others stop (JAX's default 100).", lower_bound=1)
_DRY_RUN = flags.DEFINE_bool(
    "dry_run", False, "Plan only: build and compile the train step for the configured mesh "
    "without allocating it or reading data, print parameters, FLOPs per step, per-device "
    "memory and the step time at --peak_flops, and exit (the workdir is not touched).")
_DEVICES = flags.DEFINE_integer(
    "devices", None, "With --dry_run: plan for this many simulated CPU devices instead of "
    "the machine's devices (e.g. 256 for a v4-512 pod slice).", lower_bound=1)
_PEAK_FLOPS = flags.DEFINE_float(
    "peak_flops", None, "With --dry_run: peak FLOP/s of one device (e.g. 275e12, TPU v4 "
    "bfloat16) for the implied step time.", lower_bound=0.0)


def main(argv):
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; use --config.<key>=<value> overrides")
  spec = flags.FLAGS["config"].config_filename
  if _CONFIG_HELP.value:
    from plm_jax import config_help  # pylint: disable=import-outside-toplevel
    print(config_help.describe(_CONFIG.value, spec))
    return
  if not flags.FLAGS["verbosity"].present:  # Orbax logs every save at INFO; -v 0 shows it
    logging.set_verbosity(logging.WARNING)
  import logging as py_logging  # pylint: disable=import-outside-toplevel
  py_logging.getLogger("jax._src.xla_bridge").setLevel(py_logging.WARNING)
  workdir = _WORKDIR.value or default_workdir(spec)
  print(f"config {os.path.relpath(spec) if os.path.isabs(spec) else spec}, workdir {workdir}",
        flush=True)
  from plm_jax import startup  # pylint: disable=import-outside-toplevel
  startup.quiet_tensorflow()   # before anything below imports TensorFlow
  import jax  # pylint: disable=import-outside-toplevel
  if not _DRY_RUN.value:
    for flag in (_DEVICES, _PEAK_FLOPS):
      if flag.value is not None:
        _fail(f"--{flag.name} is for --dry_run only")
  elif _DEVICES.value:   # before anything initialises a backend
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", _DEVICES.value)
  startup.enable_compilation_cache()
  if _DISTRIBUTED.value:
    _initialize_distributed(jax)
  else:
    for flag in (_COORDINATOR, _NUM_PROCESSES, _PROCESS_ID):
      if flag.value is not None:
        _fail(f"--{flag.name} is for --distributed only")
  from plm_jax.train import trainer  # pylint: disable=import-outside-toplevel
  try:
    config = _CONFIG.value
    _ = "train" in config  # a file that failed to load raises on first use
  except Exception as e:  # pylint: disable=broad-except  (missing file, or the file raised)
    _fail(_config_load_error(e))
  from plm_jax.compare import runner as compare  # pylint: disable=import-outside-toplevel
  if compare.is_comparison(config):      # configs/compare.py: many runs, one report
    _compare(compare, config, workdir)
    return
  if _DRY_RUN.value:
    _dry_run(config)
    return
  try:
    trainer.train_and_evaluate(config, workdir)
  except (ValueError, FileNotFoundError, trainer.NonFiniteLossError) as e:
    _fail(str(e))
  except jax.errors.JaxRuntimeError as e:
    if jax.process_count() == 1:
      raise
    _fail(f"process {jax.process_index()} of {jax.process_count()}: a step shared with the other "
          f"processes failed; did one of them stop? (see its log): {' '.join(str(e).split())[:300]}")


def _initialize_distributed(jax) -> None:
  """jax.distributed.initialize() with the flags given (the rest auto-detected by JAX).

  On CPU, JAX's cross-process collectives use gloo (jax_cpu_collectives_implementation)."""
  if (_NUM_PROCESSES.value is None) != (_PROCESS_ID.value is None):
    _fail("--num_processes and --process_id go together")
  if _PROCESS_ID.value is not None and _PROCESS_ID.value >= _NUM_PROCESSES.value:
    _fail(f"--process_id={_PROCESS_ID.value}: must be below --num_processes="
          f"{_NUM_PROCESSES.value}")
  try:
    jax.distributed.initialize(
        coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
        process_id=_PROCESS_ID.value, heartbeat_timeout_seconds=_HEARTBEAT.value)
  except (ValueError, RuntimeError) as e:   # no cluster found, coordinator unreachable
    _fail(f"--distributed: {' '.join(str(e).split())[:400]}")
  print(f"process {jax.process_index()} of {jax.process_count()}: "
        f"{jax.local_device_count()} local of {jax.device_count()} devices", flush=True)


def _compare(compare, config, workdir: str) -> None:
  """A comparison config: plan every family (--dry_run) or run the whole comparison."""
  from plm_jax.train import trainer  # pylint: disable=import-outside-toplevel
  try:
    if _DRY_RUN.value:
      import jax  # pylint: disable=import-outside-toplevel
      print(f"dry run: every family's pretraining step on {jax.device_count()} device(s); "
            f"nothing is allocated, read or written", flush=True)
      compare.dry_run(config, peak_flops=_PEAK_FLOPS.value or None)
      return
    out = compare.run(config, workdir)
  except (ValueError, FileNotFoundError, trainer.NonFiniteLossError) as e:
    _fail(str(e))
  print(f"wrote {os.path.join(workdir, 'report.md')}, results.json and the plots "
        f"({len(out['pretrain'])} pretraining runs)", flush=True)


def _dry_run(config) -> None:
  from plm_jax.train import dry_run  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  print(f"dry run: compiling the train step for {jax.device_count()} device(s); nothing is "
        f"allocated, read or written", flush=True)
  try:
    plan = dry_run.plan(config, peak_flops=_PEAK_FLOPS.value or None)
  except (ValueError, FileNotFoundError) as e:
    _fail(str(e))
  print(dry_run.format_plan(plan), flush=True)


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
