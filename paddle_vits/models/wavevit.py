"""wavevit family (in progress)."""
