"""CaiT: Class-Attention in Image Transformers.

Paper: "Going deeper with Image Transformers", Hugo Touvron, Matthieu Cord,
Alexandre Sablayrolles, Gabriel Synnaeve, Hervé Jégou, ICCV 2021,
https://arxiv.org/abs/2103.17239. Official code and weights:
https://github.com/facebookresearch/deit (``cait_models.py``); timm ports it
as ``timm/models/cait.py`` with the same parameter names.

Two ideas let the ViT go deeper:

* LayerScale: each residual branch is multiplied by a learnt per-channel
  vector (``gamma_1``, ``gamma_2``) initialised to a small ``init_values``
  (1e-5 up to depth 24, 1e-6 beyond), so that deep stacks train stably;
* class attention: the self-attention stage (talking-heads attention) works on
  patch tokens only; the class token is added afterwards and refined by
  ``depth_token_only`` class-attention blocks, in which only the class token
  is a query, so the patch tokens are left unchanged.

Position embeddings cover the patch tokens only (no class-token slot).
Stochastic depth uses the same rate in every self-attention block and none in
the class-attention blocks, as the official code.

This file holds CaiT's whole story: its attention layers (``TalkingHeadAttention``,
``ClassAttention``; both compute through the shared kernel contract of
:mod:`paddle_vits.layers.attention`), the LayerScale blocks, :class:`CaiT` (the model
contract, ``docs/model_contract.md``), :func:`checkpoint_filter_fn` (official/timm names
-> ours, called through ``CaiT.checkpoint_filter``) and the registered variants.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..hub import Weights, hf_source, http_source, register_weights
from ..layers import DropPath, Mlp, PatchEmbed, attend, head_dim, init_weights_vit, trunc_normal_
from ..registry import register_model
from ..utils import to_2tuple
from .contract import check_input, check_output_fmt, create_classifier, feature_take_indices, to_output_fmt

__all__ = ["CaiT", "ClassAttention", "TalkingHeadAttention", "checkpoint_filter_fn"]


def _layer_norm(dim):
    return nn.LayerNorm(dim, epsilon=1e-6)


def _layer_scale(layer, dim, init_values):
    return layer.create_parameter([dim], default_initializer=nn.initializer.Constant(init_values))


def mix_heads(attn, weight, bias):
    """``nn.Linear(H, H)`` (``weight`` ``[H, H]``, ``bias`` ``[H]``) applied across the heads of ``[B, H, N, M]`` maps.

    The same sums as the linear layer over a heads-last ``[B, N, M, H]`` view,
    written as one ``weight^T @ [B, H, N*M]`` product so that neither side needs
    a transposed copy of the maps (``docs/performance.md``, "Op work").
    """
    b, h, n, m = attn.shape
    mixed = paddle.matmul(weight, attn.reshape([b, h, n * m]), transpose_x=True)  # [B, H, N, M] -> [B, H, N*M]
    return (mixed + bias.unsqueeze(-1)).reshape([b, h, n, m])  # [B, H, N*M] -> [B, H, N, M]


class TalkingHeadAttention(nn.Layer):
    """Talking-heads self-attention (Shazeer et al., 2020), CaiT's self-attention stage.

    Attention logits are mixed across heads by ``proj_l`` before the softmax
    and the probabilities by ``proj_w`` after it (their weights, through
    :func:`mix_heads`). No kernel expresses that, so
    the maths is written out here; it keeps the kernel's contract
    (:mod:`paddle_vits.layers.attention`): the final probabilities pass
    through ``attn_drop`` (the explanation hook). There is no fused path, hence
    no ``fused_attn`` flag.

    Args:
        dim: Token width.
        num_heads: Number of heads.
        qkv_bias: Bias in the fused ``qkv`` projection.
        qk_scale: Override of the ``head_dim ** -0.5`` scale.
        attn_drop: Dropout on attention probabilities.
        proj_drop: Dropout after the output projection.

    Shape:
        ``[B, N, C] -> [B, N, C]``.
    """

    def __init__(self, dim, num_heads=8, qkv_bias=False, qk_scale=None, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim(dim, num_heads)
        self.scale = qk_scale or self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias_attr=None if qkv_bias else False)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_l = nn.Linear(num_heads, num_heads)
        self.proj_w = nn.Linear(num_heads, num_heads)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape([B, N, 3, self.num_heads, self.head_dim])  # [B, N, 3C] -> [B, N, 3, H, D]
        q, k, v = qkv.transpose([2, 0, 3, 1, 4]).unbind(0)  # [B, N, 3, H, D] -> 3 x [B, H, N, D]
        attn = (q * self.scale) @ k.transpose([0, 1, 3, 2])  # [B, H, N, N]
        attn = mix_heads(attn, self.proj_l.weight, self.proj_l.bias)
        attn = F.softmax(attn, axis=-1)
        attn = mix_heads(attn, self.proj_w.weight, self.proj_w.bias)
        attn = self.attn_drop(attn)
        x = (attn @ v).transpose([0, 2, 1, 3]).reshape([B, N, C])  # [B, H, N, D] -> [B, N, H, D] -> [B, N, C]
        return self.proj_drop(self.proj(x))


class ClassAttention(nn.Layer):
    """Class attention: the class token (first token) is the only query, over all tokens.

    Official ``q``/``k``/``v``/``proj`` names. The cost is linear in the number
    of tokens. Returns only the updated class token.

    Args:
        dim: Token width.
        num_heads: Number of heads.
        qkv_bias: Bias in the q, k, v projections.
        qk_scale: Override of the ``head_dim ** -0.5`` scale.
        attn_drop: Dropout on attention probabilities.
        proj_drop: Dropout after the output projection.

    Shape:
        ``[B, N, C] -> [B, 1, C]``.
    """

    def __init__(self, dim, num_heads=8, qkv_bias=False, qk_scale=None, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim(dim, num_heads)
        self.scale = qk_scale or self.head_dim ** -0.5
        self.fused_attn = True
        self.q = nn.Linear(dim, dim, bias_attr=None if qkv_bias else False)
        self.k = nn.Linear(dim, dim, bias_attr=None if qkv_bias else False)
        self.v = nn.Linear(dim, dim, bias_attr=None if qkv_bias else False)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x):
        B, N, C = x.shape
        q = self.q(x[:, :1]).reshape([B, 1, self.num_heads, self.head_dim])  # [B, 1, C] -> [B, 1, H, D]
        k = self.k(x).reshape([B, N, self.num_heads, self.head_dim])  # [B, N, C] -> [B, N, H, D]
        v = self.v(x).reshape([B, N, self.num_heads, self.head_dim])  # [B, N, C] -> [B, N, H, D]
        x_cls = attend(q, k, v, self.scale, self.attn_drop, self.fused_attn)  # [B, 1, H, D]
        x_cls = x_cls.reshape([B, 1, C])  # [B, 1, H, D] -> [B, 1, C]
        return self.proj_drop(self.proj(x_cls))


class _LayerScaleBlock(nn.Layer):
    """Self-attention block with LayerScale: ``x + gamma_1 * attn(norm1(x))``, then the MLP alike.

    Shape:
        ``[B, N, C] -> [B, N, C]``.
    """

    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=True, drop=0.0, attn_drop=0.0, drop_path=0.0,
                 init_values=1e-5):
        super().__init__()
        self.norm1 = _layer_norm(dim)
        self.attn = TalkingHeadAttention(dim, num_heads=num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop,
                                         proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = _layer_norm(dim)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio), drop=drop)
        self.gamma_1 = _layer_scale(self, dim, init_values)
        self.gamma_2 = _layer_scale(self, dim, init_values)

    def forward(self, x):
        x = x + self.drop_path(self.gamma_1 * self.attn(self.norm1(x)))
        return x + self.drop_path(self.gamma_2 * self.mlp(self.norm2(x)))


class _LayerScaleClassAttentionBlock(nn.Layer):
    """Class-attention block with LayerScale: updates the class token only.

    The class token attends to ``[class token, patch tokens]``; the MLP then
    acts on the class token alone. No dropout or stochastic depth, as in the
    official code.

    Shape:
        ``x [B, N, C], cls [B, 1, C] -> cls [B, 1, C]``.
    """

    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=True, init_values=1e-5):
        super().__init__()
        self.norm1 = _layer_norm(dim)
        self.attn = ClassAttention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.norm2 = _layer_norm(dim)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio))
        self.gamma_1 = _layer_scale(self, dim, init_values)
        self.gamma_2 = _layer_scale(self, dim, init_values)

    def forward(self, x, cls):
        u = paddle.concat([cls, x], axis=1)  # [B, 1 + N, C]
        cls = cls + self.gamma_1 * self.attn(self.norm1(u))
        return cls + self.gamma_2 * self.mlp(self.norm2(cls))


class CaiT(nn.Layer):
    """CaiT (Touvron et al., ICCV 2021).

    Args:
        img_size: Input size (square); must be divisible by ``patch_size``. The
            position embedding is sized for it, so inputs of another size
            raise a ``ValueError``.
        patch_size: Patch size.
        in_chans: Input channels.
        num_classes: Classes; ``0`` removes the head (the model then returns the
            normalised class token, ``[B, embed_dim]``).
        embed_dim: Token width.
        depth: Number of self-attention (talking-heads, LayerScale) blocks.
        num_heads: Heads, in both stages.
        mlp_ratio: MLP hidden width / ``embed_dim`` in the self-attention stage.
        qkv_bias: Bias in the q, k, v projections.
        drop_rate: Dropout after the position embedding, projections and MLPs
            of the self-attention stage.
        attn_drop_rate: Dropout on the self-attention stage's attention
            (after the talking-heads mixing).
        drop_path_rate: Stochastic-depth rate of every self-attention block
            (constant over depth, as the official code).
        init_values: Initial value of the LayerScale vectors ``gamma_1``/``gamma_2``.
        depth_token_only: Number of class-attention blocks.
        mlp_ratio_clstk: MLP ratio of the class-attention blocks.

    Attributes:
        num_features: ``embed_dim``, the width of the pre-logits features.
    """

    def __init__(self, img_size=224, patch_size=16, in_chans=3, num_classes=1000, embed_dim=768, depth=12,
                 num_heads=12, mlp_ratio=4.0, qkv_bias=True, drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0,
                 init_values=1e-5, depth_token_only=2, mlp_ratio_clstk=4.0):
        super().__init__()
        if int(img_size) % int(patch_size):
            raise ValueError(f"img_size={img_size} is not divisible by patch_size={patch_size}; use a multiple "
                             f"of {patch_size}, e.g. {max(1, round(int(img_size) / int(patch_size))) * patch_size}")
        self.num_classes = num_classes
        self.num_features = self.embed_dim = embed_dim
        self.in_chans = in_chans
        self.img_size = to_2tuple(int(img_size))
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        num_patches = self.patch_embed.num_patches
        self.cls_token = self.create_parameter([1, 1, embed_dim], default_initializer=nn.initializer.Constant(0.0))
        self.pos_embed = self.create_parameter([1, num_patches, embed_dim],
                                               default_initializer=nn.initializer.Constant(0.0))
        self.pos_drop = nn.Dropout(drop_rate)
        self.blocks = nn.LayerList([
            _LayerScaleBlock(embed_dim, num_heads, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, drop_path_rate,
                             init_values)
            for _ in range(depth)
        ])
        self.blocks_token_only = nn.LayerList([
            _LayerScaleClassAttentionBlock(embed_dim, num_heads, mlp_ratio_clstk, qkv_bias, init_values)
            for _ in range(depth_token_only)
        ])
        self.norm = _layer_norm(embed_dim)
        self.head = create_classifier(embed_dim, num_classes, init=False)
        self.feature_info = [dict(num_chs=embed_dim, reduction=self.patch_embed.patch_size[0], module=f"blocks.{i}",
                                  index=i) for i in range(len(self.blocks))]

        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        self.apply(init_weights_vit)

    def no_weight_decay(self):
        return {"pos_embed", "cls_token"}

    def get_classifier(self):
        return self.head

    def reset_classifier(self, num_classes):
        """Replace the head by a freshly initialised one with ``num_classes`` outputs (``0``: none)."""
        self.head = create_classifier(self.num_features, num_classes)
        self.num_classes = num_classes

    def checkpoint_filter(self, state_dict):
        """Official/timm state dict -> this model's names (:func:`checkpoint_filter_fn`)."""
        return checkpoint_filter_fn(state_dict, self)

    def _size_problem(self, H, W):
        if (H, W) == self.img_size:
            return None
        h, w = self.img_size
        return (f"{H}x{W} images do not fit the position embedding, which is sized for {h}x{w}: resize the "
                f"input to {h}x{w}, or build the model with img_size={H}")

    def forward_patch_tokens(self, x):
        """Patch tokens after the self-attention stage (before the class token joins).

        Args:
            x: Images ``[B, C, img_size, img_size]``.

        Returns:
            ``[B, N, embed_dim]``, not normalised.
        """
        check_input(self, x, self._size_problem)
        x = self.patch_embed(x)  # [B, C, H, W] -> [B, N, D]
        x = self.pos_drop(x + self.pos_embed)
        for block in self.blocks:
            x = block(x)
        return x

    def forward_features(self, x):
        """Normalised tokens, class token first.

        Args:
            x: Images ``[B, C, img_size, img_size]``.

        Returns:
            ``[B, 1 + N, embed_dim]``.
        """
        x = self.forward_patch_tokens(x)
        cls = self.cls_token.expand([x.shape[0], -1, -1])  # [1, 1, D] -> [B, 1, D]
        for block in self.blocks_token_only:
            cls = block(x, cls)
        return self.norm(paddle.concat([cls, x], axis=1))  # [B, 1 + N, D]

    def forward_intermediates(self, x, indices=None, norm=False, output_fmt="NCHW", intermediates_only=False):
        """Patch tokens after chosen self-attention blocks, as maps (stride = patch size, 16).

        Args:
            x: Images ``[B, C, img_size, img_size]``.
            indices: Blocks to return: None (all), an int n (the last n) or indices.
            norm: Pass each output through the final ``norm`` (timm's ViT/CaiT rule).
            output_fmt: ``"NCHW"`` maps ``[B, D, H/16, W/16]`` or ``"NLC"`` tokens ``[B, N, D]``.
            intermediates_only: Return only the list (and stop after the last block asked for).

        Returns:
            list of tensors, or ``(forward_features(x), list)``.
        """
        check_output_fmt(output_fmt)
        take, last = feature_take_indices(len(self.feature_info), indices)
        check_input(self, x, self._size_problem)
        x = self.patch_embed(x)  # [B, C, H, W] -> [B, N, D]
        x = self.pos_drop(x + self.pos_embed)
        outs = []
        for i, block in enumerate(self.blocks):
            if intermediates_only and i > last:
                break
            x = block(x)
            if i in take:
                outs.append(to_output_fmt(self.norm(x) if norm else x, self.patch_embed.grid_size, output_fmt))
        if intermediates_only:
            return outs
        cls = self.cls_token.expand([x.shape[0], -1, -1])  # [1, 1, D] -> [B, 1, D]
        for block in self.blocks_token_only:
            cls = block(x, cls)
        return self.norm(paddle.concat([cls, x], axis=1)), outs  # [B, 1 + N, D]

    def prune_intermediate_layers(self, indices=None, prune_norm=False, prune_head=True):
        """Drop the class-token stage and the blocks after ``indices``; returns ``(kept indices, dropped names)``."""
        take, last = feature_take_indices(len(self.feature_info), indices)
        dropped = [f"blocks.{i}" for i in range(last + 1, len(self.blocks))] + ["blocks_token_only", "cls_token"]
        self.blocks = nn.LayerList(list(self.blocks)[: last + 1])
        self.blocks_token_only = nn.LayerList()
        del self.cls_token
        if prune_norm:
            self.norm = nn.Identity()
            dropped.append("norm")
        if prune_head:
            self.reset_classifier(0)
            dropped.append("head")
        return take, dropped

    def forward_head(self, x, pre_logits=False):
        """Logits from the class token, or the class token itself with ``pre_logits``.

        Returns:
            ``[B, num_classes]``, or ``[B, num_features]`` when ``pre_logits`` or ``num_classes == 0``.
        """
        x = x[:, 0]  # [B, 1 + N, D] -> [B, D]
        return x if pre_logits else self.head(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def checkpoint_filter_fn(state_dict, model):
    """Official (facebookresearch/deit) or timm CaiT state dict -> this model's names.

    Both use our parameter names. The official release files are
    ``{"model": {"module.<name>": ...}}`` (saved from DistributedDataParallel);
    the wrapper is removed by the reader and the ``module.`` prefix here.
    """
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state_dict.items()}


# Variants. Architectures from the official release (patch 16, MLP ratio 4, qkv bias,
# 2 class-attention blocks); init_values 1e-5 up to depth 24, 1e-6 beyond, as released.
# Evaluation as the official README: resize to the input size (crop_pct 1.0), bicubic,
# ImageNet mean/std. top1: the released (distilled) models, paper Table / deit README.
# num_params: timm's (= official) models, 1000 classes, counted exactly.

_PAPER = "CaiT (Touvron et al., ICCV 2021), arXiv:2103.17239"


def _reg(size, top1, num_params, alias):
    return register_model(input_size=(3, size, size), crop_pct=1.0, interpolation="bicubic", top1=top1,
                          num_params=num_params, aliases=(alias,), paper=_PAPER, test_kwargs=dict(img_size=64))


def _create(cfg, **kwargs):
    args = dict(patch_size=16, mlp_ratio=4.0, qkv_bias=True, depth_token_only=2, mlp_ratio_clstk=4.0)
    args.update(cfg)
    args.update(kwargs)
    return CaiT(**args)


def _cfg(embed_dim, depth, num_heads, init_values, img_size):
    return dict(embed_dim=embed_dim, depth=depth, num_heads=num_heads, init_values=init_values, img_size=img_size)


@_reg(224, 78.4, 11_956_264, "cait_xxs24_224")
def cait_xxs_24(**kwargs):
    return _create(_cfg(192, 24, 4, 1e-5, 224), **kwargs)


@_reg(224, 79.7, 17_299_720, "cait_xxs36_224")
def cait_xxs_36(**kwargs):
    return _create(_cfg(192, 36, 4, 1e-5, 224), **kwargs)


@_reg(224, 83.5, 46_916_200, "cait_s24_224")
def cait_s_24(**kwargs):
    return _create(_cfg(384, 24, 8, 1e-5, 224), **kwargs)


@_reg(384, 80.4, 12_029_224, "cait_xxs24_384")
def cait_xxs_24_384(**kwargs):
    return _create(_cfg(192, 24, 4, 1e-5, 384), **kwargs)


@_reg(384, 81.8, 17_372_680, "cait_xxs36_384")
def cait_xxs_36_384(**kwargs):
    return _create(_cfg(192, 36, 4, 1e-5, 384), **kwargs)


@_reg(384, 84.1, 26_670_088, "cait_xs24_384")
def cait_xs_24_384(**kwargs):
    return _create(_cfg(288, 24, 6, 1e-5, 384), **kwargs)


@_reg(384, 85.1, 47_062_120, "cait_s24_384")
def cait_s_24_384(**kwargs):
    return _create(_cfg(384, 24, 8, 1e-5, 384), **kwargs)


@_reg(384, 85.4, 68_366_632, "cait_s36_384")
def cait_s_36_384(**kwargs):
    return _create(_cfg(384, 36, 8, 1e-6, 384), **kwargs)


@_reg(384, 86.1, 271_221_352, "cait_m36_384")
def cait_m_36_384(**kwargs):
    return _create(_cfg(768, 36, 16, 1e-6, 384), **kwargs)


@_reg(448, 86.5, 356_460_520, "cait_m48_448")
def cait_m_48_448(**kwargs):
    return _create(_cfg(768, 48, 16, 1e-6, 448), **kwargs)


# Released weights: facebookresearch/deit (README_cait.md, cait_models.py), all ImageNet-1k
# with distillation (RegNetY-16GF teacher) at the model's resolution; timm's hub copies
# (`timm/cait_*.fb_dist_in1k`, safetensors) as the second source. Sizes and sha256 are not
# published (None: the strict conversion is the check).

def _fb_dist(file, timm_name):
    size = int(file.rsplit("_", 1)[1])
    return (Weights("fb_dist_in1k", (http_source(f"https://dl.fbaipublicfiles.com/deit/{file}.pth"),
                                     hf_source(f"timm/{timm_name}.fb_dist_in1k")),
                    trained_on=f"ImageNet-1k, distilled, {size} px"),)


register_weights({
    "cait_xxs_24": _fb_dist("XXS24_224", "cait_xxs24_224"),
    "cait_xxs_36": _fb_dist("XXS36_224", "cait_xxs36_224"),
    "cait_s_24": _fb_dist("S24_224", "cait_s24_224"),
    "cait_xxs_24_384": _fb_dist("XXS24_384", "cait_xxs24_384"),
    "cait_xxs_36_384": _fb_dist("XXS36_384", "cait_xxs36_384"),
    "cait_xs_24_384": _fb_dist("XS24_384", "cait_xs24_384"),
    "cait_s_24_384": _fb_dist("S24_384", "cait_s24_384"),
    "cait_s_36_384": _fb_dist("S36_384", "cait_s36_384"),
    "cait_m_36_384": _fb_dist("M36_384", "cait_m36_384"),
    "cait_m_48_448": _fb_dist("M48_448", "cait_m48_448"),
})
