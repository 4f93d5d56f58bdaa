"""plm_jax.startup: the persistent compilation cache's directory and that it is used."""
import os
import subprocess
import sys

from plm_jax import startup

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cache_dir_resolution(monkeypatch, tmp_path):
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  monkeypatch.delenv(startup.CACHE_VAR, raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert startup.compilation_cache_dir() == str(tmp_path / "xdg" / "plm_jax" / "xla")
  monkeypatch.setenv(startup.CACHE_VAR, str(tmp_path / "mine"))
  assert startup.compilation_cache_dir() == str(tmp_path / "mine")
  for off in ("0", "off", "OFF", "false"):
    monkeypatch.setenv(startup.CACHE_VAR, off)
    assert startup.compilation_cache_dir() == ""
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax"))
  assert startup.compilation_cache_dir() == str(tmp_path / "jax")   # JAX's own wins


_PROGRAM = """
import jax, jax.monitoring
events = []
jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
from plm_jax import startup
path = startup.enable_compilation_cache()
import jax.numpy as jnp
value = float(jax.jit(lambda x: jnp.tanh(x @ x.T).sum())(jnp.ones((64, 64))))
hits = sum(e.endswith("/cache_hits") for e in events)
misses = sum(e.endswith("/cache_misses") for e in events)
print(path, value, "hits", hits, "misses", misses)
"""


def test_second_process_loads_the_compiled_program(tmp_path):
  env = dict(os.environ, PLM_JAX_COMPILATION_CACHE=str(tmp_path / "cache"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", PYTHONPATH=REPO)
  env.pop("JAX_COMPILATION_CACHE_DIR", None)

  def run():
    out = subprocess.run([sys.executable, "-c", _PROGRAM], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    return out

  path, value, _, hits, _, misses = run()
  assert path == str(tmp_path / "cache")
  assert int(hits) == 0 and int(misses) > 0
  assert os.listdir(tmp_path / "cache"), "the first run wrote no compiled program"
  path2, value2, _, hits2, _, misses2 = run()
  assert (path2, value2) == (path, value)            # same result from the cached program
  assert int(hits2) == int(misses) and int(misses2) == 0   # every compile was loaded


def test_off_writes_nothing(tmp_path, monkeypatch):
  monkeypatch.setenv(startup.CACHE_VAR, "off")
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  assert startup.enable_compilation_cache() == ""
