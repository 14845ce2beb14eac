"""``argparse`` types that check a number's range and name the valid one in the error.

    p.add_argument("--batch-size", type=int_at_least(1), default=64)
    p.add_argument("--crop-pct", type=float_range(0.0, 1.0, low_open=True))

A bad value exits 2 with argparse's usage line and, e.g.,
``argument --batch-size: must be an integer >= 1, got '0'``.
"""
import argparse
import math

__all__ = ["int_at_least", "float_range"]


def int_at_least(low, high=None):
    """An ``int`` in ``[low, high]`` (``high=None``: no upper bound)."""
    valid = f">= {low}" if high is None else f"in {low}..{high}"

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer {valid}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be an integer {valid}, got {text!r}")
        return value

    parse.__name__ = "int"
    return parse


def float_range(low=None, high=None, low_open=False, high_open=False):
    """A finite ``float`` between ``low`` and ``high`` (open or closed ends; ``None``: unbounded)."""
    lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
    hi = "" if high is None else f"{high:g}" + (")" if high_open else "]")
    valid = f"in {lo or '(-inf'}, {hi or 'inf)'}"

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number {valid}, got {text!r}") from None
        bad = not math.isfinite(value)
        bad |= low is not None and (value <= low if low_open else value < low)
        bad |= high is not None and (value >= high if high_open else value > high)
        if bad:
            raise argparse.ArgumentTypeError(f"must be a number {valid}, got {text!r}")
        return value

    parse.__name__ = "float"
    return parse
