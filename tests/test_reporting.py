"""Reporter: the console line and metrics.jsonl as before, TensorBoard scalars through
clu's metric writers (event files TensorBoard reads)."""
import glob
import json
import os

import numpy as np

from plm_jax.train import reporting


def _event_scalars(directory):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  out = {}
  for path in glob.glob(os.path.join(directory, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        out[(value.tag, event.step)] = float(tf.make_ndarray(value.tensor))
  return out


def test_scalars_reach_the_event_file_and_the_console_is_unchanged(tmp_path, capsys):
  workdir = str(tmp_path)
  r = reporting.Reporter(workdir, num_steps=10, tokens_per_step=64)
  r.start(0)
  r.train(1, {"loss": 2.5, "mlm_accuracy": 0.25}, 1e-3, compile_seconds=3.0)
  r.train(5, {"loss": 2.0, "mlm_accuracy": 0.5}, 5e-4)
  r.eval(5, {"loss": 2.25, "examples": 32.0})
  r.close()
  lines = capsys.readouterr().out.splitlines()
  assert lines[0] == ("step 1/10 | loss 2.5000 | mlm_acc 0.2500 | lr 0.001 | train step "
                      "compiled in 3.0 s")
  assert lines[1].startswith("step 5/10 | loss 2.0000 | mlm_acc 0.5000 | lr 0.0005 | ")
  assert lines[2] == "eval  5/10 | loss 2.2500 | examples 32.0000"
  history = reporting.read_history(workdir)
  assert [(h["split"], h["step"], h["loss"]) for h in history] == [
      ("train", 1, 2.5), ("train", 5, 2.0), ("eval", 5, 2.25)]

  scalars = _event_scalars(os.path.join(workdir, "tensorboard"))
  for record in history:
    for key, value in record.items():
      if key not in ("split", "step"):
        np.testing.assert_allclose(scalars[(f"{record['split']}/{key}", record["step"])], value,
                                   rtol=1e-6, err_msg=key)
  assert scalars[("train/steps_per_sec", 5)] > 0
  assert ("train/steps_per_sec", 1) not in scalars   # the compile step has no rate
  with open(os.path.join(workdir, reporting.HISTORY_FILE)) as f:
    assert json.loads(f.readline())["learning_rate"] == 1e-3
