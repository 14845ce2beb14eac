"""Shared fixtures: deterministic seeds, the CPU cores shared among pytest-xdist workers, tiny model configs."""
import os

import numpy as np
import paddle
import pytest

from paddle_vits.utils import set_num_threads

# Under ``pytest -n N`` each worker gets its share of the cores: more OpenMP threads than cores slow every
# kernel down (spinning threads wait for each other), fewer leave cores idle.
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
set_num_threads(max(1, _CORES // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))
paddle.set_device("cpu")


@pytest.fixture(autouse=True)
def _seed():
    paddle.seed(0)
    np.random.seed(0)
    yield


@pytest.fixture
def fixtures_dir():
    return os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.fixture(scope="session")
def cifar_tar(tmp_path_factory):
    """A synthetic ``cifar-10-python.tar.gz`` (200 train, 100 test images, class-coloured)."""
    from _cifar_synth import write_cifar_tar

    return write_cifar_tar(str(tmp_path_factory.mktemp("cifar") / "cifar-10-python.tar.gz"))


@pytest.fixture
def tiny_script_model():
    """``test_scripts.TinyNet`` registered in this process for one test and unregistered after it,
    so tests that list the registry never see it."""
    import test_scripts
    from paddle_vits import registry

    new = not registry.is_model(test_scripts.TINY)
    test_scripts.register_tiny_model()
    yield test_scripts.TINY
    if new:
        registry._REGISTRY.pop(test_scripts.TINY, None)
        registry._ALIASES.pop("_test_scripts_tiny_alias", None)
