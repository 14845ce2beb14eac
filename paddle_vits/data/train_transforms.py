"""CIFAR training/validation preprocessing (the source notebooks' recipe).

Every pipeline ends in a numpy ``float32 [3, H, W]`` array, never a
``paddle.Tensor``: on Paddle 3.3 CPU, DataLoader workers returning tensors
through shared memory segfault or hang intermittently.
"""
from paddle.vision import transforms as T

from ..constants import IMAGENET_DEFAULT_MEAN as IMAGENET_MEAN
from ..constants import IMAGENET_DEFAULT_STD as IMAGENET_STD
from .transforms import ToCHWArray


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
