"""DWT2D / IDWT2D: PyWavelets equality, perfect reconstruction, hand-written backward, errors, export path."""
import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
import pywt

from paddle_vits.layers import DWT2D, IDWT2D, interleave_permutation
from paddle_vits.layers.wavelets import dwt_filters, idwt_filters
from paddle_vits.utils import compat

ORDERS = ["blocked", "interleaved"]


def _pywt_bands(x, wave="haar"):
    """``[B, 4C, H/2, W/2]`` in blocked order ``cA | cH | cV | cD`` from PyWavelets, per channel."""
    cA, (cH, cV, cD) = pywt.dwt2(x.astype(np.float64), wave)  # over the last two axes
    return np.concatenate([cA, cH, cV, cD], axis=1)


def _to_order(blocked, order):
    return blocked if order == "blocked" else blocked[:, interleave_permutation(blocked.shape[1] // 4)]


def _reference_dwt(x, wave, order):
    """Plain autograd reference: four correlations with the 2x2 sub-band filters, concatenated."""
    C = x.shape[1]
    f = paddle.to_tensor(dwt_filters(wave)).astype(x.dtype)
    bands = [F.conv2d(x, f[s].reshape([1, 1, 2, 2]).tile([C, 1, 1, 1]), stride=2, groups=C) for s in range(4)]
    y = paddle.concat(bands, axis=1)  # blocked [B, 4C, H/2, W/2]
    return y if order == "blocked" else paddle.index_select(y, paddle.to_tensor(interleave_permutation(C)), axis=1)


def _reference_idwt(y, wave, order):
    """Plain autograd reference: sum over sub-bands of upsampled (transposed-conv) bands."""
    C = y.shape[1] // 4
    if order == "interleaved":
        inv = np.argsort(interleave_permutation(C))
        y = paddle.index_select(y, paddle.to_tensor(inv), axis=1)  # -> blocked
    f = paddle.to_tensor(idwt_filters(wave))
    out = 0
    for s in range(4):
        w = f[s].reshape([1, 1, 2, 2]).tile([C, 1, 1, 1]).astype(y.dtype)
        out = out + F.conv2d_transpose(y[:, s * C:(s + 1) * C], w, stride=2, groups=C)
    return out


@pytest.mark.parametrize("wave", ["haar", "db1"])
@pytest.mark.parametrize("order", ORDERS)
def test_dwt_equals_pywavelets(wave, order):
    x = np.random.randn(2, 3, 6, 10).astype(np.float32)
    y = DWT2D(wave, channel_order=order)(paddle.to_tensor(x)).numpy()
    assert y.shape == (2, 12, 3, 5)
    np.testing.assert_allclose(y, _to_order(_pywt_bands(x, wave), order), rtol=0, atol=1e-6)


@pytest.mark.parametrize("order", ORDERS)
def test_idwt_equals_pywavelets_and_reconstructs(order):
    x = np.random.randn(2, 4, 8, 6).astype(np.float32)
    bands = np.random.randn(2, 16, 4, 3).astype(np.float32)
    C = 4
    ref = pywt.idwt2((bands[:, :C], (bands[:, C:2 * C], bands[:, 2 * C:3 * C], bands[:, 3 * C:])), "haar")
    idwt = IDWT2D(channel_order=order)
    out = idwt(paddle.to_tensor(_to_order(bands, order))).numpy()
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6)
    recon = idwt(DWT2D(channel_order=order)(paddle.to_tensor(x))).numpy()
    np.testing.assert_allclose(recon, x, rtol=0, atol=1e-6)


def test_interleaved_sub_band_layout():
    """Interleaved channel 4c+s is sub-band s of input channel c."""
    x = np.random.randn(1, 3, 4, 4).astype(np.float32)
    y = DWT2D(channel_order="interleaved")(paddle.to_tensor(x)).numpy()
    bands = _pywt_bands(x)
    for c in range(3):
        for s in range(4):
            np.testing.assert_allclose(y[:, 4 * c + s], bands[:, s * 3 + c], atol=1e-6)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("kind", ["dwt", "idwt"])
def test_backward_equals_autograd_reference(order, kind):
    shape = (2, 3, 6, 8) if kind == "dwt" else (2, 12, 3, 4)
    x_np = np.random.randn(*shape).astype(np.float32)
    layer = DWT2D(channel_order=order) if kind == "dwt" else IDWT2D(channel_order=order)
    ref_fn = _reference_dwt if kind == "dwt" else _reference_idwt
    x1 = paddle.to_tensor(x_np, stop_gradient=False)
    x2 = paddle.to_tensor(x_np, stop_gradient=False)
    y1 = layer(x1)
    y2 = ref_fn(x2, "haar", order)
    np.testing.assert_allclose(y1.numpy(), y2.numpy(), rtol=0, atol=1e-6)
    g = paddle.to_tensor(np.random.randn(*y1.shape).astype(np.float32))
    (y1 * g).sum().backward()
    (y2 * g).sum().backward()
    np.testing.assert_allclose(x1.grad.numpy(), x2.grad.numpy(), rtol=0, atol=1e-6)
    assert np.abs(x1.grad.numpy()).max() > 0.1


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("use_pylayer", [True, False], ids=["pylayer", "plain"])
@pytest.mark.parametrize("kind", ["dwt", "idwt"])
def test_backward_finite_differences_float64(kind, use_pylayer, order):
    """Both paths' gradients equal central differences, for every item of a batch of 2."""
    shape = (2, 2, 4, 4) if kind == "dwt" else (2, 8, 2, 2)
    layer = DWT2D(channel_order=order) if kind == "dwt" else IDWT2D(channel_order=order)
    layer.use_pylayer = use_pylayer
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal(shape)
    g_np = rng.standard_normal(layer(paddle.to_tensor(x_np)).shape)

    def loss(a):
        return float((layer(paddle.to_tensor(a)).numpy() * g_np).sum())

    x = paddle.to_tensor(x_np, stop_gradient=False)
    y = layer(x)
    assert y.dtype == paddle.float64
    (y * paddle.to_tensor(g_np)).sum().backward()
    grad = x.grad.numpy()
    eps = 1e-6
    num = np.zeros_like(x_np)
    for idx in np.ndindex(*shape):
        d = np.zeros_like(x_np)
        d[idx] = eps
        num[idx] = (loss(x_np + d) - loss(x_np - d)) / (2 * eps)
    for b in range(shape[0]):
        np.testing.assert_allclose(grad[b], num[b], rtol=0, atol=1e-8, err_msg=f"batch item {b}")


@pytest.mark.parametrize("order", ORDERS)
def test_pylayer_records_one_node_and_plain_path_matches(order):
    x_np = np.random.randn(2, 4, 8, 8).astype(np.float32)
    dwt, idwt = DWT2D(channel_order=order), IDWT2D(channel_order=order)
    outs, grads = [], []
    for use_pylayer in (True, False):
        dwt.use_pylayer = idwt.use_pylayer = use_pylayer
        x = paddle.to_tensor(x_np, stop_gradient=False)
        y = idwt(paddle.tanh(dwt(x)))
        (y * y).sum().backward()
        outs.append(y.numpy())
        grads.append(x.grad.numpy())
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(grads[0], grads[1])


def _saved_op_types(program_path):
    """Lower-case text naming the saved program's ops: PIR's JSON, or Paddle 2.6's ProgramDesc op types."""
    with open(program_path, "rb") as f:
        data = f.read()
    if program_path.endswith(".json"):
        return data.decode().lower()
    from paddle.base.proto import framework_pb2

    desc = framework_pb2.ProgramDesc.FromString(data)
    return " ".join(op.type for block in desc.blocks for op in block.ops).lower()


def test_jit_save_traces_plain_ops(tmp_path):
    """Under to_static the PyLayer is skipped: the saved program contains only plain ops."""
    layer = DWT2D()
    spec = [paddle.static.InputSpec([None, 3, 8, 8], "float32")]
    static = paddle.jit.to_static(layer, input_spec=spec, full_graph=True)
    path = str(tmp_path / "dwt")
    paddle.jit.save(static, path)
    ops = _saved_op_types(compat.program_file(path))
    assert "conv2d" in ops and "pylayer" not in ops
    loaded = paddle.jit.load(path)
    x = paddle.randn([2, 3, 8, 8])
    np.testing.assert_array_equal(loaded(x).numpy(), DWT2D()(x).numpy())


@pytest.mark.parametrize("wave", ["db2", "sym4", "bior1.1", "coif1"])
def test_unsupported_wavelets_fail_clearly(wave):
    with pytest.raises(ValueError, match="orthogonal wavelets with filter length 2"):
        DWT2D(wave)
    with pytest.raises(ValueError, match="orthogonal wavelets with filter length 2"):
        IDWT2D(wave)


def test_bad_inputs_fail_clearly():
    with pytest.raises(ValueError, match="even height and width, got 7x8"):
        DWT2D()(paddle.randn([1, 2, 7, 8]))
    with pytest.raises(ValueError, match="even height and width, got 8x5"):
        DWT2D()(paddle.randn([1, 2, 8, 5]))
    with pytest.raises(ValueError, match="multiple of 4"):
        IDWT2D()(paddle.randn([1, 6, 4, 4]))
    with pytest.raises(ValueError, match="channel_order"):
        DWT2D(channel_order="planar")


def test_filters_are_not_saved():
    assert len(DWT2D().state_dict()) == 0 and len(IDWT2D().state_dict()) == 0
    assert tuple(DWT2D().filters.shape) == (4, 1, 2, 2)
