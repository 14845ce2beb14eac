"""CPU speed settings ``import paddle_vits`` applies: MKL's AVX2 kernels on AMD, freed memory kept, eager copies.

**MKL on AMD.**

Paddle's CPU wheels ship an old MKL (``libmklml_intel``) that picks its code
path by CPU vendor: on AMD processors it runs the generic SSE2 kernels, so
every matrix product (``nn.Linear``, attention) and MKL's vector maths (exact
GELU) run about 10x slower than on an Intel CPU of the same class (measured in
``docs/performance.md``: a ``[3152, 192] x [192, 576]`` product, 2 threads,
53 ms against 5.6 ms). That MKL honours ``MKL_DEBUG_CPU_TYPE=5``, which selects
the AVX2 path regardless of vendor. MKL reads the variable on its first call,
so it must be set before the first matrix product, not before ``import
paddle``; ``import paddle_vits`` does it. The results differ only by float
rounding (another GEMM blocking), which the parity fixtures check.

An explicit ``MKL_DEBUG_CPU_TYPE`` in the environment is left as it is, and
nothing changes on Intel or other CPUs (whose MKL path is already the fast one).

**Freed memory kept** (:func:`keep_freed_memory`). Paddle's CPU tensors come
from glibc's ``malloc``, which serves every block above its mmap threshold
(128 KiB, growing to at most 32 MiB) with a fresh ``mmap`` and returns it on
``free``; a ViT activation at batch 16 is 4-100 MB, so every eager op paid
for faulting its output's pages in anew (``docs/performance.md``, "Op work":
a 4 M-element product 37 ms against 5 ms, 2 threads). Setting
``M_MMAP_MAX = 0`` and a 1 GiB ``M_TRIM_THRESHOLD`` makes ``malloc`` serve
them from its heap and keep freed blocks for the next op. Numbers do not
change; the cost is that the process keeps its peak heap instead of giving
memory back between steps. Nothing is set when the environment sets a glibc
malloc variable (``MALLOC_MMAP_MAX_``, ``MALLOC_TRIM_THRESHOLD_``,
``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TOP_PAD_``, ``GLIBC_TUNABLES``), when
``PADDLE_VITS_MALLOC=system`` opts out, or where there is no glibc.

**Transposes copied at once** (:func:`copy_views_eagerly`). In Paddle 3
``transpose``, ``unbind`` and slices return strided views by default
(``FLAGS_use_stride_kernel``), and the next op that needs a dense input copies
the view with a generic strided-copy kernel, which on CPU is about 15x slower
than the transpose kernel itself ("Op work": a ``[1024, 49, 2, 32]`` transpose
copy 160 ms against 11 ms). Attention, the wavelet blocks and CrossFormer's
grouping all transpose and reshape, so on builds without a GPU the flag is
turned off (every view op then returns a dense copy, as in Paddle 2.6).
Numbers do not change. An explicit ``FLAGS_use_stride_kernel`` in the
environment is left as it is, as is every GPU build.
"""
import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD = 1 << 30
"""Free memory above this at the heap's top goes back to the OS (1 GiB)."""
MALLOC_ENV = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_",
              "GLIBC_TUNABLES")


def cpu_vendor(cpuinfo="/proc/cpuinfo"):
    """``vendor_id`` of the first CPU in ``cpuinfo`` (``""`` when unreadable, e.g. not Linux)."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def use_fast_mkl_path(environ=None, vendor=None):
    """Set ``MKL_DEBUG_CPU_TYPE=5`` on AMD CPUs unless already set; returns the value in effect (or None)."""
    environ = os.environ if environ is None else environ
    if "MKL_DEBUG_CPU_TYPE" not in environ and (vendor if vendor is not None else cpu_vendor()) == "AuthenticAMD":
        environ["MKL_DEBUG_CPU_TYPE"] = "5"
    return environ.get("MKL_DEBUG_CPU_TYPE")


def _glibc():
    """The running glibc (``None`` elsewhere: musl, macOS, Windows)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # glibc only
        return libc
    except (OSError, AttributeError):
        return None


def keep_freed_memory(environ=None, libc=None):
    """Make glibc's ``malloc`` keep freed large blocks for reuse (module docstring); True when set.

    Args:
        environ: Environment to read (default ``os.environ``).
        libc: The C library (default: the running glibc, if any).
    """
    environ = os.environ if environ is None else environ
    if environ.get("PADDLE_VITS_MALLOC") == "system" or any(k in environ for k in MALLOC_ENV):
        return False
    libc = _glibc() if libc is None else libc
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def copy_views_eagerly(environ=None):
    """Set ``FLAGS_use_stride_kernel`` off on Paddle builds without a GPU (module docstring); True when set.

    Args:
        environ: Environment to read (default ``os.environ``).
    """
    import paddle

    environ = os.environ if environ is None else environ
    if "FLAGS_use_stride_kernel" in environ or paddle.is_compiled_with_cuda():
        return False
    try:
        paddle.set_flags({"FLAGS_use_stride_kernel": False})
    except ValueError:  # a Paddle without the flag has no strided views
        return False
    return True
