"""Training/validation preprocessing: the source notebooks' CIFAR recipe and the ImageNet (DeiT) recipe.

Every pipeline ends in a numpy ``float32 [3, H, W]`` array, never a
``paddle.Tensor``: on Paddle 3.3 CPU, DataLoader workers returning tensors
through shared memory segfault or hang intermittently.
"""
import math
import random

import numpy as np
from paddle.vision import transforms as T
from PIL import Image, ImageEnhance, ImageOps

from ..constants import IMAGENET_DEFAULT_MEAN as IMAGENET_MEAN
from ..constants import IMAGENET_DEFAULT_STD as IMAGENET_STD
from .transforms import EvalTransform, ToCHWArray


def train_transform(img_size=224, scale=(0.6, 1.0), jitter=0.2, rotation=20, hflip=0.5,
                    mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """Notebook recipe: RandomResizedCrop(img_size, scale 0.6-1) from the 32px image,
    ColorJitter(brightness/contrast/saturation 0.2), horizontal flip, rotation +-20 degrees,
    ImageNet mean/std."""
    return T.Compose([
        T.RandomResizedCrop(img_size, scale=scale),
        T.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter),
        T.RandomHorizontalFlip(hflip),
        T.RandomRotation(rotation),
        ToCHWArray(mean, std),
    ])


def eval_transform(img_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """Resize to ``img_size`` (bilinear) and normalise."""
    return T.Compose([T.Resize((img_size, img_size)), ToCHWArray(mean, std)])


# RandAugment (Cubuk et al. 2020) in PIL. Paddle's vision.transforms has no RandAugment or AutoAugment
# (3.3), and timm's (PIL-only) would make timm a training dependency; this is the same op set and magnitude
# scale as timm's ``rand-mM-nN`` (magnitude 0-10, each op's level scaled to its range, random sign).
def _signed(v):
    return -v if random.random() < 0.5 else v


def _affine(img, matrix):
    return img.transform(img.size, Image.AFFINE, matrix, resample=Image.BILINEAR, fillcolor=(128, 128, 128))


_RAND_OPS = {
    "AutoContrast": lambda img, m: ImageOps.autocontrast(img),
    "Equalize": lambda img, m: ImageOps.equalize(img),
    "Invert": lambda img, m: ImageOps.invert(img),
    "Rotate": lambda img, m: img.rotate(_signed(30 * m), resample=Image.BILINEAR, fillcolor=(128, 128, 128)),
    "Posterize": lambda img, m: ImageOps.posterize(img, max(1, 8 - int(4 * m))),
    "Solarize": lambda img, m: ImageOps.solarize(img, 256 - int(256 * m)),
    "Color": lambda img, m: ImageEnhance.Color(img).enhance(1 + _signed(0.9 * m)),
    "Contrast": lambda img, m: ImageEnhance.Contrast(img).enhance(1 + _signed(0.9 * m)),
    "Brightness": lambda img, m: ImageEnhance.Brightness(img).enhance(1 + _signed(0.9 * m)),
    "Sharpness": lambda img, m: ImageEnhance.Sharpness(img).enhance(1 + _signed(0.9 * m)),
    "ShearX": lambda img, m: _affine(img, (1, _signed(0.3 * m), 0, 0, 1, 0)),
    "ShearY": lambda img, m: _affine(img, (1, 0, 0, _signed(0.3 * m), 1, 0)),
    "TranslateX": lambda img, m: _affine(img, (1, 0, _signed(0.45 * m) * img.size[0], 0, 1, 0)),
    "TranslateY": lambda img, m: _affine(img, (1, 0, 0, 0, 1, _signed(0.45 * m) * img.size[1])),
}


class RandAugment:
    """Apply ``num_ops`` ops drawn from :data:`_RAND_OPS`, each with probability 0.5, at ``magnitude`` (0-10)
    jittered by a normal of std ``magnitude_std`` (timm's ``rand-m9-mstd0.5``). Randomness from :mod:`random`.
    """

    def __init__(self, num_ops=2, magnitude=9.0, magnitude_std=0.5):
        self.num_ops, self.magnitude, self.magnitude_std = num_ops, magnitude, magnitude_std

    def __call__(self, img):
        for name in random.choices(sorted(_RAND_OPS), k=self.num_ops):
            if random.random() < 0.5:
                continue
            m = self.magnitude + (random.gauss(0, self.magnitude_std) if self.magnitude_std else 0.0)
            img = _RAND_OPS[name](img, min(max(m, 0.0), 10.0) / 10.0)
        return img


class RandomErasing:
    """Erase a random rectangle of a ``[C, H, W]`` array with per-pixel normal noise (timm's ``mode='pixel'``),
    with probability ``prob``; area 2-33 % of the image, aspect ratio 0.3-3.3. Randomness from ``np.random``."""

    def __init__(self, prob=0.25, scale=(0.02, 1 / 3), ratio=(0.3, 3.3)):
        self.prob, self.scale, self.log_ratio = prob, scale, (math.log(ratio[0]), math.log(ratio[1]))

    def __call__(self, x):
        if np.random.rand() >= self.prob:
            return x
        _, h, w = x.shape
        for _ in range(10):
            area = h * w * np.random.uniform(*self.scale)
            aspect = math.exp(np.random.uniform(*self.log_ratio))
            eh, ew = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if eh < h and ew < w:
                top, left = np.random.randint(0, h - eh + 1), np.random.randint(0, w - ew + 1)
                x = x.copy()
                x[:, top:top + eh, left:left + ew] = np.random.normal(size=(x.shape[0], eh, ew)).astype(x.dtype)
                return x
        return x


class _Then:
    """Apply ``first`` (PIL -> array) and then ``then`` (array -> array)."""

    def __init__(self, first, then):
        self.first, self.then = first, then

    def __call__(self, img):
        return self.then(self.first(img))


def imagenet_train_transform(img_size=224, scale=(0.08, 1.0), hflip=0.5, randaug_n=2, randaug_m=9.0, reprob=0.25,
                             mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """DeiT-style ImageNet training: RandomResizedCrop(scale 0.08-1, bicubic), horizontal flip, RandAugment
    (``randaug_n`` ops at magnitude ``randaug_m``; 0 ops: off), normalisation, random erasing (``reprob``)."""
    ops = [T.RandomResizedCrop(img_size, scale=scale, interpolation="bicubic"), T.RandomHorizontalFlip(hflip)]
    if randaug_n:
        ops.append(RandAugment(randaug_n, randaug_m))
    ops.append(ToCHWArray(mean, std))
    pipeline = T.Compose(ops)
    return _Then(pipeline, RandomErasing(reprob)) if reprob > 0 else pipeline


def imagenet_eval_transform(img_size=224, crop_pct=0.875, interpolation="bicubic", mean=IMAGENET_MEAN,
                            std=IMAGENET_STD):
    """Resize the shorter side to ``img_size / crop_pct``, center-crop, normalise."""
    return EvalTransform(img_size, crop_pct, interpolation, mean, std)
