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
