"""Converted models back-propagate like the official implementations (recorded gradient fixtures).

For one small config per family, the official PyTorch model's gradients of
``sum(logits * cotangent)`` w.r.t. the input and every parameter are stored in
``tests/fixtures/grad/*.npz`` (``tests/fixtures/make_grad_fixtures.py``). The
official gradients are mapped to our names and layouts by the same conversion
as the weights: every step of it (renames, Linear transposes, channel
permutations) moves entries without combining them, so it maps a gradient
exactly as it maps the parameter. Runs without torch, on every supported Paddle.
"""
import glob
import os

import numpy as np
import paddle
import pytest

from _parity import load_grad_fixture, seeded_cotangent, seeded_state_dict
from paddle_vits import create_model
from paddle_vits.convert import convert_state_dict

FIXTURES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "fixtures", "grad", "*.npz")))


def test_every_family_has_a_gradient_fixture():
    families = {os.path.basename(p).split("_")[0] for p in FIXTURES}
    assert families == {"cait", "crossvit", "wavevit", "crossformer"}


def _close(name, got, ref, rtol, atol):
    """Max difference within ``rtol`` of the tensor's largest reference entry, plus ``atol`` (float32 noise
    on gradients that are zero in exact arithmetic, e.g. of a bias that softmax cancels)."""
    assert got.shape == ref.shape, f"{name}: shape {got.shape} vs {ref.shape}"
    if ref.size == 0:
        return
    scale = float(np.abs(ref).max())
    err = float(np.abs(got - ref).max())
    assert err <= rtol * scale + atol, f"{name}: max abs difference {err:.3g} vs max |grad| {scale:.3g}"


def _cases():
    for path in FIXTURES:
        name = os.path.splitext(os.path.basename(path))[0]
        yield pytest.param(path, False, id=name)
        if name.startswith("wavevit"):  # the DWT/IDWT as plain ops under autograd (export mode, to_static)
            yield pytest.param(path, True, id=name + "-export_mode")


@pytest.mark.parametrize("path, export_mode", list(_cases()))
def test_gradient_parity(path, export_mode):
    meta, inp, logits_ref, grad_input_ref, grads_ref = load_grad_fixture(path)
    weights = seeded_state_dict(meta["keys"], meta["seed"])
    model = create_model(meta["model"], num_classes=logits_ref.shape[-1], **meta["kwargs"])
    converted, skipped = convert_state_dict(weights, model, meta["model"])
    assert not skipped
    model.set_state_dict(converted)
    model.eval()
    if export_mode:
        model.set_export_mode(True)

    # The official gradients, laid out as our parameters (buffers keep their values, unused here).
    grads, _ = convert_state_dict({**weights, **grads_ref}, model, meta["model"])

    x = paddle.to_tensor(inp, stop_gradient=False)
    logits = model(x)
    np.testing.assert_allclose(logits.numpy(), logits_ref, rtol=0, atol=meta["atol"])
    (logits * paddle.to_tensor(seeded_cotangent(logits_ref.shape, meta["seed"]))).sum().backward()

    _close("input", x.grad.numpy(), grad_input_ref, meta["rtol"], atol=0.0)
    params = {n: p for n, p in model.named_parameters() if not p.stop_gradient}  # BatchNorm statistics are not
    assert set(params) <= set(grads)
    atol = meta["rtol"] * 0.01 * max(float(np.abs(grads[n]).max(initial=0)) for n in params)
    for name, p in params.items():
        got = np.zeros(p.shape, "float32") if p.grad is None else p.grad.numpy()
        _close(name, got, grads[name], meta["rtol"], atol)
    # Not a vacuous comparison: most recorded gradient entries are non-zero (ReLUs zero some).
    assert sum(np.count_nonzero(g) for g in grads_ref.values()) >= 0.8 * sum(g.size for g in grads_ref.values())
