"""Command-line tools run as subprocesses: ``convert_weights.py``, ``list_models.py``,
``benchmark.py``. They run on a tiny model registered in the child process."""
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from paddle_vits import registry
from paddle_vits.utils import compat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "_test_scripts_tiny"


class TinyNet(paddle.nn.Layer):
    """Patch conv, a 2-D non-Linear parameter, a square Linear and a head."""

    def __init__(self, num_classes=1000, img_size=8, drop_path_rate=0.0):  # the training scripts pass drop_path_rate
        super().__init__()
        self.num_classes = num_classes
        self.num_features = 4
        self.patch = paddle.nn.Conv2D(3, 4, kernel_size=4, stride=4)
        self.pos_embed = self.create_parameter([(img_size // 4) ** 2, 4])
        self.fc = paddle.nn.Linear(4, 4)
        self.head = paddle.nn.Linear(4, num_classes) if num_classes else paddle.nn.Identity()

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose([0, 2, 1]) + self.pos_embed  # [B, 4, h, w] -> [B, h*w, 4]
        return self.head(self.fc(x).mean(axis=1))


def register_tiny_model():
    """Register :class:`TinyNet` (called in the child process by the runner)."""
    if registry.is_model(TINY):
        return

    def _test_scripts_tiny(**kwargs):
        return TinyNet(**kwargs)

    registry.register_model(input_size=(3, 8, 8), crop_pct=0.9, top1=70.0, num_params=5232,
                            aliases=("_test_scripts_tiny_alias",))(_test_scripts_tiny)



def _official(num_classes=1000, seed=0):
    rng = np.random.RandomState(seed)
    f = lambda *s: rng.randn(*s).astype(np.float32)  # noqa: E731
    return {"patch.weight": f(4, 3, 4, 4), "patch.bias": f(4), "pos_embed": f(4, 4), "fc.weight": f(4, 4),
            "fc.bias": f(4), "head.weight": f(num_classes, 4), "head.bias": f(num_classes)}


def _run(tmp_path, script, *args):
    runner = tmp_path / f"run_{script}"
    runner.write_text(
        "import runpy, sys\n"
        f"sys.path[:0] = [{ROOT!r}, {os.path.join(ROOT, 'tests')!r}]\n"
        "from test_scripts import register_tiny_model\n"
        "register_tiny_model()\n"
        f"sys.argv = [{script!r}] + sys.argv[1:]\n"
        f"runpy.run_path({os.path.join(ROOT, 'scripts', script)!r}, run_name='__main__')\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, str(runner), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from safetensors.numpy import save_file

    d = tmp_path_factory.mktemp("ckpt")
    save_file(_official(), str(d / "tiny.safetensors"))
    save_file(_official(num_classes=10), str(d / "tiny_c10.safetensors"))
    other = _official()
    other["blocks.0.qkv.weight"] = np.zeros((12, 4), np.float32)
    save_file(other, str(d / "other.safetensors"))
    (d / "empty.pth").write_bytes(b"")
    return d


def test_convert_cli_writes_loadable_pdparams(tmp_path, checkpoints):
    out = tmp_path / "w" / "tiny.pdparams"
    proc = _run(tmp_path, "convert_weights.py", "--model", "_test_scripts_tiny_alias",
                "--src", checkpoints / "tiny.safetensors", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "tensors      7" in proc.stdout and "num_classes  1000" in proc.stdout
    sd = paddle.load(str(out))
    ref = _official()
    np.testing.assert_array_equal(sd["fc.weight"].numpy(), ref["fc.weight"].T)
    np.testing.assert_array_equal(sd["pos_embed"].numpy(), ref["pos_embed"])
    np.testing.assert_array_equal(sd["patch.weight"].numpy(), ref["patch.weight"])
    assert not [f for f in os.listdir(out.parent) if ".tmp" in f]  # atomic write left no temporary file


def test_convert_cli_head_size(tmp_path, checkpoints):
    out = tmp_path / "c10.pdparams"
    proc = _run(tmp_path, "convert_weights.py", "--model", TINY, "--src", checkpoints / "tiny_c10.safetensors",
                "--out", out)  # the head size is read from the checkpoint
    assert proc.returncode == 0, proc.stderr
    assert "num_classes  10" in proc.stdout and paddle.load(str(out))["head.bias"].shape == [10]
    proc = _run(tmp_path, "convert_weights.py", "--model", TINY, "--src", checkpoints / "tiny.safetensors",
                "--out", tmp_path / "c3.pdparams", "--num-classes", 3)
    assert proc.returncode == 0, proc.stderr
    assert "re-initialised (head of another size): head.bias, head.weight" in proc.stdout


@pytest.mark.parametrize("src, message", [
    ("other.safetensors", "checkpoint does not fit _test_scripts_tiny"),
    ("empty.pth", "is empty"),
    ("missing.pth", "checkpoint not found"),
])
def test_convert_cli_errors_are_one_line(tmp_path, checkpoints, src, message):
    out = tmp_path / "x.pdparams"
    proc = _run(tmp_path, "convert_weights.py", "--model", TINY, "--src", checkpoints / src, "--out", out)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error:") and not out.exists()


def test_list_models_cli(tmp_path):
    proc = _run(tmp_path, "list_models.py", "_test_scripts_*")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["name", "aliases", "params"]
    assert lines[1].split() == [TINY, "_test_scripts_tiny_alias", "0.01M", "8x8", "0.9", "bicubic", "70.0"]
    proc = _run(tmp_path, "list_models.py", "--markdown", "_test_scripts_*")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "| name | timm / official alias | params | input | crop | interp. | GMACs | top-1 (%) |"
    # GMACs counted, not kept by hand: 4 tokens (8x8 input, patch 4) x (conv 4 x 3*4*4 + fc 4 x 4), head 4 x 1000.
    macs = 4 * (4 * 48 + 16) + 4 * 1000
    assert lines[2] == f"| {TINY} | _test_scripts_tiny_alias | 0.01M | 8 | 0.9 | bicubic | {macs / 1e9:.3g} | 70.0 |"
    assert len(lines) == 3
    proc = _run(tmp_path, "list_models.py", "no_such_*")
    assert proc.returncode == 1 and "no model matches" in proc.stderr


def test_benchmark_cli_prints_figures(tmp_path):
    proc = _run(tmp_path, "benchmark.py", "--model", TINY, "--batch-size", 2, "--steps", 1, "--warmup", 0,
                "--threads", 1, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    # MACs by hand: conv (4 channels x 2x2) x (3x4x4) + fc 4 tokens x 4x4 + head 4x1000.
    assert f"({16 * 48 + 64 + 4000:,} MACs per image" in proc.stdout
    # Params: conv 4x3x4x4 + 4, pos_embed 4x4, fc 4x4 + 4, head 4x1000 + 1000.
    for key in ("params     5,232", "inference", "training", "peak mem"):
        assert key in proc.stdout
    proc = _run(tmp_path, "benchmark.py", "--model", "no_such_model")
    assert proc.returncode == 2 and "Unknown model" in proc.stderr


def test_benchmark_profile_prints_the_top_operators(tmp_path):
    proc = _run(tmp_path, "benchmark.py", "--model", TINY, "--batch-size", 2, "--steps", 2, "--warmup", 1,
                "--threads", 1, "--device", "cpu", "--profile", "--profile-rows", 3)
    assert proc.returncode == 0, proc.stderr
    head, table = proc.stdout.split("paddle.profiler", 1)[1].split("\n", 1)
    total = float(head.split("all operators ")[1].split(" ms")[0])
    rows = [r.split() for r in table.splitlines()[1:] if r.strip()]
    assert len(rows) == 3  # --profile-rows
    ms = [float(r[2]) for r in rows]
    # each figure is printed rounded to 0.01 ms: the rows' sum may exceed the total by half a unit per figure
    assert ms == sorted(ms, reverse=True) and 0 < sum(ms) <= total + 0.005 * (len(ms) + 1) + 1e-9
    assert all(int(r[1]) >= 1 for r in rows)  # calls per forward pass


def test_export_model_cli_writes_a_program_that_reproduces_the_weights(tmp_path, checkpoints):
    """export_model.py: the class count is read from the checkpoint, and the saved program gives its logits."""
    if compat.export_unsupported():
        pytest.skip(compat.export_unsupported())
    out = tmp_path / "export"
    proc = _run(tmp_path, "export_model.py", "--model", TINY, "--weights", checkpoints / "tiny_c10.safetensors",
                "--out", out, "--threads", 1)
    assert proc.returncode == 0, proc.stderr
    assert "10 classes" in proc.stdout and "jit.load check" in proc.stdout
    assert (out / "model.json").is_file() and (out / "model.pdiparams").is_file()
    sd = _official(num_classes=10)
    ref = TinyNet(num_classes=10)
    # Official layout -> Paddle: Linear weights are transposed.
    ref.set_state_dict({k: (v.T if k in ("fc.weight", "head.weight") else v) for k, v in sd.items()})
    ref.eval()
    x = paddle.randn([3, 3, 8, 8])
    exported = paddle.jit.load(str(out / "model"))
    np.testing.assert_allclose(exported(x).numpy(), ref(x).numpy(), rtol=1e-5, atol=1e-5)
