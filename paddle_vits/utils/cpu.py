"""CPU kernel dispatch: make Paddle's MKL use its AVX2 kernels on AMD processors.

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
"""
import os


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
