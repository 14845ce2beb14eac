"""Every difference between the supported Paddle versions (2.6.2 to 3.3), in one place.

Model and layer code calls these helpers instead of checking versions itself:

* :func:`check_paddle_version`: ``import paddle_vits`` fails at once below
  :data:`MIN_PADDLE` with a message naming both versions;
* :func:`trunc_normal_`: truncated normal with absolute bounds ``a``/``b``
  (timm's semantics). ``TruncatedNormal(a=, b=)`` exists from Paddle 3.0;
  Paddle 2.6 truncates at two standard deviations, so there the same
  distribution is drawn by inverse CDF (as timm does) from Paddle's RNG;
* :func:`set_train_mode`: ``Layer.train(mode)`` (``train`` takes no argument
  before Paddle 3.3);
* :func:`scaled_dot_product_attention`: Paddle's fused attention from 3.0;
  in 2.6 it is a flash-attention kernel that the CPU build lacks (on GPU:
  float16/bfloat16 only), so there it is the same maths as plain ops;
* :func:`program_file`: the file ``paddle.jit.save`` writes the program to
  (``.json`` under PIR, Paddle >= 3.0; ``.pdmodel`` in 2.6);
* :func:`export_unsupported`: why ``paddle.jit.save``/ONNX export is not
  available here, or ``None``: it needs Paddle >= 3.0 (PIR programs; Paddle
  2.6's static graph cannot trace Wave-ViT's shapes, and paddle2onnx 2.x
  refuses Paddle < 3.0);
* :func:`sdpa_modules`: the modules that expose
  ``scaled_dot_product_attention`` (``paddle.nn.functional.sdpa`` from 3.0,
  ``flash_attention`` in 2.6), for the MAC counter's patching.

zlib: with Paddle 2.6.2, Python's ``zlib`` module loaded *after* ``paddle``
crashes (segmentation fault in ``inflateReset2``) on first use, e.g. reading a
``.tar.gz`` or a PNG; loaded before, it works. ``import paddle_vits`` loads it
first; code that imports ``paddle`` before ``paddle_vits`` (or ``zlib``) on
Paddle 2.6 must swap the two imports. Paddle 3.0 to 3.3 are not affected.

Known wrong gradient: ``paddle.gather(x, index, axis=k)`` with ``k > 0``
back-propagates a wrong gradient to every batch item but the first in Paddle
2.6.2 and 3.0.0 (right in 3.1.1, 3.2.2 and 3.3.1; the forward is right
everywhere). No model or layer uses it under autograd: channel permutations use ``paddle.index_select``,
whose gradient is right on every supported version, and the remaining
``paddle.gather`` (CrossFormer's bias table) is on axis 0.
``tests/test_compat.py`` checks the gradients of every indexing op the models
use on the installed Paddle.
"""
import importlib
import inspect
import math
import os
import re

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

__all__ = ["MIN_PADDLE", "PADDLE_VERSION", "check_paddle_version", "paddle_version", "trunc_normal_",
           "set_train_mode", "scaled_dot_product_attention", "program_file", "export_unsupported", "sdpa_modules"]

MIN_PADDLE = (2, 6, 2)
EXPORT_MIN_PADDLE = (3, 0, 0)
# The ``export`` extra leaves paddle2onnx out on Python >= 3.13, which it has no wheel for.
PADDLE2ONNX_MISSING = ("paddle2onnx is not installed (pip install paddle2onnx; it has no wheel for "
                       "Python >= 3.13, so the export extra leaves it out there)")


def paddle_version(version=None):
    """``(major, minor, patch)`` of ``version`` (default: the installed Paddle); a dev build reads as 0.0.0."""
    parts = re.findall(r"\d+", str(version or paddle.__version__))[:3]
    return tuple(int(p) for p in parts + ["0"] * (3 - len(parts)))


PADDLE_VERSION = paddle_version()


def check_paddle_version(version=None):
    """Raise ``ImportError`` naming the installed and the required Paddle when ``version`` is too old.

    A develop build (``0.0.0``) is accepted: it is newer than any release.
    """
    v = paddle_version(version)
    if v != (0, 0, 0) and v < MIN_PADDLE:
        need = ".".join(map(str, MIN_PADDLE))
        raise ImportError(
            f"paddle_vits needs PaddlePaddle >= {need}, but {version or paddle.__version__} is installed "
            f'(upgrade: pip install "paddlepaddle>={need}", or paddlepaddle-gpu for a GPU build)'
        )


def trunc_normal_(param, mean=0.0, std=1.0, a=-2.0, b=2.0):
    """Fill ``param`` in place with N(mean, std) truncated to ``[a, b]`` (absolute bounds)."""
    if "a" in inspect.signature(nn.initializer.TruncatedNormal.__init__).parameters:
        nn.initializer.TruncatedNormal(mean=mean, std=std, a=a, b=b)(param)
        return param
    return _trunc_normal_inverse_cdf_(param, mean, std, a, b)


def _trunc_normal_inverse_cdf_(param, mean, std, a, b):
    """Paddle 2.6: uniform between the bounds' CDF values, mapped back by ``erfinv`` (as timm does)."""
    def cdf(x):
        return (1.0 + math.erf((x - mean) / std / math.sqrt(2.0))) / 2.0

    u = paddle.uniform(param.shape, dtype="float32", min=2 * cdf(a) - 1, max=2 * cdf(b) - 1)
    value = paddle.erfinv(u) * (std * math.sqrt(2.0)) + mean
    param.set_value(paddle.clip(value, a, b).astype(param.dtype))
    return param


def set_train_mode(layer, mode=True):
    """``layer.train(mode)`` on every supported Paddle: training if ``mode``, else evaluation."""
    if mode:
        layer.train()
    else:
        layer.eval()
    return layer


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, training=True):
    """``softmax(q k^T / sqrt(D) + attn_mask) v`` on ``[B, N, H, D]`` tensors, as Paddle's SDPA.

    ``attn_mask`` is additive, broadcast to ``[B, H, N, M]``. Paddle >= 3.0
    runs ``paddle.nn.functional.scaled_dot_product_attention`` (looked up at
    call time, so the MAC counter's patch sees it).
    """
    if PADDLE_VERSION >= (3, 0, 0) or PADDLE_VERSION == (0, 0, 0):
        return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p,
                                              training=training)
    q, k, v = (t.transpose([0, 2, 1, 3]) for t in (query, key, value))  # [B, N, H, D] -> [B, H, N, D]
    attn = (q * (q.shape[-1] ** -0.5)) @ k.transpose([0, 1, 3, 2])  # [B, H, N, M]
    if attn_mask is not None:
        attn = attn + attn_mask
    attn = F.dropout(F.softmax(attn, axis=-1), p=dropout_p, training=training)
    return (attn @ v).transpose([0, 2, 1, 3])  # [B, H, N, D] -> [B, N, H, D]


def sdpa_modules():
    """Modules other than ``paddle.nn.functional`` whose ``scaled_dot_product_attention`` callers may use."""
    mods = []
    for name in ("paddle.nn.functional.sdpa", "paddle.nn.functional.flash_attention"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(mod, "scaled_dot_product_attention"):
            mods.append(mod)
    return mods


def program_file(prefix):
    """The program file ``paddle.jit.save(layer, prefix)`` wrote: ``prefix.json``, or ``prefix.pdmodel`` (2.6)."""
    json_path = prefix + ".json"
    if os.path.exists(json_path) or not os.path.exists(prefix + ".pdmodel"):
        return json_path
    return prefix + ".pdmodel"


def export_unsupported():
    """``None`` where ``paddle.jit.save`` and ONNX export work, else the reason (one line, with the fix)."""
    if PADDLE_VERSION != (0, 0, 0) and PADDLE_VERSION < EXPORT_MIN_PADDLE:
        need = ".".join(map(str, EXPORT_MIN_PADDLE))
        return (f"export needs PaddlePaddle >= {need} (PIR programs), but {paddle.__version__} is installed "
                f'(pip install "paddlepaddle>={need}")')
    return None
