"""Dense prediction over a backbone (``paddle_vits.dense``, ``scripts/segment_shapes.py``).

A tiny CrossFormer (16 channels, one block per stage) + FPN + head learns a fixed generated batch;
the output has the input's size; gradients reach the backbone; mIoU on hand-made masks; the shapes
generator is seeded and its masks match what is drawn; the script runs end to end.
"""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from paddle_vits import create_model
from paddle_vits.dense import (SHAPE_CLASSES, SegmentationModel, ShapesDataset, SimpleFPN, confusion_matrix,
                               make_shapes, mean_iou, segmentation_loss)
from paddle_vits.utils.cli import run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(img_size=64, embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4), drop_path_rate=0.0)


def _tiny_model(fpn_channels=16):
    backbone = create_model("crossformer_t", features_only=True, **TINY)
    return SegmentationModel(backbone, len(SHAPE_CLASSES), fpn_channels=fpn_channels)


def test_output_shape_and_gradients_reach_the_backbone():
    model = _tiny_model()
    x = paddle.randn([2, 3, 64, 64])
    out = model(x)
    assert out.shape == [2, len(SHAPE_CLASSES), 64, 64]
    mask = paddle.to_tensor(np.random.randint(0, len(SHAPE_CLASSES), (2, 64, 64)).astype("int64"))
    segmentation_loss(out, mask).backward()
    missing = [n for n, p in model.named_parameters() if not p.stop_gradient and p.grad is None]
    assert not missing
    stem = model.backbone.model.patch_embed
    assert all(float(p.grad.abs().sum()) > 0 for p in stem.parameters())
    # every FPN level is used: each lateral conv gets a gradient
    assert all(float(conv.weight.grad.abs().sum()) > 0 for conv in model.fpn.lateral)


def test_training_on_a_fixed_batch_lowers_the_loss():
    images, masks = ShapesDataset(4, 64, seed=0).batch(range(4))
    x, y = paddle.to_tensor(images), paddle.to_tensor(masks)
    model = _tiny_model()
    opt = paddle.optimizer.AdamW(3e-3, parameters=model.parameters())
    losses = []
    for _ in range(30):
        loss = segmentation_loss(model(x), y)
        loss.backward()
        opt.step()
        opt.clear_grad()
        losses.append(float(loss))
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.4 * losses[0], losses
    model.eval()
    with paddle.no_grad():
        pred = model(x).argmax(axis=1)
    miou, _ = mean_iou(confusion_matrix(pred, y, len(SHAPE_CLASSES)))
    # fitting the batch finds the shapes, not only the background
    assert miou > 0.4, miou


def test_fpn_levels_keep_their_sizes():
    fpn = SimpleFPN([8, 16, 32], out_channels=12)
    feats = [paddle.randn([1, c, s, s]) for c, s in ((8, 16), (16, 8), (32, 4))]
    assert [o.shape for o in fpn(feats)] == [[1, 12, 16, 16], [1, 12, 8, 8], [1, 12, 4, 4]]
    with pytest.raises(ValueError, match="3 levels, got 2"):
        fpn(feats[:2])


def test_single_map_backbone():
    """CaiT gives one stride-16 map; the FPN and head work with one level."""
    backbone = create_model("cait_xxs_24", features_only=True, img_size=32, depth=1)
    model = SegmentationModel(backbone, 3, fpn_channels=8)
    assert model(paddle.randn([1, 3, 32, 32])).shape == [1, 3, 32, 32]


def test_mean_iou_on_hand_made_masks():
    target = np.zeros((4, 4), np.int64)
    target[:2] = 1
    miou, iou = mean_iou(confusion_matrix(target, target, 3))
    assert miou == 1.0 and np.isnan(iou[2])  # class 2 absent from both: not counted
    disjoint = 1 - target  # every pixel wrong
    assert mean_iou(confusion_matrix(disjoint, target, 2))[0] == 0.0
    half = target.copy()
    half[2:, :2] = 1  # 4 background pixels predicted as class 1
    miou, iou = mean_iou(confusion_matrix(half, target, 2))
    np.testing.assert_allclose(iou, [4 / 8, 8 / 12])
    assert miou == pytest.approx((0.5 + 2 / 3) / 2)
    # labels outside 0..K-1 (an ignore index) are left out
    ignore = target.copy()
    ignore[0, 0] = 255
    assert confusion_matrix(target, ignore, 2).sum() == 15
    assert mean_iou(confusion_matrix(paddle.to_tensor(target), paddle.to_tensor(target), 2))[0] == 1.0


def test_shapes_are_seeded_and_masks_follow_the_drawing():
    a_img, a_mask = make_shapes((3, 7), 64)
    b_img, b_mask = make_shapes((3, 7), 64)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_mask, b_mask)
    assert not np.array_equal(make_shapes((4, 7), 64)[1], a_mask)
    assert a_img.shape == (3, 64, 64) and a_img.dtype == np.float32 and 0 <= a_img.min() and a_img.max() <= 1
    ds = ShapesDataset(64, 32, seed=0)
    masks = ds.batch(range(64))[1]
    assert set(np.unique(masks)) == set(range(len(SHAPE_CLASSES)))  # every class occurs
    # inside a shape the colour is flat (only the noise varies); the background is another colour
    for img, mask in (make_shapes((0, i), 64, max_shapes=1) for i in range(5)):
        inside, outside = img[:, mask > 0], img[:, mask == 0]
        assert inside.std(axis=1).max() < 0.08
        assert np.abs(inside.mean(axis=1) - outside.mean(axis=1)).max() > 0.02 or mask.sum() == 0
    with pytest.raises(IndexError):
        ds[64]


def test_segment_shapes_script_runs():
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONPATH=ROOT)
    res = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "segment_shapes.py"), "--steps", "2",
                          "--img-size", "32", "--batch-size", "2", "--eval-images", "2", "--threads", "1",
                          "--log-every", "1", "--no-progress"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "step 2/2  train loss" in res.stdout
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("held-out"))
    miou = float(line.split("mIoU ")[1].split()[0])
    assert 0.0 <= miou <= 1.0
    assert "IoU per class: background" in res.stdout


def test_segment_shapes_script_rejects_a_bad_size(capsys):
    spec = importlib.util.spec_from_file_location("segment_shapes", os.path.join(ROOT, "scripts", "segment_shapes.py"))
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert run(script.main, ["--img-size", "48", "--steps", "1", "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot build crossformer_t") and "multiples of 32" in err[0]
