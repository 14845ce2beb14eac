"""The torch-free reader on real PyTorch files (``tests/fixtures/torch_*.pth``, written by
``make_torch_format_fixtures.py``), so the ``.pth`` path is checked where torch is absent."""
import os
import shutil
import sys

import numpy as np
import pytest

from _torch_format import expected_arrays
from paddle_vits.convert import CheckpointError, read_checkpoint

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
OFFICIAL = os.path.join(FIXTURES, "torch_zip_official.pth")
LEGACY = os.path.join(FIXTURES, "torch_legacy.pth")


@pytest.fixture
def no_torch(monkeypatch):
    """Make ``import torch`` fail, as on a machine without it."""
    monkeypatch.setitem(sys.modules, "torch", None)


def test_official_zip_checkpoint_reads_exactly_without_torch(no_torch):
    sd = read_checkpoint(OFFICIAL)
    want = {k: v for k, v in expected_arrays().items() if k != "rows"}
    assert sorted(sd) == sorted(want)  # wrapper, module. prefix, Namespace and yacs config gone
    for k, v in want.items():
        assert sd[k].dtype == v.dtype, k
        assert sd[k].shape == v.shape, k
        np.testing.assert_array_equal(sd[k], v, err_msg=k)


def test_legacy_format_needs_torch_and_says_so(no_torch):
    with pytest.raises(CheckpointError, match="legacy pre-1.6 file.*need torch installed"):
        read_checkpoint(LEGACY)


def test_legacy_format_with_torch():
    pytest.importorskip("torch")
    sd = read_checkpoint(LEGACY)
    np.testing.assert_array_equal(sd["proj.weight"], expected_arrays()["proj.weight"])


def test_truncated_copy_of_a_real_checkpoint_fails_clearly(tmp_path, no_torch):
    path = tmp_path / "cut.pth"
    shutil.copy(OFFICIAL, path)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(OFFICIAL) * 2 // 3)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checkpoint(path)
