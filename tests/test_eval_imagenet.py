"""ImageNet evaluation: preprocessing, both dataset layouts, bad data, and the
``scripts/eval_imagenet.py`` CLI end to end on a tiny generated JPEG set.

The CLI runs on a tiny registered model whose logits are a known linear function
of the image's mean colour, so the expected top-1/top-5 are computed by hand
(numpy on the ideal colours) and compared with what the script reports.
"""
import json
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest
from PIL import Image

import paddle_vits
from paddle_vits import registry
from paddle_vits.data.imagenet import ImageNetDataError, ImageNetVal, collate_skip, read_val_list
from paddle_vits.data.transforms import EvalTransform, resolve_eval_config
from paddle_vits.eval import BatchLoader, accuracy_counts, evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "_test_mean_colour"
NUM_CLASSES = 8
# Ideal mean colour of each solid image after normalising with mean=std=0.5: RGB in {-1, 1}.
COLOURS = {
    "red": ((255, 0, 0), (1, -1, -1)),
    "green": ((0, 255, 0), (-1, 1, -1)),
    "blue": ((0, 0, 255), (-1, -1, 1)),
    "white": ((255, 255, 255), (1, 1, 1)),
    "black": ((0, 0, 0), (-1, -1, -1)),
}
# Paddle Linear layout [in=3, out=8]: logits = mean_colour @ W + b.
W = np.array([[c - 3.5, (3 * c) % 8 - 3.5, (5 * c) % 8 - 3.5] for c in range(NUM_CLASSES)], dtype=np.float32).T * 0.5
B = (np.linspace(-0.3, 0.3, NUM_CLASSES) + 0.01 * np.arange(NUM_CLASSES)).astype(np.float32)


class MeanColour(paddle.nn.Layer):
    """Linear classifier on the mean colour: known predictions for solid-colour images."""

    def __init__(self, num_classes=NUM_CLASSES, img_size=16):
        super().__init__()
        self.num_classes = num_classes
        self.num_features = 3
        self.head = paddle.nn.Linear(3, num_classes)

    def forward(self, x):
        return self.head(x.mean(axis=[2, 3]))  # [B, 3, H, W] -> [B, 3] -> [B, num_classes]


def register_tiny_model():
    """Register :class:`MeanColour` (also called by the CLI runner in a subprocess)."""
    if registry.is_model(TINY):
        return

    def _test_mean_colour(**kwargs):
        return MeanColour(**kwargs)

    registry.register_model(input_size=(3, 16, 16), crop_pct=0.875, interpolation="bilinear",
                            mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), top1=60.0, num_params=32)(_test_mean_colour)


@pytest.fixture(scope="module")
def tiny_model():
    register_tiny_model()
    yield TINY
    registry._REGISTRY.pop(TINY, None)


def _ranking(colour):
    logits = np.asarray(COLOURS[colour][1], dtype=np.float32) @ W + B
    order = np.argsort(-logits)
    gaps = -np.diff(logits[order])
    assert gaps.min() > 0.05, "test fixture: logits must be well separated"
    return order


# (colour, position of the true label in the model's ranking, image width, height)
SAMPLES = [
    ("red", 0, 40, 30), ("green", 0, 24, 50), ("blue", 2, 30, 30), ("white", 4, 33, 21),
    ("black", 5, 20, 28), ("red", 7, 64, 48), ("green", 1, 19, 19), ("white", 0, 50, 20),
]
EXPECTED_TOP1 = sum(r == 0 for _, r, _, _ in SAMPLES) / len(SAMPLES)  # 3 / 8
EXPECTED_TOP5 = sum(r < 5 for _, r, _, _ in SAMPLES) / len(SAMPLES)  # 6 / 8


def _write_jpeg(path, rgb, size):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", size, rgb).save(path, "JPEG", quality=95)


@pytest.fixture(scope="module")
def imagenet_dirs(tmp_path_factory):
    """The same 8 images as a list layout (nested paths + val_list.txt) and a folder layout."""
    base = tmp_path_factory.mktemp("imagenet")
    list_root, folder_root = base / "list", base / "folder"
    lines = []
    for i, (colour, rank, w, h) in enumerate(SAMPLES):
        label = int(_ranking(colour)[rank])
        rel = f"val/ILSVRC2012_val_{i + 1:08d}.JPEG"
        _write_jpeg(str(list_root / rel), COLOURS[colour][0], (w, h))
        lines.append(f"{rel} {label}")
        # Folder layout: class folder names sort in label order (n00..n07).
        _write_jpeg(str(folder_root / "val" / f"n{label:02d}" / f"img_{i}.JPEG"), COLOURS[colour][0], (w, h))
    for label in range(NUM_CLASSES):  # every class present, so sorted index == label
        os.makedirs(folder_root / "val" / f"n{label:02d}", exist_ok=True)
    (list_root / "val_list.txt").write_text("\n".join(lines) + "\n")
    return list_root, folder_root


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """The known weights as a .pdparams (Paddle layout) and a .safetensors (PyTorch layout)."""
    from safetensors.numpy import save_file

    d = tmp_path_factory.mktemp("weights")
    paddle.save({"head.weight": paddle.to_tensor(W), "head.bias": paddle.to_tensor(B)}, str(d / "tiny.pdparams"))
    save_file({"head.weight": np.ascontiguousarray(W.T), "head.bias": B}, str(d / "tiny.safetensors"))
    return d / "tiny.pdparams", d / "tiny.safetensors"


def _run_cli(tmp_path, *args, cwd=None, env=None):
    runner = tmp_path / "run_eval.py"
    runner.write_text(
        "import runpy, sys\n"
        f"sys.path[:0] = [{ROOT!r}, {os.path.join(ROOT, 'tests')!r}]\n"
        "from test_eval_imagenet import register_tiny_model\n"
        "register_tiny_model()\n"
        f"sys.argv = ['eval_imagenet.py'] + sys.argv[1:]\n"
        f"runpy.run_path({os.path.join(ROOT, 'scripts', 'eval_imagenet.py')!r}, run_name='__main__')\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", **(env or {}))
    return subprocess.run([sys.executable, str(runner), "--model", TINY, "--threads", "1", "--no-progress",
                           "--num-classes", str(NUM_CLASSES),
                           *map(str, args)], capture_output=True, text=True, env=env, timeout=300, cwd=cwd)


# ---- preprocessing --------------------------------------------------------------------------


def test_eval_config_from_registry_and_overrides(tiny_model):
    info = registry.get_model_info(tiny_model)
    cfg = resolve_eval_config(info)
    assert cfg == dict(img_size=16, resize=18, crop_pct=0.875, interpolation="bilinear",
                       mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    cfg = resolve_eval_config(info, img_size=448, crop_pct=1.0, interpolation="bicubic")
    assert (cfg["img_size"], cfg["resize"], cfg["interpolation"]) == (448, 448, "bicubic")
    assert resolve_eval_config(None, img_size=224, crop_pct=0.9)["resize"] == 248
    with pytest.raises(ValueError, match="crop_pct"):
        resolve_eval_config(info, crop_pct=1.5)
    with pytest.raises(ValueError, match="interpolation"):
        resolve_eval_config(info, interpolation="cubic")


def test_center_crop_without_resize_takes_the_centre():
    # 20x20 image, crop 16 at crop_pct 0.8: resize target int(16 / 0.8) = 20 -> no resize, offset 2.
    pixels = np.random.RandomState(0).randint(0, 256, (20, 20, 3)).astype(np.uint8)
    out = EvalTransform(16, 0.8, "bicubic", mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0))(Image.fromarray(pixels))
    ref = (pixels[2:18, 2:18].astype(np.float32) / 255.0 - [0.1, 0.2, 0.3]) / [0.5, 0.25, 2.0]
    assert out.dtype == np.float32 and out.shape == (3, 16, 16)
    np.testing.assert_allclose(out, ref.transpose(2, 0, 1), rtol=0, atol=1e-6)


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
@pytest.mark.parametrize("size", [(50, 37), (37, 61)])
def test_transform_matches_torchvision(interpolation, size):
    T = pytest.importorskip("torchvision.transforms")
    img = Image.fromarray(np.random.RandomState(1).randint(0, 256, (size[1], size[0], 3)).astype(np.uint8))
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    ref = T.Compose([
        T.Resize(int(24 / 0.875), interpolation=getattr(T.InterpolationMode, interpolation.upper())),
        T.CenterCrop(24), T.ToTensor(), T.Normalize(mean, std),
    ])(img).numpy()
    out = EvalTransform(24, 0.875, interpolation, mean, std)(img)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5)


def test_accuracy_counts_by_hand():
    logits = np.array([[0.1, 0.9, 0.0], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5]])
    # Ranks of the labels: sample 0 label 1 -> rank 0; sample 1 label 2 -> rank 1; sample 2 label 0 -> rank 2.
    assert accuracy_counts(logits, [1, 2, 0], topk=(1, 2, 5)) == [1, 2, 3]


# ---- datasets -------------------------------------------------------------------------------


def test_both_layouts_give_the_same_samples(imagenet_dirs, tiny_model):
    list_root, folder_root = imagenet_dirs
    tf = EvalTransform(16, 0.875, "bilinear", (0.5,) * 3, (0.5,) * 3)
    by_list = ImageNetVal(list_root, tf)  # val_list.txt found in the root
    by_folder = ImageNetVal(folder_root, tf)  # root/val/<wnid>/
    assert (by_list.layout, by_folder.layout) == ("list", "folder")
    assert len(by_list) == len(by_folder) == len(SAMPLES)
    assert sorted(s[1] for s in by_list.samples) == sorted(s[1] for s in by_folder.samples)
    x, y = by_list[0]
    assert x.shape == (3, 16, 16) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_allclose(x.mean(axis=(1, 2)), COLOURS["red"][1], atol=0.03)


def test_evaluate_in_process(imagenet_dirs, tiny_model):
    model = paddle_vits.create_model(tiny_model, num_classes=NUM_CLASSES)
    model.set_state_dict({"head.weight": paddle.to_tensor(W), "head.bias": paddle.to_tensor(B)})
    ds = ImageNetVal(imagenet_dirs[0], EvalTransform.from_config(resolve_eval_config(registry.get_model_info(TINY))))
    res = evaluate(model, BatchLoader(ds, batch_size=3), progress=False)
    assert (res.n_images, res.skipped) == (8, 0)
    assert res.top1 == pytest.approx(EXPECTED_TOP1) and res.top5 == pytest.approx(EXPECTED_TOP5)


def test_dataset_errors(tmp_path):
    with pytest.raises(ImageNetDataError, match="data directory not found"):
        ImageNetVal(tmp_path / "nope")
    with pytest.raises(ImageNetDataError, match="no class folders"):
        ImageNetVal(tmp_path)
    (tmp_path / "empty.txt").write_text("\n# only a comment\n")
    with pytest.raises(ImageNetDataError, match="no entries"):
        ImageNetVal(tmp_path, val_list=tmp_path / "empty.txt")
    (tmp_path / "bad.txt").write_text("a.JPEG 1\nb.JPEG\n")
    with pytest.raises(ImageNetDataError, match=r"bad.txt:2: expected 'relative/path label'"):
        read_val_list(str(tmp_path / "bad.txt"))
    (tmp_path / "bad_label.txt").write_text("a.JPEG 1\n\nc.JPEG cat\n")
    with pytest.raises(ImageNetDataError, match=r"bad_label.txt:3: label 'cat' is not an integer"):
        read_val_list(str(tmp_path / "bad_label.txt"))
    with pytest.raises(ImageNetDataError, match="val list not found"):
        ImageNetVal(tmp_path, val_list=tmp_path / "missing.txt")


def test_unreadable_image_skip_or_fail(tmp_path):
    _write_jpeg(str(tmp_path / "good.JPEG"), (255, 0, 0), (20, 20))
    good = (tmp_path / "good.JPEG").read_bytes()
    (tmp_path / "truncated.JPEG").write_bytes(good[: len(good) // 3])
    (tmp_path / "list.txt").write_text("good.JPEG 0\ntruncated.JPEG 1\nnot_there.JPEG 2\n")
    tf = EvalTransform(16, 0.875)
    failing = ImageNetVal(tmp_path, tf, val_list=tmp_path / "list.txt")
    assert failing[0][0].shape == (3, 16, 16)
    with pytest.raises(ImageNetDataError, match="truncated.JPEG"):
        failing[1]
    with pytest.raises(ImageNetDataError, match="not_there.JPEG"):
        failing[2]
    skipping = ImageNetVal(tmp_path, tf, val_list=tmp_path / "list.txt", on_bad_image="skip")
    images, labels, skipped = collate_skip([skipping[i] for i in range(3)])
    assert images.shape == (1, 3, 16, 16) and labels.tolist() == [0] and skipped == 2


# ---- the CLI end to end ---------------------------------------------------------------------


def test_cli_list_layout_pdparams(imagenet_dirs, weights, tmp_path, tiny_model):
    out = tmp_path / "res" / "result.json"
    proc = _run_cli(tmp_path, "--weights", weights[0], "--data", imagenet_dirs[0],
                    "--val-list", imagenet_dirs[0] / "val_list.txt", "--batch-size", 3, "--workers", 0,
                    "--output", out)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res["model"] == TINY and res["layout"] == "list"
    assert (res["n_images"], res["skipped"]) == (8, 0)
    assert res["top1"] == pytest.approx(EXPECTED_TOP1) and res["top5"] == pytest.approx(EXPECTED_TOP5)
    assert res["images_per_sec"] > 0
    assert res["preprocessing"]["resize"] == 18 and res["preprocessing"]["interpolation"] == "bilinear"
    assert f"top-1 {EXPECTED_TOP1:.5f}  top-5 {EXPECTED_TOP5:.5f}" in proc.stdout


def test_cli_folder_layout_official_weights_with_workers(imagenet_dirs, weights, tmp_path, tiny_model):
    out = tmp_path / "result.json"
    proc = _run_cli(tmp_path, "--weights", weights[1], "--data", imagenet_dirs[1], "--batch-size", 4,
                    "--workers", 2, "--crop-pct", 1.0, "--interpolation", "bicubic", "--output", out)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res["layout"] == "folder" and res["n_images"] == 8
    assert res["top1"] == pytest.approx(EXPECTED_TOP1) and res["top5"] == pytest.approx(EXPECTED_TOP5)
    assert res["preprocessing"]["crop_pct"] == 1.0 and res["preprocessing"]["resize"] == 16


def test_cli_corrupt_image_skip_and_fail(imagenet_dirs, weights, tmp_path, tiny_model):
    root = tmp_path / "data"
    os.makedirs(root)
    lines = (imagenet_dirs[0] / "val_list.txt").read_text().splitlines()
    for line in lines:
        rel = line.split()[0]
        os.makedirs(os.path.dirname(root / rel), exist_ok=True)
        (root / rel).write_bytes((imagenet_dirs[0] / rel).read_bytes())
    (root / "val" / "corrupt.JPEG").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    # The corrupt image, labelled as class 0, goes first.
    (root / "val_list.txt").write_text("\n".join(["val/corrupt.JPEG 0"] + lines) + "\n")
    out = tmp_path / "skip.json"
    proc = _run_cli(tmp_path, "--weights", weights[0], "--data", root, "--on-bad-image", "skip",
                    "--workers", 0, "--output", out)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert (res["n_images"], res["skipped"]) == (8, 1)
    assert res["top1"] == pytest.approx(EXPECTED_TOP1) and res["top5"] == pytest.approx(EXPECTED_TOP5)
    assert "1 unreadable skipped" in proc.stdout

    proc = _run_cli(tmp_path, "--weights", weights[0], "--data", root, "--workers", 0)
    assert proc.returncode == 2
    assert "cannot read image" in proc.stderr and "corrupt.JPEG" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_missing_weights_and_data(imagenet_dirs, weights, tmp_path, tiny_model):
    proc = _run_cli(tmp_path, "--weights", tmp_path / "none.pdparams", "--data", imagenet_dirs[0])
    assert proc.returncode == 2 and "weights: no file" in proc.stderr and "Traceback" not in proc.stderr
    proc = _run_cli(tmp_path, "--weights", weights[0], "--data", tmp_path / "no_such_dir")
    assert proc.returncode == 2 and "no folder" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_without_arguments_names_everything_missing_in_one_message(tmp_path):
    """Bare ``eval_imagenet.py`` is the CaiT notebook's job; here nothing is in place, so one message says
    what to put where (or which flag to pass), before any model is built."""
    env = {k: v for k, v in os.environ.items() if k != "PADDLE_VITS_DATA"}
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "eval_imagenet.py")], cwd=tmp_path,
                          capture_output=True, text=True, env=dict(env, OMP_NUM_THREADS="1"), timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: cannot evaluate cait_m_48_448, missing: "), proc.stderr
    for part in ("no folder data/ILSVRC2012", "val_list.txt", "--data DIR", "data/cait_m_48_448.pdparams",
                 "data/weights/M48_448.pth", "--weights FILE"):
        assert part in lines[0], part


@pytest.mark.parametrize("where", ["cwd", "env"])
def test_cli_default_paths_evaluate(imagenet_dirs, weights, tmp_path, tiny_model, where):
    """The default layout (data/ILSVRC2012 with val_list.txt, data/<model>.pdparams) with only --model."""
    import shutil

    root = tmp_path / "data" if where == "cwd" else tmp_path / "elsewhere"
    shutil.copytree(imagenet_dirs[0], root / "ILSVRC2012")
    (root / "weights").mkdir()
    shutil.copy(weights[0], root / "weights" / f"{TINY}.pdparams")
    env = {"PADDLE_VITS_DATA": str(root)} if where == "env" else {"PADDLE_VITS_DATA": ""}
    proc = _run_cli(tmp_path, "--workers", 0, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"top-1 {EXPECTED_TOP1:.5f}  top-5 {EXPECTED_TOP5:.5f}" in proc.stdout
    assert "(list layout)" in proc.stdout and "device: cpu" in proc.stdout
