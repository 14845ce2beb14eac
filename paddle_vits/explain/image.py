"""Images in the form the explainers work on: the model's eval crop, as uint8 RGB.

Explanations are computed and drawn on the exact pixels the model sees, so an
image is resized and center-cropped with the model's registered eval settings
(``input_size``, ``crop_pct``, ``interpolation``) by the same rule as
:class:`paddle_vits.data.transforms.EvalTransform`, kept as ``uint8``
``[H, W, 3]``, and normalised only when it is turned into a batch.
"""
import os

import numpy as np
import paddle
from PIL import Image

from ..data.transforms import INTERPOLATIONS, eval_resize_size, open_image, resize_center_crop


def eval_crop(image, img_size=224, crop_pct=0.875, interpolation="bicubic"):
    """Resize the shorter side to ``floor(img_size / crop_pct)`` and center-crop ``img_size``.

    Args:
        image: A path, a ``PIL.Image`` or a ``uint8`` array ``[H, W, 3]`` (or ``[H, W]``).
        img_size: Output side (an int) or ``(height, width)``.
        crop_pct: Fraction of the resized image kept by the crop.
        interpolation: A PIL resampling name (``"bicubic"``, ``"bilinear"``, ...).

    Returns:
        np.ndarray: ``uint8`` RGB image ``[img_size, img_size, 3]``.

    Raises:
        BadImageError: an unreadable image, a decompression bomb or an absurd
            aspect ratio (see :mod:`paddle_vits.data.transforms`).
    """
    if isinstance(image, (str, os.PathLike)):
        if not os.path.isfile(image):
            raise FileNotFoundError(f"image file {os.fspath(image)!r} does not exist")
        image = open_image(os.fspath(image))
    elif isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"array images must be uint8 [H, W, 3] in 0..255, got dtype {image.dtype}")
        image = Image.fromarray(image)
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; use one of {sorted(INTERPOLATIONS)}")
    image = image.convert("RGB")
    out_hw = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    image = resize_center_crop(image, eval_resize_size(min(out_hw), crop_pct), out_hw, interpolation)
    return np.asarray(image, dtype=np.uint8)


def load_image(image, model, img_size=None):
    """The model's eval crop of ``image`` (uint8 ``[H, W, 3]``), using its registry settings.

    Models built with :func:`paddle_vits.create_model` carry ``model.model_info``;
    its ``input_size``, ``crop_pct`` and ``interpolation`` are used.

    Args:
        image: A path, a ``PIL.Image`` or a uint8 array.
        model: The model to explain.
        img_size: Override of the crop size (for a model built with another ``img_size``).
    """
    info = _info(model)
    size = info.input_size[1:] if img_size is None else img_size
    return eval_crop(image, size, info.crop_pct, info.interpolation)


def to_batch(images, mean, std):
    """uint8 (or 0..255 float) images ``[N, H, W, 3]`` -> normalised float32 tensor ``[N, 3, H, W]``."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected RGB images [N, H, W, 3], got shape {images.shape}")
    mean = np.asarray(mean, dtype=np.float32) * 255.0
    std = np.asarray(std, dtype=np.float32) * 255.0
    images = (images - mean) / std
    return paddle.to_tensor(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))  # [N, H, W, 3] -> [N, 3, H, W]


def _check_image(image):
    """``image`` as a uint8 ``[H, W, 3]`` array, or a ``ValueError`` saying how to get one."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"image must be uint8 [H, W, 3] (got {image.dtype} {image.shape}); "
            "use paddle_vits.explain.load_image(path, model)"
        )
    return image


def _info(model):
    info = getattr(model, "model_info", None)
    if info is None:
        raise ValueError(
            "the model has no `model_info`: build it with paddle_vits.create_model(name, ...), "
            "or pass mean/std (and an already cropped image) explicitly"
        )
    return info
