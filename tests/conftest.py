"""Shared fixtures: deterministic seeds, all CPU cores, tiny model configs."""
import os

import numpy as np
import paddle
import pytest

from paddle_vits.utils import set_num_threads

set_num_threads()
paddle.set_device("cpu")


@pytest.fixture(autouse=True)
def _seed():
    paddle.seed(0)
    np.random.seed(0)
    yield


@pytest.fixture
def fixtures_dir():
    return os.path.join(os.path.dirname(__file__), "fixtures")
