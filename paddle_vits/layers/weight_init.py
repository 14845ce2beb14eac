"""Parameter initialisers with timm's semantics, applied in place."""
import paddle.nn as nn

from ..utils import compat


def trunc_normal_(param, std=0.02, mean=0.0, a=-2.0, b=2.0):
    """Truncated normal in place; ``a``/``b`` are absolute bounds, as in timm."""
    return compat.trunc_normal_(param, mean=mean, std=std, a=a, b=b)


def zeros_(param):
    nn.initializer.Constant(0.0)(param)
    return param


def ones_(param):
    nn.initializer.Constant(1.0)(param)
    return param


def init_weights_vit(layer, std=0.02):
    """ViT init for ``model.apply``: Linear ~ TN(0, std) with zero bias; LayerNorm 1/0."""
    if isinstance(layer, nn.Linear):
        trunc_normal_(layer.weight, std=std)
        if layer.bias is not None:
            zeros_(layer.bias)
    elif isinstance(layer, nn.LayerNorm):
        if layer.weight is not None:
            ones_(layer.weight)
        if layer.bias is not None:
            zeros_(layer.bias)
