"""Test-wide environment: 8 simulated CPU devices and a quiet TensorFlow.

Runs before any test module imports jax, so XLA sees the flag. An XLA_FLAGS
already set by the caller is left alone.
"""
import atexit
import os
import shutil
import tempfile

if "XLA_FLAGS" not in os.environ:
  os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The persistent compilation cache (plm_jax.startup) of the command-line runs that tests
# start goes to a fresh directory per test session: a run and its resume, or two runs
# of one config, compile a program once, and nothing is read from the user's cache.
# tests/test_startup.py checks the cache on its own directories.
if "PLM_JAX_COMPILATION_CACHE" not in os.environ:
  _CACHE = tempfile.mkdtemp(prefix="plm_jax_test_xla_")
  os.environ["PLM_JAX_COMPILATION_CACHE"] = _CACHE
  atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
