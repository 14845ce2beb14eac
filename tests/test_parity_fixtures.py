"""Converted models reproduce the official implementations' logits (recorded fixtures).

Runs without torch: see ``tests/_parity.py`` for the fixture format and
``tests/fixtures/make_*_fixtures.py`` for how each was recorded.
"""
import glob
import os

import numpy as np
import paddle
import pytest

from _parity import load_fixture, seeded_state_dict
from paddle_vits import create_model
from paddle_vits.convert import convert_state_dict

FIXTURES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "fixtures", "*.npz")))


def _param(path):
    name = os.path.splitext(os.path.basename(path))[0]
    marks = [pytest.mark.slow] if name.endswith("_full") else []
    return pytest.param(path, id=name, marks=marks)


@pytest.mark.parametrize("path", [_param(p) for p in FIXTURES])
def test_fixture_parity(path):
    meta, inp, ref = load_fixture(path)
    sd = seeded_state_dict(meta["keys"], meta["seed"])
    num_classes = ref.shape[-1]
    model = create_model(meta["model"], num_classes=num_classes, **meta["kwargs"])
    converted, skipped = convert_state_dict(sd, model, meta["model"])
    assert not skipped
    model.set_state_dict(converted)
    model.eval()
    with paddle.no_grad():
        out = model(paddle.to_tensor(inp)).numpy()
    err = float(np.abs(out - ref).max())
    assert err <= meta["atol"], f"max abs difference {err:.3g} > {meta['atol']} ({meta['source']})"
