"""Building blocks shared by model families (attention, embeddings, MLPs, stacks)."""
