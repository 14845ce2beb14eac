"""Single-level 2-D discrete wavelet transform (DWT) and its inverse (IDWT).

Wave-ViT (Yao et al., ECCV 2022) down-samples keys/values with a Haar DWT and
restores resolution with the IDWT. Each is one grouped stride-2 convolution
with fixed 2x2 filters built from PyWavelets, run as a
:class:`paddle.autograd.PyLayer` with a hand-written backward: the DWT's
adjoint is the transposed convolution with the same filters, and vice versa.

Sub-band order and signs follow the official Wave-ViT code (YehLi/ImageNetModel,
``classification/torch_wavelets.py``): sub-band ``ll, lh, hl, hh`` equals
PyWavelets' ``cA, cH, cV, cD`` of ``pywt.dwt2(x, wave)`` per channel.

Two channel orders are supported:

* ``"blocked"`` (official): ``[ll_0..ll_{C-1} | lh_0.. | hl_0.. | hh_0..]``;
* ``"interleaved"``: ``[ll_0, lh_0, hl_0, hh_0, ll_1, ...]``, what the
  grouped convolution produces. The blocked order adds a channel gather
  (forward and backward), ~1.4x the cost of the interleaved transform on
  CPU (``scripts/benchmark_wavelets.py``). A consumer can take the
  interleaved order and permute its own weights instead
  (:func:`interleave_permutation`), as Wave-ViT does.

Export: ``paddle2onnx`` refuses PyLayers. Set ``layer.use_pylayer = False``
(``WaveViT.set_export_mode(True)`` does it for a model) to run the same
convolutions as plain ops; the PyLayer is also skipped automatically when
tracing with ``paddle.jit.to_static``. Both paths give identical numbers.
"""
import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.autograd import PyLayer

__all__ = ["DWT2D", "IDWT2D", "dwt_filters", "idwt_filters", "interleave_permutation"]

_ORDERS = ("blocked", "interleaved")


def _wavelet(wave):
    import pywt

    w = wave if isinstance(wave, pywt.Wavelet) else pywt.Wavelet(wave)
    if not w.orthogonal or w.dec_len != 2:
        raise ValueError(
            f"wavelet {w.name!r} is not supported: the DWT/IDWT layers implement orthogonal wavelets "
            f"with filter length 2 (got orthogonal={w.orthogonal}, filter length {w.dec_len}). "
            "Use 'haar' (or its alias 'db1')."
        )
    return w


def _sub_band_filters(lo, hi):
    """``[4, 2, 2]`` filters ``ll, lh, hl, hh``; ``w_ab[i, j] = b[i] * a[j]`` (a: width, b: height)."""
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    return np.stack([np.outer(b, a) for a, b in ((lo, lo), (lo, hi), (hi, lo), (hi, hi))])


def dwt_filters(wave="haar"):
    """Analysis filters ``[4, 2, 2]`` (float64) in sub-band order ``ll, lh, hl, hh``.

    Correlating with them (stride 2) equals ``pywt.dwt2``: the decomposition
    filters are reversed, as convolution flips them.
    """
    w = _wavelet(wave)
    return _sub_band_filters(w.dec_lo[::-1], w.dec_hi[::-1])


def idwt_filters(wave="haar"):
    """Synthesis filters ``[4, 2, 2]`` (float64), applied by a stride-2 transposed convolution."""
    w = _wavelet(wave)
    return _sub_band_filters(w.rec_lo, w.rec_hi)


def interleave_permutation(channels):
    """Index ``perm`` with ``interleaved = blocked[:, perm]`` for ``4 * channels`` sub-band channels.

    Interleaved channel ``4 * c + s`` is blocked channel ``s * channels + c``.
    """
    c = np.arange(channels)
    return (np.arange(4)[None, :] * channels + c[:, None]).reshape(-1)  # [C, 4] -> [4C]


def _dwt(x, weight, groups, index):
    y = F.conv2d(x, weight, stride=2, groups=groups)  # [B, C, H, W] -> [B, 4C, H/2, W/2], interleaved
    return y if index is None else paddle.index_select(y, index, axis=1)  # -> blocked


def _idwt(x, weight, groups, index):
    if index is not None:
        x = paddle.index_select(x, index, axis=1)  # blocked -> interleaved
    return F.conv2d_transpose(x, weight, stride=2, groups=groups)  # [B, 4C, H, W] -> [B, C, 2H, 2W]


class _DWTFunction(PyLayer):
    """DWT: grouped stride-2 convolution (+ channel gather to blocked order); backward: its adjoint.

    ``indices`` is ``None`` (interleaved) or ``(to_blocked, to_interleaved)``.
    """

    @staticmethod
    def forward(ctx, x, weight, groups, indices):
        ctx.weight, ctx.groups, ctx.indices = weight, groups, indices
        return _dwt(x, weight, groups, None if indices is None else indices[0])

    @staticmethod
    def backward(ctx, dy):
        return _idwt(dy, ctx.weight, ctx.groups, None if ctx.indices is None else ctx.indices[1])


class _IDWTFunction(PyLayer):
    """IDWT: (channel gather to interleaved order +) grouped stride-2 transposed convolution;
    backward: its adjoint. ``indices`` as in :class:`_DWTFunction`."""

    @staticmethod
    def forward(ctx, x, weight, groups, indices):
        ctx.weight, ctx.groups, ctx.indices = weight, groups, indices
        return _idwt(x, weight, groups, None if indices is None else indices[1])

    @staticmethod
    def backward(ctx, dy):
        return _dwt(dy, ctx.weight, ctx.groups, None if ctx.indices is None else ctx.indices[0])


def _use_pylayer(layer):
    return layer.use_pylayer and paddle.in_dynamic_mode()


class _WaveletBase(nn.Layer):
    def __init__(self, wave, channel_order, filters):
        super().__init__()
        if channel_order not in _ORDERS:
            raise ValueError(f"channel_order must be one of {_ORDERS}, got {channel_order!r}")
        self.wave = _wavelet(wave).name
        self.channel_order = channel_order
        self.use_pylayer = True
        # Fixed filters, recomputed from PyWavelets: not saved in state dicts.
        self.register_buffer("filters", paddle.to_tensor(filters.astype(np.float32)[:, None]), persistable=False)

    def _weight(self, channels, dtype):
        """Filters tiled per channel: ``[4C, 1, 2, 2]``, interleaved order."""
        return paddle.tile(self.filters.astype(dtype), [channels, 1, 1, 1])  # [4, 1, 2, 2] -> [4C, 1, 2, 2]

    def _indices(self, channels):
        """``None`` (interleaved) or gather indices ``(to_blocked, to_interleaved)``.

        A channel ``index_select`` is ~10x faster than the equivalent
        reshape/transpose on CPU (Paddle 3.3), and as fast as ``paddle.gather``,
        whose gradient on a non-leading axis is wrong in Paddle 2.6 and 3.0
        (see :mod:`paddle_vits.utils.compat`).
        """
        if self.channel_order == "interleaved":
            return None
        perm = interleave_permutation(channels)
        return paddle.to_tensor(np.argsort(perm)), paddle.to_tensor(perm)

    def extra_repr(self):
        return f"wave={self.wave!r}, channel_order={self.channel_order!r}"


class DWT2D(_WaveletBase):
    """One level of the 2-D DWT: ``[B, C, H, W] -> [B, 4C, H/2, W/2]``.

    Args:
        wave: PyWavelets name (or ``pywt.Wavelet``) of an orthogonal wavelet
            with filter length 2: ``"haar"`` (default) or ``"db1"``.
        channel_order: ``"blocked"`` (official: all ``ll``, then ``lh``,
            ``hl``, ``hh``) or ``"interleaved"`` (the four sub-bands of each
            input channel next to each other; faster).

    Raises:
        ValueError: for another wavelet, or for an odd height or width.
    """

    def __init__(self, wave="haar", channel_order="blocked"):
        super().__init__(wave, channel_order, dwt_filters(wave))

    def forward(self, x):
        B, C, H, W = x.shape
        if (H > 0 and H % 2) or (W > 0 and W % 2):
            raise ValueError(
                f"DWT2D needs an even height and width, got {H}x{W}: crop or pad the input "
                "(for Wave-ViT, use an image size that is a multiple of 32)."
            )
        weight, indices = self._weight(C, x.dtype), self._indices(C)
        if _use_pylayer(self):
            return _DWTFunction.apply(x, weight, C, indices)
        return _dwt(x, weight, C, None if indices is None else indices[0])


class IDWT2D(_WaveletBase):
    """One level of the inverse 2-D DWT: ``[B, 4C, H, W] -> [B, C, 2H, 2W]``.

    Args:
        wave: As in :class:`DWT2D`.
        channel_order: Order of the input sub-bands, as in :class:`DWT2D`.

    Raises:
        ValueError: for another wavelet, or when the channels are not a multiple of 4.
    """

    def __init__(self, wave="haar", channel_order="blocked"):
        super().__init__(wave, channel_order, idwt_filters(wave))

    def forward(self, x):
        C4 = x.shape[1]
        if C4 % 4:
            raise ValueError(f"IDWT2D needs 4 sub-bands per channel: input channels {C4} is not a multiple of 4")
        C = C4 // 4
        weight, indices = self._weight(C, x.dtype), self._indices(C)
        if _use_pylayer(self):
            return _IDWTFunction.apply(x, weight, C, indices)
        return _idwt(x, weight, C, None if indices is None else indices[1])
