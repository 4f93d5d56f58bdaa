"""Test-wide environment: 8 simulated CPU devices and a quiet TensorFlow.

Runs before any test module imports jax, so XLA sees the flag. An XLA_FLAGS
already set by the caller is left alone.
"""
import os

if "XLA_FLAGS" not in os.environ:
  os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The persistent compilation cache (plm_jax.startup) is off for the suite: a cold cache
# only adds writes, and tests/test_startup.py checks it on its own.
os.environ.setdefault("PLM_JAX_COMPILATION_CACHE", "off")
