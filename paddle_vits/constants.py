"""Normalisation constants (RGB, 0-1 scale) shared by the registry, the data pipelines and the tools."""

IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)

__all__ = ["IMAGENET_DEFAULT_MEAN", "IMAGENET_DEFAULT_STD"]
