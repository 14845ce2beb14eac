"""Batch-level Mixup / CutMix with soft targets, as a DataLoader collate function.

No maintained Paddle package ships one (paddlex 3.x has no ``MixupImage``), so it
is written here. Targets are label-smoothed one-hot vectors mixed with the same
coefficient as the images (timm's convention); train with
:func:`paddle_vits.train.soft_target_cross_entropy`.
"""
import numpy as np


def one_hot(labels, num_classes, smoothing=0.0):
    """Smoothed one-hot ``float32 [B, K]``: ``1 - s + s/K`` on the label, ``s/K`` elsewhere."""
    labels = np.asarray(labels, dtype=np.int64)
    off = smoothing / num_classes
    out = np.full((len(labels), num_classes), off, dtype=np.float32)
    out[np.arange(len(labels)), labels] = 1.0 - smoothing + off
    return out


def rand_bbox(h, w, lam, rng):
    """Box of area ~``(1 - lam) * h * w`` centred uniformly, clipped to the image.

    Returns ``(y0, y1, x0, x1)``.
    """
    ratio = np.sqrt(1.0 - lam)
    ch, cw = int(h * ratio), int(w * ratio)
    cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
    y0, y1 = np.clip(cy - ch // 2, 0, h), np.clip(cy + ch // 2, 0, h)
    x0, x1 = np.clip(cx - cw // 2, 0, w), np.clip(cx + cw // 2, 0, w)
    return int(y0), int(y1), int(x0), int(x1)


class Mixup:
    """Mix a batch with its reverse (``x[::-1]``), Mixup or CutMix, with soft targets.

    Args:
        mixup_alpha: Beta(alpha, alpha) for Mixup; 0 disables Mixup.
        cutmix_alpha: Beta(alpha, alpha) for CutMix; 0 disables CutMix.
        prob: Probability of mixing a batch at all.
        switch_prob: With both enabled, probability of CutMix instead of Mixup.
        smoothing: Label smoothing of the targets.
        num_classes: Number of classes.
        seed: Seed; the draw for a batch is a function of ``(seed, key)`` where
            ``key`` is passed to :meth:`__call__` (e.g. the global step), so runs
            resume exactly.

    Calling ``mix(images, labels, key)`` on numpy ``[B, C, H, W]`` / ``[B]`` returns
    ``(mixed_images, targets [B, K], lam)``. For CutMix ``lam`` is corrected to the
    exact pasted area.
    """

    def __init__(self, mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, smoothing=0.1,
                 num_classes=10, seed=0):
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError("mixup_alpha and cutmix_alpha must be >= 0")
        if mixup_alpha == 0 and cutmix_alpha == 0:
            raise ValueError("Mixup needs mixup_alpha > 0 or cutmix_alpha > 0")
        self.mixup_alpha, self.cutmix_alpha = float(mixup_alpha), float(cutmix_alpha)
        self.prob, self.switch_prob = float(prob), float(switch_prob)
        self.smoothing, self.num_classes, self.seed = float(smoothing), int(num_classes), int(seed)

    def _rng(self, key):
        return np.random.default_rng([self.seed, int(key)])

    def __call__(self, images, labels, key=0):
        images = np.asarray(images)
        if images.shape[0] % 2:
            raise ValueError(f"Mixup needs an even batch size, got {images.shape[0]}")
        target = one_hot(labels, self.num_classes, self.smoothing)
        rng = self._rng(key)
        if rng.random() >= self.prob:
            return images, target, 1.0
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha == 0 or rng.random() < self.switch_prob)
        lam = float(rng.beta(self.cutmix_alpha, self.cutmix_alpha) if use_cutmix
                    else rng.beta(self.mixup_alpha, self.mixup_alpha))
        flipped = images[::-1]
        if use_cutmix:
            h, w = images.shape[-2:]
            y0, y1, x0, x1 = rand_bbox(h, w, lam, rng)
            mixed = images.copy()
            mixed[..., y0:y1, x0:x1] = flipped[..., y0:y1, x0:x1]
            lam = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)
        else:
            mixed = (images * lam + flipped * (1.0 - lam)).astype(images.dtype)
        return mixed, (target * lam + target[::-1] * (1.0 - lam)).astype(np.float32), lam
