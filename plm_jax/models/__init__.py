"""Model families: one module per family (frozen config dataclass + backbone + heads)."""
