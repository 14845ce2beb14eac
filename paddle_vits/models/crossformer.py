"""CrossFormer: cross-scale embedding, short/long distance attention, dynamic position bias.

Paper: Wang et al., "CrossFormer: A Versatile Vision Transformer Hinging on Cross-scale
Attention", ICLR 2022 (arXiv:2108.00154). Official code: https://github.com/cheerss/CrossFormer,
branch ``crossformer`` (its ``main`` branch holds CrossFormer++); parameter names follow
``models/crossformer.py`` there, so official checkpoints convert with no renames.

The model is a four-stage pyramid:

* a cross-scale embedding layer (CEL) samples the image with several kernel sizes at one stride
  (``[4, 8, 16, 32]`` at stride 4 before stage 1, ``[2, 4]`` at stride 2 between stages) and
  concatenates the results, giving wide kernels fewer channels (e.g. 64 = 32 + 16 + 8 + 8);
* blocks alternate short-distance attention (SDA: groups of G x G neighbouring embeddings) and
  long-distance attention (LDA: groups of embeddings sampled at interval I);
* attention adds a dynamic position bias (DPB): a small MLP over relative coordinates, so the
  weights do not depend on the group size.

Input sizes. The official classifier fixes G per stage and takes I = (map side) / G, so LDA
groups also hold G x G embeddings; where a stage's map side is at most G the group shrinks to the
map and the block uses SDA (at 224 this is stage 4, 7 x 7). Here the same rules apply at run
time, so one model takes any image whose sides are multiples of 32 (stride 4 then three 2x
merges). Where a map side is larger than G but not a multiple of it (e.g. 16 x 16 in stage 1 of a
64-pixel input, G = 7) the official classifier fails; this port pads the map and masks the padded
keys, as the official detection/segmentation backbone (``crossformer_backbone.py``) does, so
32- and 64-pixel inputs work. Where no padding is needed (e.g. 224) the computation is exactly the
official classifier's. ``group_size`` and ``interval`` can be set per stage (the backbone's
settings, e.g. ``interval=[8, 4, 2, 1]``): with an explicit interval I, LDA pads the map to a
multiple of I and groups hold (side / I)^2 embeddings.

File layout: the cross-scale embeddings, the dynamic position bias, ``GroupAttention``
(the shared kernel :func:`paddle_vits.layers.attend` with the bias as its mask), the
SDA/LDA grouping helpers, blocks and stages, :class:`CrossFormer` (the model contract,
``docs/model_contract.md``), :func:`checkpoint_filter_fn` (called through
``CrossFormer.checkpoint_filter``) and the registered variants.
"""
import functools
import math

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..hub import Weights, baidu_source, drive_source, register_weights
from ..layers import DropPath, Mlp, attend, head_dim, init_weights_vit
from ..constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from ..registry import register_model
from .contract import check_input, check_output_fmt, create_classifier, feature_take_indices, to_output_fmt

__all__ = ["CrossFormer", "checkpoint_filter_fn"]

_NEG_INF = -1.0e6  # additive mask for padded keys (the official backbone's NEG_INF)


def _init_weights(m):
    """Official initialisation (trunc-normal Linear, unit LayerNorm); Conv2D as PyTorch's default."""
    init_weights_vit(m)
    if isinstance(m, nn.Conv2D):
        # PyTorch's kaiming_uniform_(a=sqrt(5)) and bias rule: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        fan_in = int(np.prod(m.weight.shape[1:]))
        bound = 1.0 / math.sqrt(fan_in)
        m.weight.set_value(paddle.uniform(m.weight.shape, min=-bound, max=bound))
        if m.bias is not None:
            m.bias.set_value(paddle.uniform(m.bias.shape, min=-bound, max=bound))


def _scale_dims(dim, num_scales):
    """Channels of each kernel size in a CEL: halving, the last two equal (64, 4 -> 32, 16, 8, 8)."""
    if dim % 2 ** (num_scales - 1):
        raise ValueError(f"a cross-scale embedding with {num_scales} kernel sizes needs a width divisible by "
                         f"{2 ** (num_scales - 1)}; got {dim}")
    return [dim // 2 ** (i + 1) for i in range(num_scales - 1)] + [dim // 2 ** (num_scales - 1)]


def _scale_convs(in_chans, out_dim, kernel_sizes, stride):
    """One Conv2D per kernel size, all at ``stride`` and padded so they give the same output size."""
    convs = nn.LayerList()
    for k, d in zip(kernel_sizes, _scale_dims(out_dim, len(kernel_sizes))):
        if k < stride or (k - stride) % 2:
            raise ValueError(f"cross-scale kernel sizes must be >= the stride {stride} and differ from it by an "
                             f"even number; got {k}")
        convs.append(nn.Conv2D(in_chans, d, kernel_size=k, stride=stride, padding=(k - stride) // 2))
    return convs


class CrossScaleEmbed(nn.Layer):
    """First cross-scale embedding layer: image -> tokens (``projs`` then ``norm``).

    Args:
        in_chans: Image channels.
        embed_dim: Output width, split over the kernel sizes (see ``_scale_dims``).
        patch_size: Kernel sizes; the first one is the stride.
    """

    def __init__(self, in_chans=3, embed_dim=96, patch_size=(4, 8, 16, 32)):
        super().__init__()
        self.stride = patch_size[0]
        self.projs = _scale_convs(in_chans, embed_dim, patch_size, self.stride)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x):
        x = paddle.concat([proj(x) for proj in self.projs], axis=1)  # [B, C, H/s, W/s]
        hw = tuple(x.shape[2:])
        x = x.flatten(2).transpose([0, 2, 1])  # [B, C, h, w] -> [B, h*w, C]
        return self.norm(x), hw


class PatchMerging(nn.Layer):
    """Cross-scale embedding between stages: ``norm`` then ``reductions`` (stride 2, width x2).

    Args:
        dim: Input width (output width is ``2 * dim``).
        patch_size: Kernel sizes (official: ``[2, 4]``).
    """

    def __init__(self, dim, patch_size=(2, 4)):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.reductions = _scale_convs(dim, 2 * dim, patch_size, 2)

    def forward(self, x, hw):
        H, W = hw
        B, _, C = x.shape
        x = self.norm(x).reshape([B, H, W, C]).transpose([0, 3, 1, 2])  # [B, H*W, C] -> [B, C, H, W]
        x = paddle.concat([red(x) for red in self.reductions], axis=1)  # [B, 2C, H/2, W/2]
        hw = tuple(x.shape[2:])
        return x.flatten(2).transpose([0, 2, 1]), hw  # [B, 2C, h, w] -> [B, h*w, 2C]


@functools.lru_cache(maxsize=None)
def _relative_tables(gh, gw):
    """Relative coordinates of a ``gh x gw`` group and the index of each token pair into them.

    Returns:
        ``(coords, index)``: ``coords`` float32 ``[(2gh-1)(2gw-1), 2]`` (dh, dw), row-major;
        ``index`` int64 ``[gh*gw, gh*gw]``, ``coords[index[p, q]] = pos(p) - pos(q)``.
    """
    dh, dw = np.meshgrid(np.arange(1 - gh, gh), np.arange(1 - gw, gw), indexing="ij")
    coords = np.stack([dh.ravel(), dw.ravel()], axis=1).astype(np.float32)
    ph, pw = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    ph, pw = ph.ravel(), pw.ravel()
    index = (ph[:, None] - ph[None, :] + gh - 1) * (2 * gw - 1) + (pw[:, None] - pw[None, :] + gw - 1)
    return coords, index.astype(np.int64)


def _plain_layer_norm(norm, x):
    """``norm(x)`` (an ``nn.LayerNorm`` over the last axis) in elementwise ops, for export.

    The position-bias MLP runs on constant coordinates, so Paddle Inference 3.3 constant-folds it,
    and folding a ``layer_norm`` op fails ("Tensor holds no memory": the inference kernel leaves its
    mean/variance outputs unallocated and the pass copies them). These ops fold fine and agree
    with ``layer_norm`` to float32 rounding.
    """
    mean = x.mean(axis=-1, keepdim=True)
    centred = x - mean
    var = (centred * centred).mean(axis=-1, keepdim=True)
    return centred * paddle.rsqrt(var + norm._epsilon) * norm.weight + norm.bias


class DynamicPosBias(nn.Layer):
    """Dynamic position bias: MLP ``2 -> dim/4 -> dim/4 -> dim/4 -> num_heads`` over (dh, dw).

    Args:
        dim: A quarter of the attention width (as the official code passes it).
        num_heads: Heads (one bias per head).
    """

    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.pos_dim = dim // 4
        self.pos_proj = nn.Linear(2, self.pos_dim)
        self.pos1 = nn.Sequential(nn.LayerNorm(self.pos_dim), nn.ReLU(), nn.Linear(self.pos_dim, self.pos_dim))
        self.pos2 = nn.Sequential(nn.LayerNorm(self.pos_dim), nn.ReLU(), nn.Linear(self.pos_dim, self.pos_dim))
        self.pos3 = nn.Sequential(nn.LayerNorm(self.pos_dim), nn.ReLU(), nn.Linear(self.pos_dim, num_heads))
        self.export_mode = False
        self._bias_cache = {}  # group_hw -> (parameter values, bias); see bias()

    def forward(self, coords):
        """``[M, 2]`` relative coordinates -> ``[M, num_heads]`` biases."""
        x = self.pos_proj(coords)
        for block in (self.pos1, self.pos2, self.pos3):
            norm, act, fc = block
            x = fc(act(_plain_layer_norm(norm, x) if self.export_mode else norm(x)))
        return x

    def bias(self, group_hw):
        """Bias ``[num_heads, N, N]`` for a group of ``group_hw`` tokens (N = gh * gw).

        CPU inference (eval mode, no gradient, eager) reuses the bias computed for
        the same parameter values: the cache keeps a copy of every parameter and
        is used only while they are all equal to it, so loading weights, an
        optimiser step or any in-place edit recomputes it
        (``docs/performance.md``, "Op work": comparing is 5-10x cheaper than the MLP).
        """
        if self.training or paddle.is_grad_enabled() or not paddle.in_dynamic_mode() \
                or not self.pos_proj.weight.place.is_cpu_place():
            return self._bias(group_hw)
        values = [p.numpy() for p in self.parameters()]
        cached = self._bias_cache.get(group_hw)
        if cached is not None and all(np.array_equal(a, b) for a, b in zip(values, cached[0])):
            return cached[1]
        bias = self._bias(group_hw)
        self._bias_cache[group_hw] = ([np.array(v, copy=True) for v in values], bias)
        return bias

    def _bias(self, group_hw):
        """:meth:`bias`, computed."""
        coords, index = _relative_tables(*group_hw)
        table = self(paddle.to_tensor(coords))  # [(2gh-1)(2gw-1), heads]
        n = index.shape[0]
        bias = paddle.gather(table, paddle.to_tensor(index.reshape(-1)))  # [N*N, heads]
        return bias.reshape([n, n, self.num_heads]).transpose([2, 0, 1])  # [N, N, h] -> [h, N, N]


class GroupAttention(nn.Layer):
    """Multi-head self-attention inside groups, with a dynamic position bias.

    Runs :func:`~paddle_vits.layers.attend` with the bias as its mask: ``fused_attn`` selects
    SDPA, which the kernel uses only where no gradient flows into the learned bias (inference
    under ``paddle.no_grad()``).

    Args:
        dim: Width.
        num_heads: Heads.
        qkv_bias: Bias in ``qkv``.
        qk_scale: Override of ``head_dim ** -0.5``.
        attn_drop: Dropout on attention probabilities.
        proj_drop: Dropout after ``proj``.
    """

    def __init__(self, dim, num_heads, qkv_bias=True, qk_scale=None, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim(dim, num_heads)
        self.scale = qk_scale or self.head_dim ** -0.5
        self.fused_attn = True
        self.pos = DynamicPosBias(dim // 4, num_heads)
        self.qkv = nn.Linear(dim, dim * 3, bias_attr=None if qkv_bias else False)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x, group_hw, mask=None):
        """Args:
            x: ``[B * nG, N, C]`` grouped tokens (group index fastest after the batch).
            group_hw: ``(gh, gw)`` with ``gh * gw == N``.
            mask: ``[nG, N, N]`` additive mask (0 or a large negative) or None.
        """
        B_, N, C = x.shape
        bias = self.pos.bias(group_hw).unsqueeze(0)  # [1, h, N, N]
        if mask is not None:
            bias = (bias + mask.unsqueeze(1)).tile([B_ // mask.shape[0], 1, 1, 1])  # [B*nG, h, N, N]
        qkv = self.qkv(x).reshape([B_, N, 3, self.num_heads, self.head_dim])  # [B_, N, 3C] -> [B_, N, 3, h, D]
        q, k, v = qkv.unbind(2)  # each [B_, N, h, D]
        # The learned bias needs a gradient in training, so the kernel runs its explicit path then.
        x = attend(q, k, v, self.scale, self.attn_drop, self.fused_attn, mask=bias)  # [B_, N, h, D]
        x = x.reshape([B_, N, C])  # [B_, N, h, D] -> [B_, N, C]
        return self.proj_drop(self.proj(x))


def group_tokens(x, group_hw, lda):
    """Split a ``[B, H, W, C]`` map (paddle or numpy) into groups of ``gh x gw`` tokens.

    SDA groups are contiguous ``gh x gw`` windows; LDA groups take every ``(H/gh)``-th row and
    ``(W/gw)``-th column, i.e. tokens at interval ``I = H / gh`` apart. Groups are ordered batch
    first, then row-major over windows (SDA) or over offsets (LDA).

    Returns:
        ``[B * nG, gh * gw, C]``.
    """
    B, H, W, C = x.shape
    gh, gw = group_hw
    if lda:
        x = x.reshape([B, gh, H // gh, gw, W // gw, C]).transpose([0, 2, 4, 1, 3, 5])  # -> [B, Ih, Iw, gh, gw, C]
    else:
        x = x.reshape([B, H // gh, gh, W // gw, gw, C]).transpose([0, 1, 3, 2, 4, 5])  # -> [B, nh, nw, gh, gw, C]
    return x.reshape([-1, gh * gw, C])  # -> [B * nG, gh * gw, C]


def ungroup_tokens(x, hw, group_hw, lda):
    """Inverse of :func:`group_tokens`: ``[B * nG, gh * gw, C]`` -> ``[B, H, W, C]``."""
    H, W = hw
    gh, gw = group_hw
    C = x.shape[-1]
    x = x.reshape([-1, H // gh, W // gw, gh, gw, C])  # -> [B, nh|Ih, nw|Iw, gh, gw, C]
    if lda:
        x = x.transpose([0, 3, 1, 4, 2, 5])  # -> [B, gh, Ih, gw, Iw, C]
    else:
        x = x.transpose([0, 1, 3, 2, 4, 5])  # -> [B, nh, gh, nw, gw, C]
    return x.reshape([-1, H, W, C])  # -> [B, H, W, C]


def group_plan(hw, group_size, interval, lda):
    """How a block groups an ``H x W`` map.

    Follows the official classifier: a map side at most ``group_size`` makes the group the whole
    (shorter) side and the block SDA; LDA with ``interval=None`` uses ``I = side / G`` so its
    groups hold ``G x G`` tokens. Sides that do not divide are padded (official backbone).

    Returns:
        ``(lda, padded_hw, group_hw)``.
    """
    H, W = hw
    if min(H, W) <= group_size:
        lda, group_size = False, min(H, W)
    if lda and interval is not None:
        Hp, Wp = -(-H // interval) * interval, -(-W // interval) * interval
        return True, (Hp, Wp), (Hp // interval, Wp // interval)
    Hp, Wp = -(-H // group_size) * group_size, -(-W // group_size) * group_size
    return lda, (Hp, Wp), (group_size, group_size)


@functools.lru_cache(maxsize=64)
def _padding_mask(hw, padded_hw, group_hw, lda):
    """Additive key mask ``[nG, N, N]`` (float32) hiding the padded positions of each group."""
    pad = np.ones(padded_hw, dtype=np.float32)
    pad[: hw[0], : hw[1]] = 0.0
    keys = group_tokens(pad[None, :, :, None], group_hw, lda)[..., 0]  # [nG, N]
    return np.broadcast_to(keys[:, None, :] * _NEG_INF, keys.shape[:1] + keys.shape[1:] * 2).copy()


def _pad_nhwc(x, bottom, right, export_mode=False):
    """Zero-pad a ``[B, H, W, C]`` map by ``bottom`` rows and ``right`` columns.

    ``export_mode`` concatenates zero blocks instead of a ``pad`` op (same numbers): Paddle
    Inference 3.3 runs an NHWC ``pad`` as if it were NCHW (a wrong shape at run time), and
    paddle2onnx 2.1 writes the ONNX ``Pad`` value of an NCHW ``pad`` from uninitialised memory
    (a random constant in place of 0: the intermittent onnxruntime disagreement).
    """
    if not export_mode:
        return F.pad(x, [0, right, 0, bottom], data_format="NHWC")  # [left, right, top, bottom]
    _, H, W, C = x.shape
    batch = paddle.shape(x)[0]
    if right:
        x = paddle.concat([x, paddle.zeros([batch, H, right, C], x.dtype)], axis=2)  # -> [B, H, Wp, C]
    if bottom:
        x = paddle.concat([x, paddle.zeros([batch, bottom, W + right, C], x.dtype)], axis=1)  # -> [B, Hp, Wp, C]
    return x


class CrossFormerBlock(nn.Layer):
    """CrossFormer block: ``x + attn(norm1(x))`` over SDA or LDA groups, then ``x + mlp(norm2(x))``.

    Args:
        dim: Width.
        num_heads: Heads.
        group_size: G (groups of G x G embeddings).
        interval: LDA interval I, or None for ``map side / G`` (official classifier).
        lda: Long-distance (True) or short-distance (False) attention.
        mlp_ratio: FFN expansion.
        qkv_bias: Bias in ``qkv``.
        qk_scale: Override of the attention scale.
        drop: Dropout after projections.
        attn_drop: Dropout on attention probabilities.
        drop_path: Stochastic depth.
    """

    def __init__(self, dim, num_heads, group_size=7, interval=None, lda=False, mlp_ratio=4.0, qkv_bias=True,
                 qk_scale=None, drop=0.0, attn_drop=0.0, drop_path=0.0):
        super().__init__()
        self.group_size = group_size
        self.interval = interval
        self.lda = lda
        self.norm1 = nn.LayerNorm(dim)
        self.attn = GroupAttention(dim, num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale, attn_drop=attn_drop,
                                   proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.export_mode = False

    def forward(self, x, hw):
        B, L, C = x.shape
        H, W = hw
        lda, (Hp, Wp), group_hw = group_plan(hw, self.group_size, self.interval, self.lda)
        y = self.norm1(x).reshape([B, H, W, C])  # [B, H*W, C] -> [B, H, W, C]
        mask = None
        if (Hp, Wp) != (H, W):
            y = _pad_nhwc(y, Hp - H, Wp - W, self.export_mode)
            mask = paddle.to_tensor(_padding_mask(hw, (Hp, Wp), group_hw, lda))
        y = self.attn(group_tokens(y, group_hw, lda), group_hw, mask)  # [B*nG, N, C]
        y = ungroup_tokens(y, (Hp, Wp), group_hw, lda)[:, :H, :W]  # [B, Hp, Wp, C] -> [B, H, W, C]
        x = x + self.drop_path(y.reshape([B, L, C]))  # [B, H, W, C] -> [B, H*W, C]
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Stage(nn.Layer):
    """Blocks alternating SDA and LDA (SDA first), then an optional cross-scale ``downsample``.

    Args:
        dim: Width.
        depth: Blocks.
        num_heads: Heads.
        group_size: G.
        interval: LDA interval or None.
        drop_path: One stochastic-depth rate per block.
        merge_size: Kernel sizes of the following CEL, or None for the last stage.
        **block_kwargs: Passed to :class:`CrossFormerBlock`.
    """

    def __init__(self, dim, depth, num_heads, group_size, interval, drop_path, merge_size=None, **block_kwargs):
        super().__init__()
        self.blocks = nn.LayerList([
            CrossFormerBlock(dim, num_heads, group_size=group_size, interval=interval, lda=i % 2 == 1,
                             drop_path=drop_path[i], **block_kwargs)
            for i in range(depth)
        ])
        self.downsample = PatchMerging(dim, merge_size) if merge_size else None

    def forward(self, x, hw):
        for blk in self.blocks:
            x = blk(x, hw)
        if self.downsample is not None:
            x, hw = self.downsample(x, hw)
        return x, hw


def _per_stage(value, n, name):
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n
    if len(values) != n:
        raise ValueError(f"{name} needs one value per stage ({n}); got {value!r}")
    return values


class CrossFormer(nn.Layer):
    """CrossFormer image classifier.

    Args:
        img_size: Default input side (checked at construction). The model takes any input whose
            sides are multiples of 32, e.g. 32, 64, 224, 256.
        in_chans: Input channels.
        num_classes: Classes; ``0`` gives pooled features.
        embed_dim: Width of stage 1 (doubled by each later stage).
        depths: Blocks per stage.
        num_heads: Heads per stage.
        group_size: G per stage (int for all stages). Does not change weight shapes.
        interval: LDA interval I per stage (int, or None entries for the official
            ``map side / G``). Does not change weight shapes.
        patch_size: Kernel sizes of the first CEL (the first is the stride).
        merge_size: Kernel sizes of the three later CELs (stride 2).
        mlp_ratio: FFN expansion.
        qkv_bias: Bias in ``qkv``.
        qk_scale: Override of the attention scale.
        drop_rate: Dropout after the embedding and projections.
        attn_drop_rate: Dropout on attention probabilities.
        drop_path_rate: Stochastic depth, increasing linearly over blocks.
    """

    def __init__(self, img_size=224, in_chans=3, num_classes=1000, embed_dim=96, depths=(2, 2, 6, 2),
                 num_heads=(3, 6, 12, 24), group_size=7, interval=None, patch_size=(4, 8, 16, 32),
                 merge_size=((2, 4), (2, 4), (2, 4)), mlp_ratio=4.0, qkv_bias=True, qk_scale=None, drop_rate=0.0,
                 attn_drop_rate=0.0, drop_path_rate=0.1):
        super().__init__()
        n = len(depths)
        num_heads = _per_stage(num_heads, n, "num_heads")
        self.group_size = _per_stage(group_size, n, "group_size")
        self.interval = _per_stage(interval, n, "interval")
        merge_size = _per_stage(merge_size, n - 1, "merge_size") if isinstance(merge_size[0], (list, tuple)) \
            else [merge_size] * (n - 1)
        self.num_classes = num_classes
        self.num_features = int(embed_dim * 2 ** (n - 1))
        self.patch_stride = patch_size[0]
        self.size_divisor = patch_size[0] * 2 ** (n - 1)
        self.in_chans = in_chans
        self.img_size = tuple(int(s) for s in img_size) if isinstance(img_size, (list, tuple)) \
            else (int(img_size), int(img_size))
        problem = self._size_problem(*self.img_size)
        if problem:
            raise ValueError(f"img_size={img_size} does not fit CrossFormer: {problem}")

        self.patch_embed = CrossScaleEmbed(in_chans, embed_dim, patch_size)
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = np.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.LayerList([
            Stage(int(embed_dim * 2 ** i), depths[i], num_heads[i], self.group_size[i], self.interval[i],
                  dpr[sum(depths[:i]):sum(depths[: i + 1])], merge_size[i] if i < n - 1 else None,
                  mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, qk_scale=qk_scale, drop=drop_rate,
                  attn_drop=attn_drop_rate)
            for i in range(n)
        ])
        self.norm = nn.LayerNorm(self.num_features)
        self.head = create_classifier(self.num_features, num_classes, init=False)
        self.feature_info = [dict(num_chs=int(embed_dim * 2 ** i), reduction=self.patch_stride * 2 ** i,
                                  module=f"layers.{i}", index=i) for i in range(n)]
        self.apply(_init_weights)

    def _size_problem(self, H, W):
        """Why an ``H x W`` input does not fit, or None."""
        d = self.size_divisor
        if H % d or W % d:
            up = (-(-H // d) * d, -(-W // d) * d)
            return (f"CrossFormer takes image sides that are multiples of {d} (a stride-{self.patch_stride} "
                    f"embedding, then 2x merges that need even maps); got {H}x{W}. Resize or pad to e.g. "
                    f"{up[0]}x{up[1]} (224, 32 and 64 work)")
        return None

    def set_export_mode(self, mode=True):
        """Formulations Paddle Inference 3.3 runs correctly (``mode=True``), for ``paddle.jit.save``:
        the position-bias LayerNorms in elementwise ops (:func:`_plain_layer_norm`) and the padding
        as concatenated zeros (:func:`_pad_nhwc`, which also keeps paddle2onnx's ``Pad`` bug out).
        Outputs agree to float32 rounding; training works in both modes."""
        for layer in self.sublayers():
            if isinstance(layer, (DynamicPosBias, CrossFormerBlock)):
                layer.export_mode = bool(mode)
        return self

    def no_weight_decay(self):
        """No parameter is exempt in the official recipe (it has no absolute position embedding)."""
        return set()

    def get_classifier(self):
        return self.head

    def reset_classifier(self, num_classes):
        """Replace the head by a freshly initialised one with ``num_classes`` outputs (``0``: none)."""
        self.head = create_classifier(self.num_features, num_classes)
        self.num_classes = num_classes

    def checkpoint_filter(self, state_dict):
        """Official state dict -> this model's names (:func:`checkpoint_filter_fn`)."""
        return checkpoint_filter_fn(state_dict, self)

    def forward_features(self, x):
        """``[B, 3, H, W]`` -> normalised stage-4 tokens ``[B, H*W/1024, num_features]``."""
        check_input(self, x, self._size_problem)
        x, hw = self.patch_embed(x)
        x = self.pos_drop(x)
        for layer in self.layers:
            x, hw = layer(x, hw)
        return self.norm(x)

    def forward_intermediates(self, x, indices=None, norm=False, output_fmt="NCHW", intermediates_only=False):
        """Stage outputs (after the blocks, before the next cross-scale embedding), as in the official
        detection/segmentation backbone (``crossformer_backbone.py``, which adds no norm to them).

        Args:
            x: Images ``[B, C, H, W]``, sides multiples of 32.
            indices: Stages to return: None (all four), an int n (the last n) or indices.
            norm: Apply the final ``norm`` to the last stage's output when it is returned.
            output_fmt: ``"NCHW"`` maps ``[B, C_i, H/s_i, W/s_i]`` or ``"NLC"`` tokens.
            intermediates_only: Return only the list (and stop after the last stage asked for).

        Returns:
            list of tensors, or ``(forward_features(x), list)``.
        """
        check_output_fmt(output_fmt)
        num = len(self.feature_info)
        take, last = feature_take_indices(num, indices)
        check_input(self, x, self._size_problem)
        x, hw = self.patch_embed(x)
        x = self.pos_drop(x)
        outs = []
        for i, layer in enumerate(self.layers):
            if intermediates_only and i > last:
                break
            for blk in layer.blocks:
                x = blk(x, hw)
            if i in take:
                feat = self.norm(x) if norm and i == num - 1 else x
                outs.append(to_output_fmt(feat, hw, output_fmt))
            if layer.downsample is not None:
                x, hw = layer.downsample(x, hw)
        if intermediates_only:
            return outs
        return self.norm(x), outs

    def prune_intermediate_layers(self, indices=None, prune_norm=False, prune_head=True):
        """Drop what the stages ``indices`` do not need; returns ``(kept indices, dropped layer names)``."""
        take, last = feature_take_indices(len(self.feature_info), indices)
        dropped = [f"layers.{i}" for i in range(last + 1, len(self.layers))]
        self.layers = nn.LayerList(list(self.layers)[: last + 1])
        if self.layers[-1].downsample is not None:
            self.layers[-1].downsample = None
            dropped.append(f"layers.{last}.downsample")
        if prune_norm or last < len(self.feature_info) - 1:
            self.norm = nn.Identity()
            dropped.append("norm")
        if prune_head:
            self.reset_classifier(0)
            dropped.append("head")
        return take, dropped

    def forward_head(self, x, pre_logits=False):
        x = x.mean(axis=1)  # [B, L, C] -> [B, C]
        return x if pre_logits else self.head(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def checkpoint_filter_fn(state_dict, model):
    """Official CrossFormer checkpoint -> our names (before the generic Linear step).

    Names are the official ones; only the buffers the official attention stores
    (``*.attn.biases``, ``*.attn.relative_position_index``, and ``*.attn_mask`` if present)
    are dropped: this port recomputes them for the group size of each input.
    """
    drop = ("attn.biases", "attn.relative_position_index", "attn_mask")
    return {k: v for k, v in state_dict.items() if not k.endswith(drop)}


def _create(cfg, **kwargs):
    return CrossFormer(**{**cfg, **kwargs})


_PAPER = "Wang et al., CrossFormer, ICLR 2022 (arXiv:2108.00154)"
# Official eval transform (data/build.py): resize to int(256/224 * 224) = 256, center-crop 224, bicubic.
_EVAL = dict(input_size=(3, 224, 224), crop_pct=0.875, interpolation="bicubic", mean=IMAGENET_DEFAULT_MEAN,
             std=IMAGENET_DEFAULT_STD, classifier=("head",), paper=_PAPER, test_kwargs=dict(img_size=32))


@register_model(top1=81.5, num_params=27_776_794, **_EVAL)
def crossformer_t(**kwargs):
    return _create(dict(embed_dim=64, depths=(1, 1, 8, 6), num_heads=(2, 4, 8, 16), drop_path_rate=0.1), **kwargs)


@register_model(top1=82.5, num_params=30_657_394, **_EVAL)
def crossformer_s(**kwargs):
    return _create(dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.2), **kwargs)


@register_model(top1=83.4, num_params=51_971_554, **_EVAL)
def crossformer_b(**kwargs):
    return _create(dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.3), **kwargs)


@register_model(top1=84.0, num_params=91_971_184, **_EVAL)
def crossformer_l(**kwargs):
    return _create(dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), drop_path_rate=0.5),
                   **kwargs)


# Released weights: cheerss/CrossFormer README, Google Drive and Baidu Pan (a key per file);
# ImageNet-1k, 224 px. The file names are ours (Drive does not show them in the link; the
# README calls them crossformer-t.pth ...); sizes and sha256 are not published (None: the
# strict conversion is the check).

def _cheerss(name, drive_id, baidu, key):
    file = f"{name}.pth"
    sources = (drive_source(drive_id, file), baidu_source(f"https://pan.baidu.com/s/{baidu}", key, file))
    return (Weights("in1k", sources, trained_on="ImageNet-1k, 224 px"),)


register_weights({
    "crossformer_t": _cheerss("crossformer-t", "1YSkU9enn-ITyrbxLH13zNcBYvWSEidfq", "1M45YXZgVvp6Ew9DO8UhdlA", "nkju"),
    "crossformer_s": _cheerss("crossformer-s", "1RAkigsgr33va0RZ85S2Shs2BhXYcS6U8", "1Xf4MXfb_soCnJFBeNDmoQQ", "fgqj"),
    "crossformer_b": _cheerss("crossformer-b", "1bK8biVCi17nz_nkt7rBfio_kywUpllSU", "1f5dH__UGDXb-HoOPHT5p0A", "7md9"),
    "crossformer_l": _cheerss("crossformer-l", "1zRWByVW_KIZ87NgaBkDIm60DAsGJErdG", "1YJLeHy_cxLBrZLklQBCA_A", "cc89"),
})
