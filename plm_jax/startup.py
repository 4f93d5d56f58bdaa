"""A quiet start for the command-line tools: TensorFlow's start-up lines kept off the console.

TensorFlow is used only for input pipelines (JAX owns the accelerators). Imported
plainly it prints, before its own log level applies, absl's "All log messages before
absl::InitializeLog()" banner and "Could not find cuda drivers" (once per native
library that loads), a CPU-feature note, and on a machine without a GPU a
`failed call to cuInit` error the first time a TensorFlow op runs. None of these
concern the run.

  from plm_jax import startup
  startup.quiet_tensorflow()   # first thing, before anything imports TensorFlow

sets TF_CPP_MIN_LOG_LEVEL=2 (unless set: then it is left as the user chose), imports
TensorFlow with the process's stderr (file descriptor 2, where the native code
writes) sent to a temporary file, hides GPUs from TensorFlow while still inside
(this is where CUDA is probed), and restores stderr. What was captured is written
back if the import fails, or when the user set TF_CPP_MIN_LOG_LEVEL=0 (they asked
for everything). Nothing is imported when this module is imported.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import IO, Iterator

LOG_LEVEL_VAR = "TF_CPP_MIN_LOG_LEVEL"


@contextlib.contextmanager
def _stderr_captured() -> Iterator[IO[bytes]]:
  """Sends file descriptor 2 to a temporary file for the block; yields that file."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile(mode="w+b") as capture:
    os.dup2(capture.fileno(), 2)
    try:
      yield capture
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)


def quiet_tensorflow() -> None:
  """Imports TensorFlow without its native start-up lines (see the module docstring).

  Call it before anything imports TensorFlow; once TensorFlow is imported it only
  sets the log level default.
  """
  user_level = os.environ.get(LOG_LEVEL_VAR)
  os.environ.setdefault(LOG_LEVEL_VAR, "2")
  if "tensorflow" in sys.modules:
    return
  text, failed = "", True
  try:
    with _stderr_captured() as capture:
      try:
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        # Probes CUDA (the cuInit line) here, inside the capture, rather than at the
        # pipeline's first op; TensorFlow never needs a GPU in this project.
        tf.config.set_visible_devices([], "GPU")
        failed = False
      finally:
        capture.seek(0)
        text = capture.read().decode("utf-8", errors="replace")
  finally:
    if failed or user_level == "0":
      sys.stderr.write(text)
      sys.stderr.flush()


CACHE_VAR = "PLM_JAX_COMPILATION_CACHE"


def compilation_cache_dir() -> str:
  """Where compiled XLA programs are kept between runs; "" when caching is off.

  JAX's own JAX_COMPILATION_CACHE_DIR wins when set. Otherwise PLM_JAX_COMPILATION_CACHE
  names the directory ("0" or "off" turns caching off); unset, it is
  $XDG_CACHE_HOME/plm_jax/xla (~/.cache/plm_jax/xla).
  """
  if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return os.environ["JAX_COMPILATION_CACHE_DIR"]
  value = os.environ.get(CACHE_VAR, "")
  if value.lower() in ("0", "off", "false", "no"):
    return ""
  if value:
    return os.path.abspath(os.path.expanduser(value))
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "plm_jax", "xla")


def enable_compilation_cache() -> str:
  """Turns on JAX's persistent compilation cache (see compilation_cache_dir).

  A rerun, a resumed run, every seed of a fine-tuning matrix and each length bucket
  seen before then load the compiled train and eval steps instead of compiling them
  again (on CPU about half of a step's compile time is saved; on TPU most of it).
  Call it before the first jit compiles. Returns the directory ("" when off, or when
  the directory cannot be created: caching is an optimisation, never a failure).
  """
  path = compilation_cache_dir()
  if not path:
    return ""
  try:
    os.makedirs(path, exist_ok=True)
  except OSError:
    return ""
  import jax  # pylint: disable=import-outside-toplevel
  jax.config.update("jax_compilation_cache_dir", path)
  return path
