"""cait family (in progress)."""
