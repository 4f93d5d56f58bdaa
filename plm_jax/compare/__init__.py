"""The comparison: every family pretrained at one training-FLOP budget, then fine-tuned alike.

  python main.py --config=configs/compare.py:cpu --workdir=DIR     # run (resumable) + report

plm_jax.compare.runner runs the stages, plm_jax.compare.report writes report.md,
results.json and the plots, plm_jax.compare.paper holds the published points they are
drawn beside.
"""
