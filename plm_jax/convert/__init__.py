"""Weight import/export: one registry keyed by the HF model_type (registry.py), one rule
table per family (hf_<family>.py), one params export format (export.py)."""
