"""crossvit family (in progress)."""
