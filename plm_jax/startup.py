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
