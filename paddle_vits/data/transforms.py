"""Evaluation preprocessing in numpy/PIL.

The pipeline ends in a numpy ``float32`` ``[C, H, W]`` array, never a
``paddle.Tensor``: Paddle 3.3's ``DataLoader`` with worker processes and shared
memory segfaults or hangs intermittently when worker transforms return Paddle
tensors, while numpy outputs are reliable.
"""
import math
import os
import stat
import warnings

import numpy as np
from PIL import Image

from ..constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

__all__ = ["INTERPOLATIONS", "MAX_IMAGE_PIXELS", "MAX_RESIZED_PIXELS", "BadImageError", "EvalTransform",
           "open_image", "resolve_eval_config", "eval_resize_size"]

# Memory bounds of one image: decoding (PIL's own bomb limit, ~268 MB of RGB) and the aspect-keeping
# resize (a 3,000,000 x 1 PNG would otherwise ask for a 768,000,000 x 256 image).
MAX_IMAGE_PIXELS = 89_478_485
MAX_RESIZED_PIXELS = 1 << 25


class BadImageError(ValueError):
    """An image that cannot be decoded, or whose decoding or resizing would exceed the memory bounds."""


def open_image(path, error=BadImageError):
    """Decode ``path`` to an RGB PIL image, refusing decompression bombs before decoding.

    Args:
        path: Image file.
        error: Exception class raised (with the path and the reason) for a bad image.

    Raises:
        ``error``: unreadable, truncated, not an image, over :data:`MAX_IMAGE_PIXELS`
        (a decompression bomb), or out of memory while decoding.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO or device would block or never end
            raise BadImageError("not a regular file")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w <= 0 or h <= 0 or w * h > MAX_IMAGE_PIXELS:
                    raise BadImageError(f"{w}x{h} pixels, over the {MAX_IMAGE_PIXELS} decoded per image "
                                        "(a decompression bomb?)")
                return img.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise error(f"bad image {path!r}: decompression bomb ({e})") from None
    except BadImageError as e:
        raise error(f"bad image {path!r}: {e}") from None
    except MemoryError:
        raise error(f"bad image {path!r}: out of memory while decoding it") from None
    except (OSError, SyntaxError, ValueError, TypeError, EOFError) as e:
        raise error(f"cannot read image {path!r}: {e}") from None

INTERPOLATIONS = {
    "bicubic": Image.BICUBIC,
    "bilinear": Image.BILINEAR,
    "nearest": Image.NEAREST,
    "lanczos": Image.LANCZOS,
    "box": Image.BOX,
    "hamming": Image.HAMMING,
}


def eval_resize_size(img_size, crop_pct):
    """Shorter-side resize before the center crop: ``int(img_size / crop_pct)`` (timm/DeiT rule)."""
    return int(math.floor(img_size / crop_pct))


def resolve_eval_config(info=None, img_size=None, crop_pct=None, interpolation=None, mean=None, std=None):
    """Eval preprocessing: the registry entry's settings, overridden by the non-``None`` arguments.

    Args:
        info: A :class:`paddle_vits.registry.ModelInfo` (or ``None`` for the ImageNet defaults).
        img_size: Square crop size.
        crop_pct: Center-crop fraction in ``(0, 1]``.
        interpolation: One of :data:`INTERPOLATIONS`.
        mean, std: Three per-channel values on the 0-1 scale.

    Returns:
        dict with ``img_size``, ``resize``, ``crop_pct``, ``interpolation``, ``mean``, ``std``.

    Raises:
        ValueError: an out-of-range or unknown setting.
    """
    cfg = info.eval_config() if info is not None else dict(
        input_size=(3, 224, 224), crop_pct=0.875, interpolation="bicubic",
        mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD)
    size = int(img_size) if img_size is not None else int(cfg["input_size"][-1])
    crop_pct = float(crop_pct) if crop_pct is not None else float(cfg["crop_pct"])
    interpolation = interpolation or cfg["interpolation"]
    mean = tuple(float(m) for m in (mean if mean is not None else cfg["mean"]))
    std = tuple(float(s) for s in (std if std is not None else cfg["std"]))
    if size <= 0:
        raise ValueError(f"image size must be positive, got {size}")
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; choose one of {sorted(INTERPOLATIONS)}")
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 values (RGB), got mean={mean} std={std}")
    if any(s <= 0 for s in std):
        raise ValueError(f"std values must be positive, got {std}")
    return dict(img_size=size, resize=eval_resize_size(size, crop_pct), crop_pct=crop_pct,
                interpolation=interpolation, mean=mean, std=std)


def resize_center_crop(img, resize, out_hw, interpolation="bicubic"):
    """Resize the shorter side of a PIL image to ``resize`` (aspect ratio kept, as torchvision's
    ``Resize(int)``), then center-crop ``out_hw = (height, width)``.

    Raises:
        BadImageError: the resized image would exceed :data:`MAX_RESIZED_PIXELS`
            (an absurd aspect ratio), or the image is empty.
    """
    w, h = img.size
    if w <= 0 or h <= 0:
        raise BadImageError(f"image of {w}x{h} pixels")
    if w <= h:
        new_w, new_h = resize, int(resize * h / w)
    else:
        new_w, new_h = int(resize * w / h), resize
    if new_w * new_h > MAX_RESIZED_PIXELS:
        raise BadImageError(f"a {w}x{h} image (aspect ratio {max(w, h) / min(w, h):.0f}:1) would be resized to "
                            f"{new_w}x{new_h} pixels, over the {MAX_RESIZED_PIXELS} allowed")
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), INTERPOLATIONS[interpolation])
    out_h, out_w = out_hw
    left, top = int(round((new_w - out_w) / 2.0)), int(round((new_h - out_h) / 2.0))
    return img.crop((left, top, left + out_w, top + out_h))


class ToCHWArray:
    """PIL image / HWC uint8 -> normalised ``float32 [C, H, W]`` numpy array (never a ``paddle.Tensor``).

    Args:
        mean, std: Per-channel RGB normalisation on the 0-1 scale.
    """

    def __init__(self, mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD):
        self.mean = np.asarray(mean, np.float32).reshape(3, 1, 1)  # [3] -> [3, 1, 1], broadcast over CHW
        self.std = np.asarray(std, np.float32).reshape(3, 1, 1)  # [3] -> [3, 1, 1]

    def __call__(self, img):
        x = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0  # [H, W, 3] -> [3, H, W]
        return np.ascontiguousarray((x - self.mean) / self.std)


class EvalTransform:
    """Resize the shorter side, center-crop, scale to 0-1 and normalise.

    Args:
        img_size: Output (square) size.
        crop_pct: The shorter side is resized to ``int(img_size / crop_pct)`` first.
        interpolation: PIL resampling name (``"bicubic"``, ``"bilinear"``, ...).
        mean, std: Per-channel RGB normalisation on the 0-1 scale.

    Calling it on a PIL image returns a ``float32`` numpy array ``[3, img_size, img_size]``.
    """

    def __init__(self, img_size=224, crop_pct=0.875, interpolation="bicubic",
                 mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD):
        cfg = resolve_eval_config(None, img_size, crop_pct, interpolation, mean, std)
        self.img_size = cfg["img_size"]
        self.resize = cfg["resize"]
        self.crop_pct = cfg["crop_pct"]
        self.interpolation = cfg["interpolation"]
        self.to_array = ToCHWArray(cfg["mean"], cfg["std"])

    @classmethod
    def from_config(cls, cfg):
        """Build from a :func:`resolve_eval_config` dict."""
        return cls(cfg["img_size"], cfg["crop_pct"], cfg["interpolation"], cfg["mean"], cfg["std"])

    def __call__(self, img):
        img = resize_center_crop(img.convert("RGB"), self.resize, (self.img_size, self.img_size), self.interpolation)
        return self.to_array(img)

    def __repr__(self):
        return (f"EvalTransform(img_size={self.img_size}, resize={self.resize}, crop_pct={self.crop_pct}, "
                f"interpolation={self.interpolation!r}, mean={tuple(self.to_array.mean.ravel())}, "
                f"std={tuple(self.to_array.std.ravel())})")
