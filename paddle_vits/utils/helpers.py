"""Helpers: tuple expansion, atomic checkpoint writes, CPU thread setup."""
import collections.abc
import os
import tempfile
from itertools import repeat


def _ntuple(n):
    def parse(x):
        if isinstance(x, collections.abc.Iterable) and not isinstance(x, str):
            return tuple(x)
        return tuple(repeat(x, n))

    return parse


to_2tuple = _ntuple(2)


def atomic_save(obj, path):
    """Write ``obj`` with :func:`paddle.save` to ``path`` atomically.

    The object is written to a temporary file in the destination directory,
    flushed to disk, then renamed over ``path``: a crash at any moment leaves
    either the previous file or the new one, never a truncated file.
    """
    import paddle

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".tmp", dir=directory)
    os.close(fd)
    try:
        paddle.save(obj, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


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
