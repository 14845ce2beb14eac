"""Helpers: tuple expansion, CPU thread setup."""
import collections.abc
import os
from itertools import repeat


def _ntuple(n):
    def parse(x):
        if isinstance(x, collections.abc.Iterable) and not isinstance(x, str):
            return tuple(x)
        return tuple(repeat(x, n))

    return parse


to_2tuple = _ntuple(2)


def set_num_threads(n=None):
    """Set the CPU thread count used by Paddle's kernels.

    ``import paddle`` pins OpenMP to one thread; scripts call this so CPU
    figures use every core. ``n=None`` uses all cores visible to the process.
    Returns the number set.
    """
    import paddle

    if n is None or n <= 0:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    os.environ["OMP_NUM_THREADS"] = str(n)
    paddle.base.core.set_num_threads(n)
    return n
