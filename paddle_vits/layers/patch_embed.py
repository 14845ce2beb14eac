"""Image to patch-token embedding."""
import paddle.nn as nn

from ..utils import to_2tuple


class PatchEmbed(nn.Layer):
    """Split an image into non-overlapping patches and project each to ``embed_dim``.

    Args:
        img_size: Expected input size (int or (H, W)).
        patch_size: Patch size (int or (H, W)); must divide ``img_size``.
        in_chans: Input channels.
        embed_dim: Token width.
        norm_layer: Optional normalisation class applied to the tokens.
        strict_img_size: Raise a clear error when the input size differs from ``img_size``.

    Shape:
        ``[B, C, H, W] -> [B, N, embed_dim]`` with ``N = (H / p) * (W / p)``.
    """

    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768, norm_layer=None,
                 strict_img_size=True):
        super().__init__()
        self.img_size = to_2tuple(img_size)
        self.patch_size = to_2tuple(patch_size)
        if self.img_size[0] % self.patch_size[0] or self.img_size[1] % self.patch_size[1]:
            raise ValueError(f"img_size {self.img_size} is not divisible by patch_size {self.patch_size}")
        self.grid_size = (self.img_size[0] // self.patch_size[0], self.img_size[1] // self.patch_size[1])
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.strict_img_size = strict_img_size
        self.proj = nn.Conv2D(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def forward(self, x):
        H, W = x.shape[-2:]
        if self.strict_img_size and (H, W) != self.img_size:
            raise ValueError(
                f"input image size ({H}x{W}) does not match the model ({self.img_size[0]}x{self.img_size[1]}): "
                f"resize the input, or build the model with img_size={H}"
            )
        x = self.proj(x)
        x = x.flatten(2).transpose([0, 2, 1])  # [B, C, H', W'] -> [B, N, C]
        return self.norm(x)
