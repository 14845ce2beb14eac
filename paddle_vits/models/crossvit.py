"""CrossViT: two-branch multi-scale Vision Transformer with cross-attention fusion.

Paper: "CrossViT: Cross-Attention Multi-Scale Vision Transformer for Image
Classification", Chun-Fu (Richard) Chen, Quanfu Fan, Rameswar Panda, ICCV 2021,
https://arxiv.org/abs/2103.14899. Official code: https://github.com/IBM/CrossViT
(``models/crossvit.py``); timm ports it as ``timm/models/crossvit.py``.

Two ViT branches see the same image at two scales: a small-patch branch
(patch 12 on a 240 input, or 408 for the ``_408`` models) and a large-patch
branch (patch 16 on a 224 / 384 input). The model resizes its input to each
branch's size (bicubic, ``align_corners=False``, as the official code), so any
input size works; the released weights are evaluated at 240 (resp. 408).
After each branch's transformer blocks, a fusion step lets each branch's class
token, projected to the other branch's width, attend to the other branch's
patch tokens (one query: linear cost), and projects it back. The logits are the
mean of the two branches' heads.

The ``dagger`` variants replace the single-convolution patch embedding by three
convolutions (``multi_conv``).

Parameter names follow the official IBM release (``pos_embed.0``,
``cls_token.0``, ...); :func:`checkpoint_filter_fn` also accepts timm's
``pos_embed_0``/``cls_token_0`` names.

This file holds CrossViT's whole story: its ``CrossAttention`` (through the shared
kernel :func:`paddle_vits.layers.attend`; the branches' self-attention is the shared
ViT :class:`~paddle_vits.layers.Attention`), the blocks and the dagger patch embedding,
:class:`CrossViT` (the model contract, ``docs/model_contract.md``),
:func:`checkpoint_filter_fn` (called through ``CrossViT.checkpoint_filter``) and the
registered variants.
"""
import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..hub import Weights, hf_source, http_source, register_weights
from ..layers import Attention, DropPath, Mlp, PatchEmbed, attend, head_dim, init_weights_vit, trunc_normal_
from ..registry import register_model
from ..utils import to_2tuple
from .contract import check_input, check_output_fmt, create_classifier, feature_take_indices, to_output_fmt

__all__ = ["CrossAttention", "CrossViT", "checkpoint_filter_fn"]


def _layer_norm(dim):
    return nn.LayerNorm(dim, epsilon=1e-6)


class _Block(nn.Layer):
    """Pre-norm ViT block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=True, qk_scale=None, drop=0.0, attn_drop=0.0,
                 drop_path=0.0):
        super().__init__()
        self.norm1 = _layer_norm(dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale,
                              attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = _layer_norm(dim)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio), drop=drop)

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class CrossAttention(nn.Layer):
    """Cross-attention: one branch's class token queries the other branch's tokens.

    The input is the other branch's tokens with this branch's (projected)
    class token in front; only that class token is a query, so the cost is
    linear in the number of tokens. Official ``wq``/``wk``/``wv``/``proj`` names.

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
        self.wq = nn.Linear(dim, dim, bias_attr=None if qkv_bias else False)
        self.wk = nn.Linear(dim, dim, bias_attr=None if qkv_bias else False)
        self.wv = nn.Linear(dim, dim, bias_attr=None if qkv_bias else False)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x):
        B, N, C = x.shape
        q = self.wq(x[:, :1]).reshape([B, 1, self.num_heads, self.head_dim])  # [B, 1, C] -> [B, 1, H, D]
        k = self.wk(x).reshape([B, N, self.num_heads, self.head_dim])  # [B, N, C] -> [B, N, H, D]
        v = self.wv(x).reshape([B, N, self.num_heads, self.head_dim])  # [B, N, C] -> [B, N, H, D]
        x_cls = attend(q, k, v, self.scale, self.attn_drop, self.fused_attn)  # [B, 1, H, D]
        x_cls = x_cls.reshape([B, 1, C])  # [B, 1, H, D] -> [B, 1, C]
        return self.proj_drop(self.proj(x_cls))


class _CrossAttentionBlock(nn.Layer):
    """Fusion of one branch: its (projected) class token attends to the other branch's tokens.

    The input is ``[cls, patch tokens of the other branch]``; only ``cls`` is a
    query, and only the updated class token is returned (there is no MLP, as in
    every released configuration).

    Shape:
        ``[B, 1 + N, C] -> [B, 1, C]``.
    """

    def __init__(self, dim, num_heads, qkv_bias=True, qk_scale=None, drop=0.0, attn_drop=0.0, drop_path=0.0):
        super().__init__()
        self.norm1 = _layer_norm(dim)
        self.attn = CrossAttention(dim, num_heads=num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale,
                                   attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x):
        return x[:, :1] + self.drop_path(self.attn(self.norm1(x)))


def _projection(in_dim, out_dim):
    """LayerNorm -> GELU -> Linear (the official ``projs``/``revert_projs`` entries)."""
    return nn.Sequential(_layer_norm(in_dim), nn.GELU(), nn.Linear(in_dim, out_dim))


class _MultiScaleBlock(nn.Layer):
    """One CrossViT stage: per-branch transformer blocks, then cross-attention fusion.

    For branch ``i`` and the next branch ``j = (i + 1) % num_branches``:
    ``projs[i]`` maps ``i``'s class token to ``j``'s width, ``fusion[i]`` lets it
    attend to ``j``'s patch tokens, ``revert_projs[i]`` maps it back, and it
    replaces ``i``'s class token; ``i``'s patch tokens pass through unchanged.

    Args:
        dims: Token width per branch.
        depths: Number of transformer blocks per branch.
        num_heads: Heads per branch (fusion into branch ``j`` uses ``num_heads[j]``).
        mlp_ratios: MLP ratio per branch.
        drop_path: Stochastic-depth rates, one per block of the deepest branch;
            the fusion uses the last.
    """

    def __init__(self, dims, depths, num_heads, mlp_ratios, qkv_bias=True, qk_scale=None, drop=0.0, attn_drop=0.0,
                 drop_path=(0.0,)):
        super().__init__()
        self.num_branches = n = len(dims)
        self.blocks = nn.LayerList([
            nn.Sequential(*[
                _Block(dims[d], num_heads[d], mlp_ratios[d], qkv_bias, qk_scale, drop, attn_drop, drop_path[i])
                for i in range(depths[d])
            ])
            for d in range(n)
        ])
        self.projs = nn.LayerList([_projection(dims[d], dims[(d + 1) % n]) for d in range(n)])
        self.fusion = nn.LayerList([
            _CrossAttentionBlock(dims[(d + 1) % n], num_heads[(d + 1) % n], qkv_bias, qk_scale, drop, attn_drop,
                                 drop_path[-1])
            for d in range(n)
        ])
        self.revert_projs = nn.LayerList([_projection(dims[(d + 1) % n], dims[d]) for d in range(n)])

    def forward(self, xs):
        xs = [blocks(x) for x, blocks in zip(xs, self.blocks)]
        outs = []
        for i in range(self.num_branches):
            other = xs[(i + 1) % self.num_branches]
            cls = self.projs[i](xs[i][:, :1])  # [B, 1, C_i] -> [B, 1, C_j]
            cls = self.fusion[i](paddle.concat([cls, other[:, 1:]], axis=1))  # [B, 1 + N_j, C_j] -> [B, 1, C_j]
            cls = self.revert_projs[i](cls)  # [B, 1, C_j] -> [B, 1, C_i]
            outs.append(paddle.concat([cls, xs[i][:, 1:]], axis=1))  # [B, 1 + N_i, C_i]
        return outs


class _MultiConvPatchEmbed(nn.Layer):
    """The dagger (``multi_conv``) patch embedding: three convolutions instead of one.

    Patch 12: 7x7/4, 3x3/3, 3x3/1; patch 16: 7x7/4, 3x3/2, 3x3/2, with ReLU
    between them and widths ``embed_dim / 4 -> / 2 -> embed_dim``.

    Shape:
        ``[B, C, H, W] -> [B, (H / p) * (W / p), embed_dim]``.
    """

    # Per patch size, the (kernel, stride, padding) of each of the three convolutions (official code).
    _CONVS = {12: ((7, 4, 3), (3, 3, 0), (3, 1, 1)), 16: ((7, 4, 3), (3, 2, 1), (3, 2, 1))}

    def __init__(self, img_size=240, patch_size=12, in_chans=3, embed_dim=768):
        super().__init__()
        if patch_size not in self._CONVS:
            raise ValueError(f"the three-convolution patch embedding exists for patch sizes 12 and 16, "
                             f"got {patch_size}; use multi_conv=False for other patch sizes")
        self.img_size = to_2tuple(img_size)
        self.patch_size = to_2tuple(patch_size)
        self.grid_size = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        (k1, s1, p1), (k2, s2, p2), (k3, s3, p3) = self._CONVS[patch_size]
        self.proj = nn.Sequential(
            nn.Conv2D(in_chans, embed_dim // 4, kernel_size=k1, stride=s1, padding=p1),
            nn.ReLU(),
            nn.Conv2D(embed_dim // 4, embed_dim // 2, kernel_size=k2, stride=s2, padding=p2),
            nn.ReLU(),
            nn.Conv2D(embed_dim // 2, embed_dim, kernel_size=k3, stride=s3, padding=p3),
        )

    def forward(self, x):
        return self.proj(x).flatten(2).transpose([0, 2, 1])  # [B, C, H', W'] -> [B, N, C]


def _branch_sizes(img_size, img_scale):
    # The epsilon keeps a float error such as 223.99999 from flooring to 223.
    return tuple(int(img_size * s + 1e-6) for s in img_scale)


def _fits(sizes, patch_size):
    return all(s % p == 0 for s, p in zip(sizes, patch_size))


class CrossViT(nn.Layer):
    """CrossViT (Chen et al., ICCV 2021).

    Args:
        img_size: Native input size of the first (small-patch) branch; branch
            ``i`` works at ``int(img_size * img_scale[i])``. Inputs of any size
            are resized (bicubic) to each branch's size.
        img_scale: Scale of each branch's input relative to ``img_size``.
        patch_size: Patch size per branch; each branch size must be a multiple of it.
        in_chans: Input channels.
        num_classes: Classes; ``0`` removes the heads (the model then returns
            the concatenated class tokens, ``[B, num_features]``).
        embed_dim: Token width per branch.
        depth: Per multi-scale block, the number of transformer blocks of each branch.
        num_heads: Heads per branch.
        mlp_ratio: MLP ratio per branch.
        multi_conv: Three-convolution patch embedding (the dagger models).
        qkv_bias: Bias in the q, k, v projections.
        qk_scale: Override of the attention scale ``head_dim ** -0.5``.
        drop_rate: Dropout after the position embedding, projections and MLPs.
        attn_drop_rate: Dropout on attention probabilities.
        drop_path_rate: Stochastic-depth rate, increased linearly over the deepest branch's blocks.

    Attributes:
        num_features: ``sum(embed_dim)``: the width of the pre-logits features,
            i.e. the branches' class tokens concatenated
            (``forward_head(x, pre_logits=True)``).
    """

    def __init__(self, img_size=240, img_scale=(1.0, 224 / 240), patch_size=(12, 16), in_chans=3, num_classes=1000,
                 embed_dim=(192, 384), depth=((1, 4), (1, 4), (1, 4)), num_heads=(6, 6), mlp_ratio=(4.0, 4.0),
                 multi_conv=False, qkv_bias=True, qk_scale=None, drop_rate=0.0, attn_drop_rate=0.0,
                 drop_path_rate=0.0):
        super().__init__()
        n = len(patch_size)
        if not (len(img_scale) == len(embed_dim) == len(num_heads) == len(mlp_ratio) == n):
            raise ValueError("img_scale, patch_size, embed_dim, num_heads and mlp_ratio need one entry per branch")
        if any(len(d) != n for d in depth):
            raise ValueError(f"each entry of depth needs one block count per branch ({n}), got {depth}")
        self.num_branches = n
        self.num_classes = num_classes
        self.embed_dim = tuple(embed_dim)
        self.num_features = sum(embed_dim)
        self.in_chans = in_chans
        size = int(img_size)
        self.img_size = (size, size)
        self.branch_img_size = _branch_sizes(size, img_scale)
        if not _fits(self.branch_img_size, patch_size):
            good = [s for s in range(max(patch_size), 4 * size) if _fits(_branch_sizes(s, img_scale), patch_size)]
            near = sorted(good, key=lambda s: abs(s - size))[:2]
            raise ValueError(
                f"img_size={img_size} gives branch sizes {self.branch_img_size}, which are not multiples of the "
                f"patch sizes {tuple(patch_size)}; use an img_size such as {' or '.join(map(str, sorted(near)))}"
            )

        self.patch_embed = nn.LayerList()
        for size, p, d in zip(self.branch_img_size, patch_size, embed_dim):
            if multi_conv:
                self.patch_embed.append(_MultiConvPatchEmbed(size, p, in_chans, d))
            else:
                self.patch_embed.append(PatchEmbed(size, p, in_chans, d))
        self.pos_embed = nn.ParameterList([
            self.create_parameter([1, 1 + pe.num_patches, d], default_initializer=nn.initializer.Constant(0.0))
            for pe, d in zip(self.patch_embed, embed_dim)
        ])
        self.cls_token = nn.ParameterList([
            self.create_parameter([1, 1, d], default_initializer=nn.initializer.Constant(0.0)) for d in embed_dim
        ])
        self.pos_drop = nn.Dropout(drop_rate)

        stage_depths = [max(d) for d in depth]
        dpr = np.linspace(0, drop_path_rate, sum(stage_depths)).tolist()
        self.blocks = nn.LayerList()
        start = 0
        for branch_depths, stage_depth in zip(depth, stage_depths):
            self.blocks.append(_MultiScaleBlock(
                embed_dim, branch_depths, num_heads, mlp_ratio, qkv_bias, qk_scale, drop_rate, attn_drop_rate,
                dpr[start:start + stage_depth]))
            start += stage_depth

        self.norm = nn.LayerList([_layer_norm(d) for d in embed_dim])
        self.head = self._make_heads(num_classes, init=False)
        self.feature_info = [dict(num_chs=d, reduction=p, module=f"blocks.{i}", index=i, branch=j)
                             for i in range(len(self.blocks)) for j, (d, p) in enumerate(zip(embed_dim, patch_size))]

        for p in list(self.pos_embed) + list(self.cls_token):
            trunc_normal_(p, std=0.02)
        self.apply(init_weights_vit)

    def _make_heads(self, num_classes, init=True):
        return nn.LayerList([create_classifier(d, num_classes, init) for d in self.embed_dim])

    def no_weight_decay(self):
        return {f"{name}.{i}" for name in ("pos_embed", "cls_token") for i in range(self.num_branches)}

    def get_classifier(self):
        """The per-branch heads (a ``LayerList``; the logits are their mean)."""
        return self.head

    def reset_classifier(self, num_classes):
        """Replace the heads by freshly initialised ones with ``num_classes`` outputs (``0``: none)."""
        self.head = self._make_heads(num_classes)
        self.num_classes = num_classes

    def checkpoint_filter(self, state_dict):
        """Official (IBM)/timm state dict -> this model's names (:func:`checkpoint_filter_fn`)."""
        return checkpoint_filter_fn(state_dict, self)

    def _embed(self, x, i):
        size = self.branch_img_size[i]
        if tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=[size, size], mode="bicubic", align_corners=False)
        x = self.patch_embed[i](x)  # [B, 3, S, S] -> [B, N, C]
        cls = self.cls_token[i].expand([x.shape[0], -1, -1])  # [1, 1, C] -> [B, 1, C]
        x = paddle.concat([cls, x], axis=1) + self.pos_embed[i]  # [B, 1 + N, C]
        return self.pos_drop(x)

    def forward_features(self, x):
        """Per-branch normalised tokens.

        Args:
            x: Images ``[B, C, H, W]`` of any size (resized per branch).

        Returns:
            list of ``[B, 1 + N_i, C_i]`` tensors, one per branch, class token first.
        """
        check_input(self, x)  # any size: each branch resizes its input
        xs = [self._embed(x, i) for i in range(self.num_branches)]
        for block in self.blocks:
            xs = block(xs)
        return [norm(t) for t, norm in zip(xs, self.norm)]

    def forward_intermediates(self, x, indices=None, norm=False, output_fmt="NCHW", intermediates_only=False):
        """Patch tokens of both branches after chosen multi-scale blocks, as maps.

        Branch ``j`` works at its own size (``branch_img_size[j]``, the input is resized to it), so its
        maps are ``[B, C_j, S_j / p_j, S_j / p_j]`` whatever the input size: stride 12 and 16 at the
        native sizes (240 and 224).

        Args:
            x: Images ``[B, C, H, W]`` of any size.
            indices: Multi-scale blocks to return: None (all), an int n (the last n) or indices.
            norm: Pass each output through its branch's final ``norm`` (timm's ViT rule).
            output_fmt: ``"NCHW"`` maps or ``"NLC"`` tokens (class token removed).
            intermediates_only: Return only the list (and stop after the last block asked for).

        Returns:
            a flat list, per block asked for, one tensor per branch (small-patch branch first), or
            ``(forward_features(x), list)``.
        """
        check_output_fmt(output_fmt)
        take, last = feature_take_indices(len(self.blocks), indices)
        check_input(self, x)
        xs = [self._embed(x, i) for i in range(self.num_branches)]
        outs = []
        for i, block in enumerate(self.blocks):
            if intermediates_only and i > last:
                break
            xs = block(xs)
            if i in take:
                for j, t in enumerate(xs):
                    t = self.norm[j](t) if norm else t
                    outs.append(to_output_fmt(t[:, 1:], self.patch_embed[j].grid_size, output_fmt))
        if intermediates_only:
            return outs
        return [norm_layer(t) for t, norm_layer in zip(xs, self.norm)], outs

    def prune_intermediate_layers(self, indices=None, prune_norm=False, prune_head=True):
        """Drop the blocks after ``indices`` and the heads; returns ``(kept indices, dropped names)``.

        The class tokens stay: they take part in every multi-scale block's cross-attention."""
        take, last = feature_take_indices(len(self.blocks), indices)
        dropped = [f"blocks.{i}" for i in range(last + 1, len(self.blocks))]
        self.blocks = nn.LayerList(list(self.blocks)[: last + 1])
        if prune_norm:
            self.norm = nn.LayerList([nn.Identity() for _ in range(self.num_branches)])
            dropped.append("norm")
        if prune_head:
            self.reset_classifier(0)
            dropped.append("head")
        return take, dropped

    def forward_head(self, xs, pre_logits=False):
        """Logits (mean of the branch heads) or, with ``pre_logits``, the concatenated class tokens.

        Returns:
            ``[B, num_classes]``, or ``[B, num_features]`` when ``pre_logits`` or ``num_classes == 0``.
        """
        cls = [t[:, 0] for t in xs]  # each [B, C_i]
        if pre_logits or self.num_classes == 0:
            return paddle.concat(cls, axis=1)  # [B, sum(C_i)]
        return paddle.stack([head(c) for head, c in zip(self.head, cls)]).mean(axis=0)  # [branches, B, K] -> [B, K]

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def checkpoint_filter_fn(state_dict, model):
    """Official (IBM) or timm CrossViT state dict -> this model's names.

    The IBM release stores the per-branch embeddings as ``pos_embed.0`` and
    ``cls_token.0`` (our names); timm stores ``pos_embed_0`` and
    ``cls_token_0``. Everything else is named alike. A DataParallel
    ``module.`` prefix is removed.
    """
    out = {}
    for key, value in state_dict.items():
        if key.startswith("module."):
            key = key[len("module."):]
        for name in ("pos_embed", "cls_token"):
            if key.startswith(name + "_") and key[len(name) + 1:].isdigit():
                key = f"{name}.{key[len(name) + 1:]}"
        out[key] = value
    return out


# Variants. Architectures from the official release; the official (IBM) names end in
# _224 / _384 (the large-patch branch's size), timm's in _240 / _408 (the input size).
# Evaluation follows the official main.py: input 240, resize to 240 / 0.875 = 274,
# centre crop, bicubic; the 408 models at crop 1.0. num_params: timm's (= official)
# models, 1000 classes, counted exactly.

_PAPER = "CrossViT (Chen et al., ICCV 2021), arXiv:2103.14899"
_DEFAULT = dict(input_size=(3, 240, 240), crop_pct=0.875, interpolation="bicubic",
                classifier=("head.0", "head.1"), paper=_PAPER, test_kwargs=dict(img_size=120))
_HIRES = dict(_DEFAULT, input_size=(3, 408, 408), crop_pct=1.0)


def _create(cfg, **kwargs):
    args = dict(patch_size=(12, 16), qkv_bias=True)
    args.update(cfg)
    args.update(kwargs)
    return CrossViT(**args)


def _cfg(dims, depth, heads, mlp, dagger=False, hires=False):
    return dict(embed_dim=dims, depth=((1, depth),) * 3, num_heads=(heads, heads), mlp_ratio=(mlp, mlp),
                multi_conv=dagger, img_size=408 if hires else 240,
                img_scale=(1.0, 384 / 408) if hires else (1.0, 224 / 240))


@register_model(top1=73.4, num_params=7_014_800, aliases=("crossvit_tiny_240",), **_DEFAULT)
def crossvit_tiny_224(**kwargs):
    return _create(_cfg((96, 192), 4, 3, 4.0), **kwargs)


@register_model(top1=81.0, num_params=26_856_272, aliases=("crossvit_small_240",), **_DEFAULT)
def crossvit_small_224(**kwargs):
    return _create(_cfg((192, 384), 4, 6, 4.0), **kwargs)


@register_model(top1=82.2, num_params=105_025_232, aliases=("crossvit_base_240",), **_DEFAULT)
def crossvit_base_224(**kwargs):
    return _create(_cfg((384, 768), 4, 12, 4.0), **kwargs)


@register_model(top1=73.9, num_params=8_553_296, aliases=("crossvit_9_240",), **_DEFAULT)
def crossvit_9_224(**kwargs):
    return _create(_cfg((128, 256), 3, 4, 3.0), **kwargs)


@register_model(top1=81.5, num_params=27_528_464, aliases=("crossvit_15_240",), **_DEFAULT)
def crossvit_15_224(**kwargs):
    return _create(_cfg((192, 384), 5, 6, 3.0), **kwargs)


@register_model(top1=82.5, num_params=43_271_408, aliases=("crossvit_18_240",), **_DEFAULT)
def crossvit_18_224(**kwargs):
    return _create(_cfg((224, 448), 6, 7, 3.0), **kwargs)


@register_model(top1=77.1, num_params=8_776_592, aliases=("crossvit_9_dagger_240",), **_DEFAULT)
def crossvit_9_dagger_224(**kwargs):
    return _create(_cfg((128, 256), 3, 4, 3.0, dagger=True), **kwargs)


@register_model(top1=82.3, num_params=28_209_008, aliases=("crossvit_15_dagger_240",), **_DEFAULT)
def crossvit_15_dagger_224(**kwargs):
    return _create(_cfg((192, 384), 5, 6, 3.0, dagger=True), **kwargs)


@register_model(top1=82.8, num_params=44_266_976, aliases=("crossvit_18_dagger_240",), **_DEFAULT)
def crossvit_18_dagger_224(**kwargs):
    return _create(_cfg((224, 448), 6, 7, 3.0, dagger=True), **kwargs)


@register_model(top1=83.5, num_params=28_500_080, aliases=("crossvit_15_dagger_384",), **_HIRES)
def crossvit_15_dagger_408(**kwargs):
    return _create(_cfg((192, 384), 5, 6, 3.0, dagger=True, hires=True), **kwargs)


@register_model(top1=83.9, num_params=44_606_560, aliases=("crossvit_18_dagger_384",), **_HIRES)
def crossvit_18_dagger_408(**kwargs):
    return _create(_cfg((224, 448), 6, 7, 3.0, dagger=True, hires=True), **kwargs)


# Released weights: IBM/CrossViT release "weights-0.1" (ImageNet-1k, 240 px input; the
# dagger 384 files at 408/384 px), then timm's hub copies (`timm/crossvit_*.in1k`). Sizes and
# sha256 are not published (None: the strict conversion is the check).

def _ibm(file, timm_name, trained_on="ImageNet-1k, 240 px"):
    url = f"https://github.com/IBM/CrossViT/releases/download/weights-0.1/{file}.pth"
    return (Weights("in1k", (http_source(url), hf_source(f"timm/{timm_name}.in1k")), trained_on=trained_on),)


register_weights({
    "crossvit_tiny_224": _ibm("crossvit_tiny_224", "crossvit_tiny_240"),
    "crossvit_small_224": _ibm("crossvit_small_224", "crossvit_small_240"),
    "crossvit_base_224": _ibm("crossvit_base_224", "crossvit_base_240"),
    "crossvit_9_224": _ibm("crossvit_9_224", "crossvit_9_240"),
    "crossvit_15_224": _ibm("crossvit_15_224", "crossvit_15_240"),
    "crossvit_18_224": _ibm("crossvit_18_224", "crossvit_18_240"),
    "crossvit_9_dagger_224": _ibm("crossvit_9_dagger_224", "crossvit_9_dagger_240"),
    "crossvit_15_dagger_224": _ibm("crossvit_15_dagger_224", "crossvit_15_dagger_240"),
    "crossvit_18_dagger_224": _ibm("crossvit_18_dagger_224", "crossvit_18_dagger_240"),
    "crossvit_15_dagger_408": _ibm("crossvit_15_dagger_384", "crossvit_15_dagger_408",
                                   "ImageNet-1k, fine-tuned at 408/384 px"),
    "crossvit_18_dagger_408": _ibm("crossvit_18_dagger_384", "crossvit_18_dagger_408",
                                   "ImageNet-1k, fine-tuned at 408/384 px"),
})
