"""paddle_vits.utils.compat: the version gate, its replacements, and the gradients of the indexing ops we use."""
import subprocess
import sys

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from paddle_vits.utils import compat


def test_version_gate_names_installed_and_required():
    compat.check_paddle_version("2.6.2")
    compat.check_paddle_version("3.3.1")
    compat.check_paddle_version("0.0.0")  # develop build
    with pytest.raises(ImportError, match=r"needs PaddlePaddle >= 2\.6\.2, but 2\.5\.2 is installed"):
        compat.check_paddle_version("2.5.2")
    assert compat.paddle_version("3.0.0rc1") == (3, 0, 0)


def test_import_fails_at_once_below_the_minimum():
    code = "import paddle; paddle.__version__ = '2.5.2'; import paddle_vits"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode != 0
    assert "needs PaddlePaddle >= 2.6.2, but 2.5.2 is installed" in r.stderr
    assert "paddle_vits/models" not in r.stderr  # failed before building anything


@pytest.mark.parametrize("path", ["installed", "inverse_cdf"])
def test_trunc_normal_has_absolute_bounds(path):
    p = paddle.create_parameter([400, 500], "float32")
    if path == "installed":
        compat.trunc_normal_(p, mean=0.1, std=1.0, a=-0.5, b=1.5)
    else:
        compat._trunc_normal_inverse_cdf_(p, 0.1, 1.0, -0.5, 1.5)
    v = p.numpy()
    assert v.min() >= -0.5 and v.max() <= 1.5
    assert v.min() < -0.49 and v.max() > 1.49  # the bounds, not 2 std around the mean
    # Mean of N(0.1, 1) truncated to [-0.5, 1.5]: 0.1 + (phi(-0.6) - phi(1.4)) / (Phi(1.4) - Phi(-0.6)) = 0.3845.
    assert abs(v.mean() - 0.3845) < 0.01
    small = paddle.create_parameter([200, 500], "float32")
    compat.trunc_normal_(small, std=0.02)  # timm's default: bounds far outside, a plain N(0, 0.02)
    assert abs(small.numpy().std() - 0.02) < 0.001


def test_set_train_mode():
    layer = paddle.nn.Sequential(paddle.nn.Dropout(0.5))
    assert compat.set_train_mode(layer, False) is layer and not layer.training and not layer[0].training
    compat.set_train_mode(layer, True)
    assert layer.training and layer[0].training


@pytest.mark.parametrize("mask", [False, True])
def test_sdpa_is_softmax_attention(mask):
    rng = np.random.default_rng(0)
    q, k, v = (paddle.to_tensor(rng.standard_normal((2, 5, 3, 8)).astype("float32")) for _ in range(3))
    bias = paddle.to_tensor(rng.standard_normal((1, 3, 5, 5)).astype("float32")) if mask else None
    out = compat.scaled_dot_product_attention(q, k, v, attn_mask=bias, training=False)
    qt, kt, vt = (t.transpose([0, 2, 1, 3]) for t in (q, k, v))  # [B, N, H, D] -> [B, H, N, D]
    attn = qt @ kt.transpose([0, 1, 3, 2]) / np.sqrt(8) + (0 if bias is None else bias)
    ref = (F.softmax(attn, axis=-1) @ vt).transpose([0, 2, 1, 3])  # [B, H, N, D] -> [B, N, H, D]
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=0, atol=1e-5)


def test_mac_counter_sees_compat_sdpa():
    from paddle_vits.utils.flops import mac_counter

    q = paddle.randn([1, 4, 2, 8])
    with mac_counter() as count:
        compat.scaled_dot_product_attention(q, q, q, training=False)
    assert dict(count.by_op) == {"sdpa": 2 * 1 * 2 * 4 * 4 * 8}


_PERM = np.array([3, 0, 4, 1, 5, 2])
# (Paddle op under autograd, the same map in numpy). Every indexing op the models' autograd paths use.
_OPS = {
    "index_select_axis1": (lambda t: paddle.index_select(t, paddle.to_tensor(_PERM), axis=1),
                           lambda a: a[:, _PERM]),
    "gather_axis0": (lambda t: paddle.gather(t, paddle.to_tensor(np.array([1, 0, 1])), axis=0), lambda a: a[[1, 0, 1]]),
    "take_along_axis1": (lambda t: paddle.take_along_axis(
        t, paddle.to_tensor(_PERM.reshape(1, 6, 1, 1)).expand([2, 6, 3, 4]), axis=1), lambda a: a[:, _PERM]),
    "roll": (lambda t: paddle.roll(t, shifts=(1, -2), axis=(2, 3)), lambda a: np.roll(a, (1, -2), axis=(2, 3))),
    "slice_step": (lambda t: t[:, 1::2], lambda a: a[:, 1::2]),
}


@pytest.mark.parametrize("name", list(_OPS))
def test_indexing_op_gradients_are_right_for_every_batch_item(name):
    """Adjoint check of linear indexing ops: ``paddle.gather(axis=1)`` fails it on Paddle 2.6.2 and 3.0.0."""
    op, op_np = _OPS[name]
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((2, 6, 3, 4)).astype("float32")
    x = paddle.to_tensor(x_np, stop_gradient=False)
    y = op(x)
    np.testing.assert_array_equal(y.numpy(), op_np(x_np))
    g_np = rng.standard_normal(y.shape).astype("float32")
    (y * paddle.to_tensor(g_np)).sum().backward()
    ref = np.zeros_like(x_np)
    for idx in np.ndindex(*x_np.shape):  # d/dx_i sum(op(x) * g) = sum(op(e_i) * g) for a linear op
        e = np.zeros_like(x_np)
        e[idx] = 1
        ref[idx] = (op_np(e) * g_np).sum()
    np.testing.assert_array_equal(x.grad.numpy(), ref)


def test_zlib_works_after_import_paddle_vits():
    """Paddle 2.6.2 crashes on zlib use when zlib is loaded after paddle: ``import paddle_vits`` loads it first."""
    code = ("import paddle_vits, paddle, gzip, io, numpy as np\nfrom PIL import Image\n"
            "assert gzip.decompress(gzip.compress(b'abc' * 100)) == b'abc' * 100\n"
            "b = io.BytesIO(); Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(b, 'PNG'); b.seek(0)\n"
            "assert Image.open(b).size == (4, 4)\nprint('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
