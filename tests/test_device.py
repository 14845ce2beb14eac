"""paddle_vits.utils.device: --device cpu|gpu, the GPU by default when Paddle has one, said out loud."""
import os
import subprocess
import sys

import paddle
import pytest

from paddle_vits.utils.cli import UserError
from paddle_vits.utils.device import describe_environment, gpu_count, select_device

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_default_is_the_gpu_when_paddle_has_one(capsys):
    device = select_device()
    assert device == ("gpu" if gpu_count() else "cpu")
    assert paddle.device.get_device().startswith(device)
    out = capsys.readouterr().out
    assert out.startswith(f"device: {device} (default: gpu when Paddle has one; Paddle {paddle.__version__}")
    paddle.set_device("cpu")


def test_cpu_on_request_and_gpu_refused_without_one(capsys):
    assert select_device("cpu") == "cpu" and "chosen with --device" in capsys.readouterr().out
    if gpu_count():
        pytest.skip("this machine has a GPU")
    with pytest.raises(UserError, match="--device gpu, but Paddle sees no GPU") as e:
        select_device("gpu")
    assert "pass --device cpu" in str(e.value) and describe_environment() in str(e.value)


@pytest.mark.parametrize("script", ["train.py", "eval_imagenet.py", "benchmark.py", "explain.py",
                                    "export_model.py"])
def test_every_computing_script_has_device_flag(script):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", script), "--help"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "--device {cpu,gpu}" in r.stdout and "gpu when Paddle has one" in r.stdout
