"""Count the multiply-accumulates (MACs) of one forward pass.

Why hand-written: ``paddle.flops`` crashes under numpy 2.x and counts only
``nn.Layer`` types, so it misses the attention matmuls (``q @ k^T``,
``attn @ v``), ``F.scaled_dot_product_attention`` and functional convolutions
(e.g. Wave-ViT's Haar DWT). Here the Python entry points of every
matrix-product op are wrapped for the duration of one forward pass, and each
call that actually runs is counted from its operand shapes:

* ``F.linear`` (what ``nn.Linear`` calls), ``F.conv._conv_nd`` (what
  ``nn.Conv2D/3D`` call), ``F.conv{1,2,3}d`` (some of their branches call the
  kernels directly), ``F.conv{1,2,3}d_transpose``;
* ``paddle.matmul``, ``Tensor.matmul``, ``Tensor.__matmul__`` (``@``),
  ``paddle.bmm``, ``paddle.einsum``;
* ``F.scaled_dot_product_attention`` (``q @ k^T`` and ``attn @ v``);
* ``F.layer_norm`` (what ``nn.LayerNorm`` calls), counted as fvcore does:
  5 per element with an affine transform, 4 without.

All of these dispatch straight to C++ kernels in Paddle 3.3; a depth guard
still counts only the outermost wrapped call, so an op implemented through
another wrapped op is never counted twice. Element-wise ops, norms, softmax
and activations are not counted, as in fvcore (which produced timm's published
GMACs); batch norms are not counted either (fvcore counts them in training mode only).
"""
import functools
import math
import threading
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field

from . import compat

__all__ = ["MacCount", "count_macs", "mac_counter"]


def _numel(shape):
    return int(math.prod(int(s) for s in shape))


def _arg(args, kwargs, index, name):
    return args[index] if len(args) > index else kwargs.get(name)


def _linear(args, kwargs, out):
    weight = _arg(args, kwargs, 1, "weight")  # Paddle layout [in, out]
    return _numel(out.shape) * int(weight.shape[0])


def _conv(args, kwargs, out):
    weight = _arg(args, kwargs, 1, "weight")  # [C_out, C_in / groups, *kernel]
    return _numel(out.shape) * _numel(weight.shape[1:])


def _conv_transpose(args, kwargs, out):
    x = _arg(args, kwargs, 0, "x")
    weight = _arg(args, kwargs, 1, "weight")  # [C_in, C_out / groups, *kernel]
    return _numel(x.shape) * _numel(weight.shape[1:])


def _matmul(args, kwargs, out):
    x = _arg(args, kwargs, 0, "x")
    transpose_x = bool(_arg(args, kwargs, 2, "transpose_x"))
    shape = list(x.shape)
    k = shape[-2] if transpose_x and len(shape) > 1 else shape[-1]
    return _numel(out.shape) * int(k)


def _einsum(args, kwargs, out):
    equation = (args[0] if args else kwargs["equation"]).replace(" ", "")
    operands = args[1:] if len(args) > 1 else kwargs.get("operands", ())
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = operands[0]
    inputs = equation.split("->")[0].split(",")
    output = equation.split("->")[1] if "->" in equation else ""
    sizes = {}
    for spec, op in zip(inputs, operands):
        shape = list(op.shape)
        left, _, right = spec.partition("...")
        for i, letter in enumerate(left):
            sizes[letter] = int(shape[i])
        for i, letter in enumerate(right):
            sizes[letter] = int(shape[len(shape) - len(right) + i])
    contracted = [l for l in sizes if l not in output] if "->" in equation else []
    return _numel(out.shape) * _numel([sizes[l] for l in contracted])


def _sdpa(args, kwargs, out):
    q = _arg(args, kwargs, 0, "query")  # [B, L_q, H, D]
    k = _arg(args, kwargs, 1, "key")  # [B, L_k, H_k, D]
    v = _arg(args, kwargs, 2, "value")  # [B, L_k, H_k, D_v]
    b, lq, h, d = (int(s) for s in q.shape)
    lk, dv = int(k.shape[1]), int(v.shape[-1])
    return b * h * lq * lk * (d + dv)


def _layer_norm(args, kwargs, out):
    weight = _arg(args, kwargs, 2, "weight")
    return _numel(out.shape) * (5 if weight is not None else 4)


def _targets():
    """``(owner, attribute, op kind, counter)`` for every wrapped entry point."""
    import paddle
    import paddle.nn.functional as F
    import paddle.nn.functional.common as F_common
    import paddle.nn.functional.conv as F_conv
    import paddle.nn.functional.norm as F_norm
    import paddle.nn.layer.norm as L_norm
    import paddle.tensor as T
    import paddle.tensor.linalg as T_linalg

    targets = [
        (F, "linear", "linear", _linear),
        (F_common, "linear", "linear", _linear),
        (F_conv, "_conv_nd", "conv", _conv),
        (F, "scaled_dot_product_attention", "sdpa", _sdpa),
        (F, "layer_norm", "layer_norm", _layer_norm),
        (F_norm, "layer_norm", "layer_norm", _layer_norm),
        (L_norm, "layer_norm", "layer_norm", _layer_norm),
        (paddle, "matmul", "matmul", _matmul),
        (T, "matmul", "matmul", _matmul),
        (T_linalg, "matmul", "matmul", _matmul),
        (paddle.Tensor, "matmul", "matmul", _matmul),
        (paddle.Tensor, "__matmul__", "matmul", _matmul),
        (paddle, "bmm", "matmul", _matmul),
        (T, "bmm", "matmul", _matmul),
        (T_linalg, "bmm", "matmul", _matmul),
        (paddle.Tensor, "bmm", "matmul", _matmul),
        (paddle, "einsum", "einsum", _einsum),
        (T, "einsum", "einsum", _einsum),
    ]
    targets += [(mod, "scaled_dot_product_attention", "sdpa", _sdpa) for mod in (compat, *compat.sdpa_modules())]
    for dims in ("1d", "2d", "3d"):
        for owner in (F, F_conv):
            targets.append((owner, f"conv{dims}", "conv", _conv))
            targets.append((owner, f"conv{dims}_transpose", "conv_transpose", _conv_transpose))
    return [t for t in targets if hasattr(t[0], t[1])]


_LOCK = threading.Lock()


@dataclass
class MacCount:
    """Multiply-accumulates of the ops that ran, in total and per op kind."""

    macs: int = 0
    by_op: dict = field(default_factory=lambda: defaultdict(int))
    calls: dict = field(default_factory=lambda: defaultdict(int))

    @property
    def gmacs(self):
        return self.macs / 1e9

    def add(self, kind, macs):
        self.macs += macs
        self.by_op[kind] += macs
        self.calls[kind] += 1


@contextmanager
def mac_counter():
    """Context manager: count MACs of every wrapped op executed inside it.

    Yields:
        :class:`MacCount`, filled as ops run.
    """
    count = MacCount()
    depth = [0]
    saved = []

    def wrap(fn, kind, counter):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            depth[0] += 1
            try:
                out = fn(*args, **kwargs)
            finally:
                depth[0] -= 1
            if depth[0] == 0:
                count.add(kind, counter(args, kwargs, out))
            return out

        return wrapper

    with _LOCK:
        try:
            for owner, attr, kind, counter in _targets():
                original = getattr(owner, attr)
                saved.append((owner, attr, original))
                setattr(owner, attr, wrap(original, kind, counter))
            yield count
        finally:
            for owner, attr, original in reversed(saved):
                setattr(owner, attr, original)


def count_macs(model, input_size=None, batch_size=1, inputs=None):
    """MACs of one forward pass of ``model`` in eval mode.

    Args:
        model: A ``paddle.nn.Layer``.
        input_size: ``(C, H, W)``; defaults to the registry's ``model.model_info.input_size``.
        batch_size: Batch of the random input (MACs scale linearly with it).
        inputs: An explicit input tensor instead of ``input_size``/``batch_size``.

    Returns:
        :class:`MacCount` (``.macs``, ``.gmacs``, ``.by_op``).
    """
    import paddle

    if inputs is None:
        if input_size is None:
            info = getattr(model, "model_info", None)
            if info is None:
                raise ValueError("pass input_size=(C, H, W) for a model not built by create_model")
            input_size = info.input_size
        inputs = paddle.randn([batch_size, *input_size], dtype="float32")
    was_training = model.training
    model.eval()
    try:
        with paddle.no_grad(), mac_counter() as count:
            model(inputs)
    finally:
        compat.set_train_mode(model, was_training)
    count.by_op = dict(count.by_op)
    count.calls = dict(count.calls)
    return count
