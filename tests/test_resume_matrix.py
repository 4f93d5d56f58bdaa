"""kill -9 and resume, bit-exact, for every registered objective (slow: four main.py processes
per objective, ~1-4 min each on 2 cores; BERT's runs in the fast tier in test_train_resume.py).

Per objective (its configs/*.py at 'tiny', shrunk further where it has the keys; the GLUE,
SQuAD and T5 GLUE objectives at their tiny RTE / article-split sizes from ../shared/data, the
T5 ones with a SentencePiece model learnt here from the builtin corpus): one straight
run; one run killed (SIGKILL) after an early checkpoint, resumed and killed again after a later
one, resumed to the end. The resumed runs' per-step losses (the next batches) and the final
checkpoint's train state (params and optimizer state) equal the straight run's bit for bit; each
resume restored the data iterator, or, for a source tf.data cannot checkpoint, replayed it after
the one WARNING line."""
import os
import re
import signal
import subprocess
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

import main_runner
from plm_jax.objectives.base import registered

STEPS, EVERY, LATE = 30, 5, 15
# Sources whose train iterator tf.data cannot checkpoint (tf.data.Dataset.from_generator).
REPLAYS = {"glue", "glue_t2t", "squad"}   # plm_jax/finetune/common.py bucketed_dataset
# Objectives that read a SentencePiece model with T5's layout: the key naming its path.
SPM_KEYS = {"t5_span_corruption": "data.vocab.path", "glue_t2t": "vocab.path"}
# Label words take more pieces under that 150-piece model ('not_entailment': 12 with EOS).
EXTRA = {"glue_t2t": ["--config.task.targets_length=16"]}


_SHRINK = {"model": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
                     "max_position_embeddings": 64},
           "data": {"seq_length": 32, "shuffle_buffer": 64, "reuse_length": 16, "group_size": 32},
           "mlm": {"max_predictions": 5}}


@pytest.fixture(scope="module")
def t5_spm(tmp_path_factory):
  """A SentencePiece model with T5's layout from the builtin corpus and the RTE label words."""
  from plm_jax.data import builtin, spm_train  # pylint: disable=import-outside-toplevel
  d = tmp_path_factory.mktemp("spm")
  text = d / "text.txt"
  text.write_text("\n\n".join(["entailment not_entailment rte sentence1 sentence2"] * 20 +
                               list(builtin.iter_documents(300, seed=0))))
  spm_train.train(str(text), str(d / "t5"), 150, layout="t5", max_sentences=3000)
  return str(d / "t5.model")


def _overrides(config):
  out = [f"--config.train.{k}={v}" for k, v in dict(
      batch_size=8, num_steps=STEPS, checkpoint_every=EVERY, log_every=1, eval_every=-1,
      params_export=False, num_epochs=0.0).items() if k in config.train]
  for section, keys in _SHRINK.items():
    if section in config:
      out += [f"--config.{section}.{k}={v}" for k, v in keys.items() if k in config[section]]
  return out


def _losses(stdout):
  return {int(m.group(1)): m.group(2) for m in
          re.finditer(r"^step (\d+)/\d+ \| loss (\S+)", stdout, re.M)}


def _kill_after(workdir, args, min_step):
  proc = subprocess.Popen(main_runner.command(workdir, *args, tiny=False), env=main_runner.env(),
                          cwd=main_runner.REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 900
  while time.time() < deadline and proc.poll() is None and not any(
      s >= min_step for s in main_runner.committed_steps(workdir)):
    time.sleep(0.02)
  assert proc.poll() is None, "ended before it could be killed:\n" + proc.stdout.read()[-3000:]
  proc.send_signal(signal.SIGKILL)
  out = proc.communicate()[0]
  return out, main_runner.committed_steps(workdir)[-1]


def _state(workdir):
  path = os.path.join(workdir, "checkpoints", str(STEPS), "state")
  return ocp.StandardCheckpointer().restore(path)


@pytest.mark.slow
@pytest.mark.parametrize("objective", registered())
def test_kill_and_resume_is_bit_exact(objective, tmp_path, request):
  import jax  # pylint: disable=import-outside-toplevel
  configs = main_runner.configs_by_objective()
  assert objective in configs, f"no configs/*.py file for objective {objective}"
  path, config = configs[objective]
  args = [f"--config={path}"] + _overrides(config) + EXTRA.get(objective, [])
  if objective in SPM_KEYS:
    args.append(f"--config.{SPM_KEYS[objective]}={request.getfixturevalue('t5_spm')}")
  straight_dir = str(tmp_path / "straight")
  straight = main_runner.run(straight_dir, *args, tiny=False, timeout=900)
  if straight.returncode and ("not found" in straight.stderr or "absent" in straight.stderr):
    pytest.skip(f"{objective}: its data is absent here ({main_runner.error_lines(straight.stderr)})")
  assert straight.returncode == 0, straight.stderr[-3000:]
  reference = _losses(straight.stdout)
  assert len(reference) == STEPS

  killed = str(tmp_path / "killed")
  _, early = _kill_after(killed, args, EVERY)
  outputs = []
  out, late = _kill_after(killed, args, LATE)
  outputs.append((early, out))
  final = main_runner.run(killed, *args, tiny=False, timeout=900)
  assert final.returncode == 0, final.stderr[-3000:]
  outputs.append((late, final.stdout))
  assert early < late < STEPS, (early, late)

  for step, out in outputs:
    assert f"resumed from step {step}" in out, out[-2000:]
    if objective in REPLAYS:
      assert f"WARNING: resume replays {step} batches" in out, out[-2000:]
    else:
      assert f"restored the train data iterator at batch {step}" in out, out[-2000:]
      assert "replay" not in out, out[-2000:]
    for s, loss in _losses(out).items():      # the next batches: the same losses
      assert loss == reference[s], (objective, s, loss, reference[s])
  a, b = _state(killed), _state(straight_dir)
  la, lb = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
  assert [p for p, _ in la] == [p for p, _ in lb]
  for (p, x), (_, y) in zip(la, lb):          # params, optimizer state, step
    assert np.asarray(x).tobytes() == np.asarray(y).tobytes(), (objective, jax.tree_util.keystr(p))
