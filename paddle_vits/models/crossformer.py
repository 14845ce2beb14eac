"""crossformer family (in progress)."""
