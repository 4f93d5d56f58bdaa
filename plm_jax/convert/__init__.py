"""Weight import/export: one declarative mapping table per family (hf_bert.py for BERT)."""
