"""Small dense-prediction parts over a backbone: an FPN, a segmentation head, generated shapes, mIoU.

A minimal end-to-end example of the feature maps of ``create_model(..., features_only=True)``
(``scripts/segment_shapes.py`` trains it)::

    backbone = create_model("crossformer_t", features_only=True)
    model = SegmentationModel(backbone, num_classes=len(SHAPE_CLASSES))
    logits = model(images)                      # [B, num_classes, H, W]

* :class:`SimpleFPN`: lateral 1x1 convs, a top-down pathway (nearest upsampling and sums), a 3x3
  conv per level (Lin et al., Feature Pyramid Networks, CVPR 2017), with the input channels taken
  from the backbone's ``feature_info``;
* :class:`SegmentationHead`: the FPN levels resized to the finest one and summed (the semantic
  branch of Panoptic FPN, reduced), a 3x3 conv, a per-pixel 1x1 classifier, bilinear upsampling to
  the input size;
* :class:`ShapesDataset`: images of random circles, rectangles and triangles in random colours on a
  noisy background, with the per-pixel class mask; item ``i`` is a function of ``(seed, i)`` only,
  so a training set and a held-out set are two seeds;
* :func:`confusion_matrix` / :func:`mean_iou`: the usual semantic-segmentation score.
"""
import math

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

__all__ = ["SHAPE_CLASSES", "SimpleFPN", "SegmentationHead", "SegmentationModel", "ShapesDataset",
           "make_shapes", "confusion_matrix", "mean_iou", "segmentation_loss"]

SHAPE_CLASSES = ("background", "circle", "rectangle", "triangle")


def _conv_norm_act(in_ch, out_ch, kernel):
    """Conv (no bias) -> GroupNorm -> ReLU; GroupNorm so that tiny batches train and evaluate alike."""
    return nn.Sequential(nn.Conv2D(in_ch, out_ch, kernel, padding=kernel // 2, bias_attr=False),
                         nn.GroupNorm(math.gcd(32, out_ch), out_ch), nn.ReLU())


class SimpleFPN(nn.Layer):
    """A feature pyramid over a backbone's maps, all levels with ``out_channels``.

    Args:
        in_channels: Channels of each input map, finest first (``backbone.feature_info.channels()``).
        out_channels: Channels of every output level.

    ``forward(feats)`` takes the maps (``[B, in_channels[i], H_i, W_i]``, any sizes; a coarser level
    is resized to the next finer one) and returns the list of ``[B, out_channels, H_i, W_i]``.
    """

    def __init__(self, in_channels, out_channels=64):
        super().__init__()
        in_channels = [int(c) for c in in_channels]
        if not in_channels:
            raise ValueError("SimpleFPN needs at least one input level")
        self.in_channels, self.out_channels = in_channels, int(out_channels)
        self.lateral = nn.LayerList([nn.Conv2D(c, self.out_channels, 1) for c in in_channels])
        self.smooth = nn.LayerList([_conv_norm_act(self.out_channels, self.out_channels, 3) for _ in in_channels])

    def forward(self, feats):
        if len(feats) != len(self.lateral):
            raise ValueError(f"SimpleFPN was built for {len(self.lateral)} levels, got {len(feats)} maps")
        laterals = [conv(f) for conv, f in zip(self.lateral, feats)]
        for i in range(len(laterals) - 1, 0, -1):  # top-down: coarse level added to the next finer one
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[2:],
                                                              mode="nearest")
        return [smooth(x) for smooth, x in zip(self.smooth, laterals)]


class SegmentationHead(nn.Layer):
    """FPN levels -> per-pixel class logits at the input size.

    Args:
        channels: Channels of every FPN level.
        num_classes: Classes per pixel.
    """

    def __init__(self, channels, num_classes):
        super().__init__()
        self.fuse = _conv_norm_act(channels, channels, 3)
        self.classifier = nn.Conv2D(channels, num_classes, 1)

    def forward(self, levels, out_size):
        """``levels``: list of ``[B, C, H_i, W_i]``; ``out_size``: ``(H, W)`` -> ``[B, num_classes, H, W]``."""
        target = max((lvl.shape[2:] for lvl in levels), key=lambda hw: hw[0] * hw[1])
        x = sum(lvl if list(lvl.shape[2:]) == list(target) else
                F.interpolate(lvl, size=target, mode="bilinear", align_corners=False) for lvl in levels)
        x = self.classifier(self.fuse(x))
        return F.interpolate(x, size=out_size, mode="bilinear", align_corners=False)


class SegmentationModel(nn.Layer):
    """A backbone (``create_model(..., features_only=True)``), a :class:`SimpleFPN` and a :class:`SegmentationHead`.

    Args:
        backbone: A layer whose ``forward`` returns a list of ``NCHW`` maps and that has
            ``feature_info`` (:class:`paddle_vits.features.FeatureInfo`).
        num_classes: Classes per pixel.
        fpn_channels: Channels of the FPN levels and the head.
    """

    def __init__(self, backbone, num_classes, fpn_channels=64):
        super().__init__()
        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.fpn = SimpleFPN(backbone.feature_info.channels(), fpn_channels)
        self.head = SegmentationHead(fpn_channels, self.num_classes)

    def forward(self, x):
        """``[B, C, H, W]`` images -> ``[B, num_classes, H, W]`` logits."""
        return self.head(self.fpn(self.backbone(x)), x.shape[2:])


def segmentation_loss(logits, mask):
    """Mean per-pixel cross-entropy of ``[B, K, H, W]`` logits against an ``[B, H, W]`` int64 mask."""
    return F.cross_entropy(logits, mask.unsqueeze(1), axis=1)


def _draw(rng, img, mask, size, cls):
    """Paint one shape of class ``cls`` (1 circle, 2 rectangle, 3 triangle) in a random colour."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    scale = rng.uniform(0.12, 0.3) * size
    cy, cx = rng.uniform(scale, size - scale, 2)
    if cls == 1:
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= scale ** 2
    elif cls == 2:
        hh, hw = scale * rng.uniform(0.5, 1.0, 2)
        inside = (np.abs(yy - cy) <= hh) & (np.abs(xx - cx) <= hw)
    else:
        angles = rng.uniform(0, 2 * np.pi) + np.array([0.0, 2.0, 4.0]) * np.pi / 3 + rng.uniform(-0.3, 0.3, 3)
        vy, vx = cy + scale * np.sin(angles), cx + scale * np.cos(angles)
        # inside the triangle: the same side of all three edges (signs of the cross products agree)
        sides = [(vx[(k + 1) % 3] - vx[k]) * (yy - vy[k]) - (vy[(k + 1) % 3] - vy[k]) * (xx - vx[k]) for k in range(3)]
        inside = ((sides[0] >= 0) & (sides[1] >= 0) & (sides[2] >= 0)) | \
                 ((sides[0] <= 0) & (sides[1] <= 0) & (sides[2] <= 0))
    img[:, inside] = rng.uniform(0.0, 1.0, (3, 1))
    mask[inside] = cls


def make_shapes(seed, size, max_shapes=3):
    """One generated image and its mask, a function of ``seed`` only.

    Args:
        seed: An int or a sequence of ints (``numpy.random.default_rng``'s seed).
        size: Image side.
        max_shapes: Up to this many shapes (at least one), later ones drawn over earlier ones.

    Returns:
        ``(image, mask)``: float32 ``[3, size, size]`` in ``[0, 1]`` and int64 ``[size, size]`` with
        the indices of :data:`SHAPE_CLASSES`.
    """
    rng = np.random.default_rng(seed)
    img = np.empty((3, size, size), np.float32)
    img[:] = rng.uniform(0.0, 1.0, (3, 1, 1))
    mask = np.zeros((size, size), np.int64)
    for cls in rng.integers(1, len(SHAPE_CLASSES), rng.integers(1, max_shapes + 1)):
        _draw(rng, img, mask, size, int(cls))
    img += rng.normal(0.0, 0.05, img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0), mask


class ShapesDataset(paddle.io.Dataset):
    """``length`` generated images (:func:`make_shapes`), normalised with ImageNet's mean and std.

    Args:
        length: Number of items.
        img_size: Image side (CrossFormer and Wave-ViT need a multiple of 32).
        seed: Item ``i`` is ``make_shapes((seed, i), img_size)``; use another seed for a held-out set.
        max_shapes: Up to this many shapes per image.

    Items are ``(image float32 [3, S, S], mask int64 [S, S])``.
    """

    def __init__(self, length, img_size=128, seed=0, max_shapes=3):
        super().__init__()
        self.length, self.img_size, self.seed, self.max_shapes = int(length), int(img_size), int(seed), max_shapes
        self.mean = np.asarray(IMAGENET_DEFAULT_MEAN, np.float32).reshape(3, 1, 1)
        self.std = np.asarray(IMAGENET_DEFAULT_STD, np.float32).reshape(3, 1, 1)

    def __len__(self):
        return self.length

    def __getitem__(self, idx):
        if not 0 <= idx < self.length:
            raise IndexError(f"ShapesDataset index {idx} out of range 0..{self.length - 1}")
        img, mask = make_shapes((self.seed, int(idx)), self.img_size, self.max_shapes)
        return (img - self.mean) / self.std, mask

    def batch(self, indices):
        """Stacked items: ``(images [B, 3, S, S] float32, masks [B, S, S] int64)`` numpy arrays."""
        items = [self[i] for i in indices]
        return np.stack([it[0] for it in items]), np.stack([it[1] for it in items])


def confusion_matrix(pred, target, num_classes):
    """``[K, K]`` int64 counts, rows the true class, columns the predicted one.

    Args:
        pred: Predicted class per pixel (numpy or paddle, any shape).
        target: True class per pixel, the same shape; values outside ``0..K-1`` are ignored.
        num_classes: ``K``.
    """
    pred = np.asarray(pred.numpy() if isinstance(pred, paddle.Tensor) else pred).reshape(-1).astype(np.int64)
    target = np.asarray(target.numpy() if isinstance(target, paddle.Tensor) else target).reshape(-1).astype(np.int64)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target differ in size: {pred.size} and {target.size} pixels")
    keep = (target >= 0) & (target < num_classes)
    return np.bincount(num_classes * target[keep] + pred[keep], minlength=num_classes ** 2).reshape(
        num_classes, num_classes)  # [K*K] -> [K (true), K (pred)]


def mean_iou(conf):
    """``(mIoU, per-class IoU)`` from a confusion matrix; a class absent from both prediction and
    truth has IoU ``nan`` and does not count in the mean."""
    conf = np.asarray(conf, np.float64)
    inter = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, np.nan)
    return float(np.nanmean(iou)) if np.any(union > 0) else float("nan"), iou
