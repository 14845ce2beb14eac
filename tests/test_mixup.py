"""Soft targets: one-hot smoothing, Mixup/CutMix, the losses and the LR schedule against hand-computed values."""
import math

import numpy as np
import paddle
import pytest

from paddle_vits.data.mixup import Mixup, one_hot, rand_bbox
from paddle_vits.train import (build_optimizer, build_scheduler, cosine_lr_factor, label_smoothing_cross_entropy,
                               soft_target_cross_entropy)


def test_one_hot_with_smoothing():
    t = one_hot([2, 0], 4, smoothing=0.2)
    np.testing.assert_allclose(t, [[0.05, 0.05, 0.85, 0.05], [0.85, 0.05, 0.05, 0.05]], rtol=1e-6)
    np.testing.assert_allclose(t.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(one_hot([1], 3), [[0, 1, 0]])


def test_label_smoothing_cross_entropy_by_hand():
    logits = [[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]]
    labels = [2, 0]
    s = 0.1
    expect = []
    for z, y in zip(logits, labels):
        lse = math.log(sum(math.exp(v) for v in z))
        logp = [v - lse for v in z]
        expect.append(-sum(((1 - s) * (k == y) + s / 3) * logp[k] for k in range(3)))
    got = float(label_smoothing_cross_entropy(paddle.to_tensor(logits), paddle.to_tensor(labels), smoothing=s))
    assert got == pytest.approx(sum(expect) / 2, rel=1e-6)
    # = (1 - s) * NLL + s * mean_k(-log p_k)
    z = np.array(logits)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    alt = ((1 - s) * -logp[[0, 1], labels] + s * -logp.mean(1)).mean()
    assert got == pytest.approx(alt, rel=1e-6)


def test_without_smoothing_it_is_cross_entropy():
    logits = paddle.to_tensor([[0.3, -0.2, 1.5, 0.0]])
    labels = paddle.to_tensor([1])
    ref = float(paddle.nn.functional.cross_entropy(logits, labels))
    assert float(label_smoothing_cross_entropy(logits, labels, smoothing=0.0)) == pytest.approx(ref, rel=1e-6)


def test_soft_target_cross_entropy_by_hand():
    logits = paddle.to_tensor([[0.0, math.log(3.0)]])  # p = [1/4, 3/4]
    target = paddle.to_tensor([[0.3, 0.7]])
    expect = -(0.3 * math.log(0.25) + 0.7 * math.log(0.75))
    assert float(soft_target_cross_entropy(logits, target)) == pytest.approx(expect, rel=1e-6)


def _batch():
    # Four 1x4x4 images with constant values 0, 1, 2, 3; labels 0..3.
    images = np.stack([np.full((1, 4, 4), v, np.float32) for v in range(4)])
    return images, np.arange(4)


def test_mixup_mixes_with_the_reversed_batch():
    images, labels = _batch()
    mix = Mixup(mixup_alpha=0.8, cutmix_alpha=0.0, smoothing=0.0, num_classes=4, seed=1)
    mixed, target, lam = mix(images, labels, key=7)
    assert 0.0 < lam < 1.0
    # Image i is lam * i + (1 - lam) * (3 - i); its target puts lam on i and 1 - lam on 3 - i.
    for i in range(4):
        np.testing.assert_allclose(mixed[i], lam * i + (1 - lam) * (3 - i), rtol=1e-6)
        expect = np.zeros(4)
        expect[i] += lam
        expect[3 - i] += 1 - lam
        np.testing.assert_allclose(target[i], expect, rtol=1e-6, atol=1e-7)
    again = mix(images, labels, key=7)
    assert again[2] == lam and np.array_equal(again[0], mixed)
    assert mix(images, labels, key=8)[2] != lam


def test_mixup_targets_with_smoothing():
    images, labels = _batch()
    mixed, target, lam = Mixup(0.8, 0.0, smoothing=0.1, num_classes=4, seed=0)(images, labels, key=0)
    # Row 0: lam * (0.925 on 0, 0.025 elsewhere) + (1 - lam) * (0.925 on 3, 0.025 elsewhere).
    expect = [0.025 + 0.9 * lam, 0.025, 0.025, 0.025 + 0.9 * (1 - lam)]
    np.testing.assert_allclose(target[0], expect, rtol=1e-6)
    np.testing.assert_allclose(target.sum(1), 1.0, rtol=1e-6)


def test_cutmix_pastes_a_box_and_weights_targets_by_its_area():
    images = np.stack([np.zeros((3, 16, 16), np.float32), np.ones((3, 16, 16), np.float32)])
    mix = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, smoothing=0.0, num_classes=2, seed=0)
    for key in range(5):
        mixed, target, lam = mix(images, np.array([0, 1]), key=key)
        pasted = mixed[0, 0]  # image 0 is zeros: its ones are the box from image 1
        rows, cols = np.nonzero(pasted)
        if len(rows):
            box = pasted[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
            assert box.all()  # one rectangle
        area = pasted.mean()
        assert lam == pytest.approx(1.0 - area)
        np.testing.assert_allclose(target[0], [lam, 1 - lam], rtol=1e-6)
        np.testing.assert_allclose(target[1], [1 - lam, lam], rtol=1e-6)
        np.testing.assert_array_equal(mixed[1] == 0, mixed[0] == 1)  # the same box, the other way round


class _FixedCentre:
    """Stands in for numpy's Generator in :func:`rand_bbox`: the box centre is given."""

    def __init__(self, cy, cx):
        self.values = [cy, cx]

    def integers(self, low, high):
        return self.values.pop(0)


def test_rand_bbox_by_hand():
    # lam 0.75 -> side ratio sqrt(0.25) = 0.5 -> a 5x5 box on a 10x10 image, centre (5, 5): rows/cols 3..7.
    assert rand_bbox(10, 10, 0.75, _FixedCentre(5, 5)) == (3, 7, 3, 7)
    # Centre at the corner: clipped to the image.
    assert rand_bbox(10, 10, 0.75, _FixedCentre(0, 9)) == (0, 2, 7, 10)


def test_switch_between_mixup_and_cutmix():
    images = np.stack([np.zeros((1, 8, 8), np.float32), np.ones((1, 8, 8), np.float32)])
    mix = Mixup(mixup_alpha=1.0, cutmix_alpha=1.0, switch_prob=0.5, smoothing=0.0, num_classes=2, seed=0)
    kinds = set()
    for key in range(20):
        mixed = mix(images, np.array([0, 1]), key=key)[0]
        kinds.add("cutmix" if set(np.unique(mixed[0])) <= {0.0, 1.0} else "mixup")
    assert kinds == {"cutmix", "mixup"}


def test_prob_zero_leaves_the_batch_alone():
    images, labels = _batch()
    mixed, target, lam = Mixup(0.8, 1.0, prob=0.0, smoothing=0.0, num_classes=4)(images, labels, key=3)
    assert lam == 1.0 and np.array_equal(mixed, images)
    np.testing.assert_array_equal(target, np.eye(4))


def test_mixup_bad_arguments():
    with pytest.raises(ValueError, match="even batch"):
        Mixup(0.8, 0.0)(np.zeros((3, 1, 2, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="mixup_alpha > 0 or cutmix_alpha > 0"):
        Mixup(0.0, 0.0)
    with pytest.raises(ValueError, match=">= 0"):
        Mixup(-1.0, 1.0)


def test_cosine_schedule_by_hand():
    # 2 warm-up steps then cosine over 8 steps down to min_ratio 0.1.
    assert cosine_lr_factor(0, 10, 2) == pytest.approx(0.5)
    assert cosine_lr_factor(1, 10, 2) == pytest.approx(1.0)
    assert cosine_lr_factor(2, 10, 2) == pytest.approx(1.0)
    assert cosine_lr_factor(6, 10, 2, 0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    assert cosine_lr_factor(10, 10, 2, 0.1) == pytest.approx(0.1)
    assert cosine_lr_factor(0, 4) == pytest.approx(1.0)
    assert cosine_lr_factor(1, 4) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_scheduler_steps_the_optimizer_lr():
    layer = paddle.nn.Linear(2, 2)
    sched = build_scheduler(1e-3, total_steps=4, warmup_steps=0, min_lr=1e-5)
    opt = build_optimizer(layer, "adamw", sched, 1e-3, weight_decay=0.05)
    lrs = []
    for _ in range(5):
        lrs.append(opt.get_lr())
        sched.step()
    expect = [1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * min(1, s / 4))) for s in range(5)]
    np.testing.assert_allclose(lrs, expect, rtol=1e-6)


def test_adamw_skips_decay_on_biases():
    layer = paddle.nn.Linear(3, 2)
    opt = build_optimizer(layer, "adamw", None, 1e-3, weight_decay=0.05)
    groups = {id(p): g["weight_decay"] for g in opt._param_groups for p in g["params"]}
    assert groups[id(layer.weight)] == 0.05 and groups[id(layer.bias)] == 0.0
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        build_optimizer(layer, "sgd")
