"""Interim export writer (replaced by the converter registry's export module)."""
import dataclasses
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp


def save_export(export_dir, params, model_config, family):
  export_dir = os.path.abspath(export_dir)
  os.makedirs(export_dir, exist_ok=True)
  ckptr = ocp.StandardCheckpointer()
  ckptr.save(os.path.join(export_dir, "params"),
             jax.tree_util.tree_map(jnp.asarray, nn.unbox(params)), force=True)
  ckptr.wait_until_finished()
  ckptr.close()
  if jax.process_index() == 0:
    cls = type(model_config)
    with open(os.path.join(export_dir, "plm_config.json"), "w") as f:
      json.dump({"family": family, "config_class": f"{cls.__module__}.{cls.__qualname__}",
                 "config": dataclasses.asdict(model_config)}, f, indent=2)
  return export_dir
