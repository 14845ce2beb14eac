"""scripts/predict.py: an exported model's top-k on real images (scikit-image samples) equals the eager model's."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from paddle_vits import create_model
from paddle_vits.data.transforms import EvalTransform
from paddle_vits.export import export
from paddle_vits.inference import topk
from paddle_vits.utils import compat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.skipif(bool(compat.export_unsupported()), reason=str(compat.export_unsupported()))
SAMPLES = ("astronaut", "coffee", "chelsea", "rocket")
SIZE = 64


def _predict(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "predict.py"), *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    pytest.importorskip("paddle2onnx")
    pytest.importorskip("onnxruntime")
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    tmp = tmp_path_factory.mktemp("predict")
    images = tmp / "images"
    images.mkdir()
    for name in SAMPLES:
        Image.fromarray(getattr(data, name)()).convert("RGB").save(images / f"{name}.jpg", quality=95)
    paddle.seed(0)
    model = create_model("cait_xxs_24", num_classes=10, img_size=SIZE)
    model.eval()
    export(model, tmp / "exp", formats=("paddle", "onnx"), img_size=SIZE, log=None)
    return model, tmp


def _eager_topk(model, paths, k):
    tf = EvalTransform(SIZE, 1.0, "bicubic")  # cait_xxs_24: crop_pct 1.0, bicubic, ImageNet mean/std
    from PIL import Image

    x = np.stack([tf(Image.open(p)) for p in paths])
    with paddle.no_grad():
        logits = model(paddle.to_tensor(x)).numpy()
    return topk(logits, k)


@pytest.mark.parametrize("backend", ["paddle-inference", "onnxruntime"])
def test_predict_topk_equals_the_eager_model(exported, backend):
    model, tmp = exported
    labels = tmp / "labels.txt"
    labels.write_text("".join(f"class_{i}\n" for i in range(10)))
    out = tmp / f"pred-{backend}.json"
    proc = _predict("--model-dir", tmp / "exp", "--image", tmp / "images", "--topk", 3, "--labels", labels,
                    "--backend", backend, "--batch-size", 3, "--threads", 1, "--out", out, "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    paths = sorted(str(tmp / "images" / f"{n}.jpg") for n in SAMPLES)
    assert [r["image"] for r in rows] == paths
    idx, prob = _eager_topk(model, paths, 3)
    for row, i_row, p_row in zip(rows, idx, prob):
        assert [p["class"] for p in row["topk"]] == i_row.tolist()
        assert [p["label"] for p in row["topk"]] == [f"class_{i}" for i in i_row]
        np.testing.assert_allclose([p["prob"] for p in row["topk"]], p_row, atol=1e-5)


def test_predict_csv_list_file_and_errors(exported):
    model, tmp = exported
    listing = tmp / "list.txt"
    listing.write_text("images/coffee.jpg\nimages/chelsea.jpg\n")
    out = tmp / "pred.csv"
    proc = _predict("--model-dir", tmp / "exp", "--image", listing, "--topk", 2, "--out", out, "--no-progress",
                    "--no-mkldnn")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [(r["image"].split(os.sep)[-1], r["rank"]) for r in rows] == [
        ("coffee.jpg", "1"), ("coffee.jpg", "2"), ("chelsea.jpg", "1"), ("chelsea.jpg", "2")]
    idx, _ = _eager_topk(model, [str(tmp / "images" / "coffee.jpg")], 2)
    assert [int(r["class"]) for r in rows[:2]] == idx[0].tolist()
    # an unreadable image: one error line naming it, exit 2; --skip-bad goes on
    (tmp / "bad.jpg").write_bytes(b"not an image")
    proc = _predict("--model-dir", tmp / "exp", "--image", tmp / "bad.jpg", "--no-progress")
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and "bad.jpg" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = _predict("--model-dir", tmp / "exp", "--image", tmp / "bad.jpg", tmp / "images" / "coffee.jpg",
                    "--skip-bad", "--no-progress")
    assert proc.returncode == 0 and "skipped" in proc.stderr and "coffee.jpg" in proc.stdout
    # not an export folder; a label file of the wrong size
    proc = _predict("--model-dir", tmp / "images", "--image", tmp / "images", "--no-progress")
    assert proc.returncode == 2 and "preprocess.json" in proc.stderr
    (tmp / "three.txt").write_text("a\nb\nc\n")
    proc = _predict("--model-dir", tmp / "exp", "--image", tmp / "images", "--labels", tmp / "three.txt")
    assert proc.returncode == 2 and "10 classes" in proc.stderr
