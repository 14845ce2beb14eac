"""Layers shared by more than one family (or by the library's public API)."""
from .attention import Attention, attend, head_dim
from .drop import DropPath, drop_path
from .mlp import Mlp
from .patch_embed import PatchEmbed
from .wavelets import DWT2D, IDWT2D, interleave_permutation
from .weight_init import init_weights_vit, ones_, trunc_normal_, zeros_

__all__ = [
    "Attention",
    "DWT2D",
    "DropPath",
    "IDWT2D",
    "Mlp",
    "PatchEmbed",
    "attend",
    "drop_path",
    "head_dim",
    "init_weights_vit",
    "interleave_permutation",
    "ones_",
    "trunc_normal_",
    "zeros_",
]

# Family-specific attention moved into its family file. These names still resolve (lazily, so
# layers/ does not import models/) until their last users (notebooks) import them from there.
_MOVED = {"ClassAttention": "cait", "TalkingHeadAttention": "cait", "CrossAttention": "crossvit"}


def __getattr__(name):
    if name in _MOVED:
        import importlib
        import warnings

        module = f"paddle_vits.models.{_MOVED[name]}"
        warnings.warn(f"paddle_vits.layers.{name} moved to {module}.{name}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
