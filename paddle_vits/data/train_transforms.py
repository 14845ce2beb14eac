"""CIFAR training/validation preprocessing (the source notebooks' recipe).

Every pipeline ends in a numpy ``float32 [3, H, W]`` array, never a
``paddle.Tensor``: on Paddle 3.3 CPU, DataLoader workers returning tensors
through shared memory segfault or hang intermittently.
"""
import numpy as np
from paddle.vision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ToCHWArray:
    """PIL image / HWC uint8 -> normalised ``float32 [C, H, W]`` numpy array."""

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.mean = np.asarray(mean, np.float32).reshape(3, 1, 1)  # [3] -> [3, 1, 1], broadcast over CHW
        self.std = np.asarray(std, np.float32).reshape(3, 1, 1)  # [3] -> [3, 1, 1]

    def __call__(self, img):
        x = np.asarray(img, dtype=np.float32) / 255.0
        x = x.transpose(2, 0, 1)  # [H, W, C] -> [C, H, W]
        return np.ascontiguousarray((x - self.mean) / self.std)


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
