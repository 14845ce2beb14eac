"""Wave-ViT: Unifying Wavelet and Transformers for Visual Representation Learning.

Ting Yao, Yingwei Pan, Yehao Li, Chong-Wah Ngo, Tao Mei. ECCV 2022.
arXiv: https://arxiv.org/abs/2207.04978
Official code: https://github.com/YehLi/ImageNetModel (``classification/wavevit.py``).

A four-stage pyramid: a convolutional stem (stride 4), then stages whose
blocks use *wavelet attention* (stages 1-2: keys/values from a Haar DWT of a
channel-reduced map; the IDWT of the filtered sub-bands is concatenated to
the attention output before the projection) or standard attention (stages
3-4), each followed by a PVTv2 FFN with a depthwise convolution. A
class-attention block (``post_network``) pools the tokens into a class token.

Token labeling: the released ImageNet models carry an auxiliary head on every
token; their prediction is ``head(cls) + 0.5 * max over tokens of
aux_head(tokens)`` (official ``WaveViT.forward`` in eval mode). It is on by
default (``token_label=True``) so that official weights reproduce the paper;
``token_label=False`` drops it (e.g. for CIFAR training).

Parameter names are the official ones. One deliberate layout difference: the
DWT's sub-bands are kept in *interleaved* channel order (``[ll, lh, hl, hh]``
of channel 0, then of channel 1, ...), which one grouped convolution produces
directly; the official blocked order (``[all ll | all lh | all hl | all hh]``)
costs a channel gather in the forward and backward passes of both the DWT
and the IDWT (``scripts/benchmark_wavelets.py``). The weights of the layers
around the transform (``attn.filter``, and ``attn.kv_embed`` or ``attn.kv``)
therefore store those channels in interleaved order, and
:func:`checkpoint_filter_fn` permutes official checkpoints accordingly.

File layout: the attention layers (``StdAttention``, ``WaveAttention``,
``WaveClassAttention``, all through the shared kernel :func:`paddle_vits.layers.attend`),
FFN, blocks and stem, :class:`WaveViT` (the model contract, ``docs/model_contract.md``),
:func:`checkpoint_filter_fn` (called through ``WaveViT.checkpoint_filter``) and the
registered variants. The Haar DWT/IDWT layers are shared in :mod:`paddle_vits.layers.wavelets`.
"""
import numpy as np
import paddle
import paddle.nn as nn

from ..hub import Weights, baidu_source, drive_source, register_weights
from ..layers import DropPath, Mlp, attend, head_dim, init_weights_vit, zeros_
from ..layers.wavelets import DWT2D, IDWT2D, interleave_permutation
from ..constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from ..registry import register_model
from .contract import check_input, check_output_fmt, create_classifier, feature_take_indices, to_output_fmt

__all__ = ["WaveViT", "checkpoint_filter_fn"]


def _init_weights(m):
    """Official initialisation: trunc-normal Linear, He-normal (fan-out) Conv2D, unit LayerNorm."""
    init_weights_vit(m)
    if isinstance(m, nn.Conv2D):
        k = m._kernel_size
        fan_out = k[0] * k[1] * m._out_channels // m._groups
        m.weight.set_value(paddle.normal(0.0, float(np.sqrt(2.0 / fan_out)), m.weight.shape))
        if m.bias is not None:
            zeros_(m.bias)


class StdAttention(nn.Layer):
    """Multi-head self-attention with separate ``q`` and fused ``kv`` projections (official names).

    Shape:
        ``[B, N, C] -> [B, N, C]``.
    """

    def __init__(self, dim, num_heads, attn_drop=0.0):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim(dim, num_heads)
        self.scale = self.head_dim ** -0.5
        self.fused_attn = True
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, H, W):
        B, N, C = x.shape
        q = self.q(x).reshape([B, N, self.num_heads, self.head_dim])  # [B, N, C] -> [B, N, h, D]
        k, v = self.kv(x).reshape([B, N, 2, self.num_heads, self.head_dim]).unbind(2)  # [B, N, 2C] -> 2 x [B, N, h, D]
        x = attend(q, k, v, self.scale, self.attn_drop, self.fused_attn).reshape([B, N, C])  # [B, N, h, D] -> [B, N, C]
        return self.proj(x)


class WaveAttention(nn.Layer):
    """Wavelet attention (stages 1-2).

    Keys/values come from the Haar DWT of a 4x channel-reduced map (sub-bands
    filtered by a 3x3 conv, then strided by ``sr_ratio``): down-sampling
    without information loss. The IDWT of the filtered sub-bands is
    concatenated to the attention output before ``proj``.

    The sub-bands are in interleaved channel order (see the module docstring).

    Shape:
        ``[B, N, C] -> [B, N, C]`` with ``N = H * W``; ``H`` and ``W`` must be even.
    """

    def __init__(self, dim, num_heads, sr_ratio, attn_drop=0.0, wave="haar"):
        super().__init__()
        if dim % 4:
            raise ValueError(f"WaveAttention needs dim divisible by 4, got {dim}")
        self.num_heads = num_heads
        self.head_dim = head_dim(dim, num_heads)
        self.scale = self.head_dim ** -0.5
        self.sr_ratio = sr_ratio
        self.fused_attn = True
        self.dwt = DWT2D(wave, channel_order="interleaved")
        self.idwt = IDWT2D(wave, channel_order="interleaved")
        self.reduce = nn.Sequential(nn.Conv2D(dim, dim // 4, 1), nn.BatchNorm2D(dim // 4), nn.ReLU())
        self.filter = nn.Sequential(nn.Conv2D(dim, dim, 3, padding=1), nn.BatchNorm2D(dim), nn.ReLU())
        self.kv_embed = nn.Conv2D(dim, dim, sr_ratio, stride=sr_ratio) if sr_ratio > 1 else nn.Identity()
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * 2))
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim + dim // 4, dim)

    def forward(self, x, H, W):
        B, N, C = x.shape
        q = self.q(x).reshape([B, N, self.num_heads, self.head_dim])  # [B, N, C] -> [B, N, h, D]
        x = x.reshape([B, H, W, C]).transpose([0, 3, 1, 2])  # [B, N, C] -> [B, C, H, W]
        x_dwt = self.filter(self.dwt(self.reduce(x)))  # [B, C, H/2, W/2], interleaved sub-bands
        x_idwt = self.idwt(x_dwt)  # [B, C/4, H, W]
        x_idwt = x_idwt.flatten(2).transpose([0, 2, 1])  # [B, C/4, H, W] -> [B, N, C/4]
        kv = self.kv_embed(x_dwt).flatten(2).transpose([0, 2, 1])  # [B, C, h, w] -> [B, M, C]
        M = kv.shape[1]
        k, v = self.kv(kv).reshape([B, M, 2, self.num_heads, self.head_dim]).unbind(2)  # [B, M, 2C] -> 2 x [B, M, h, D]
        x = attend(q, k, v, self.scale, self.attn_drop, self.fused_attn).reshape([B, N, C])  # [B, N, h, D] -> [B, N, C]
        return self.proj(paddle.concat([x, x_idwt], axis=-1))


class PVT2FFN(nn.Layer):
    """PVTv2 feed-forward: ``fc1 -> 3x3 depthwise conv -> GELU -> fc2``.

    Shape:
        ``[B, N, C] -> [B, N, C]`` with ``N = H * W``.
    """

    def __init__(self, in_features, hidden_features):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.dwconv = DWConv(hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x, H, W):
        return self.fc2(self.act(self.dwconv(self.fc1(x), H, W)))


class DWConv(nn.Layer):
    """3x3 depthwise convolution on a token sequence."""

    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2D(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x, H, W):
        B, N, C = x.shape
        x = x.transpose([0, 2, 1]).reshape([B, C, H, W])  # [B, N, C] -> [B, C, H, W]
        return self.dwconv(x).flatten(2).transpose([0, 2, 1])  # [B, C, H, W] -> [B, N, C]


class Block(nn.Layer):
    """Pre-norm transformer block: wavelet or standard attention, then a PVTv2 FFN."""

    def __init__(self, dim, num_heads, mlp_ratio, drop_path=0.0, sr_ratio=1, block_type="wave", attn_drop=0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, epsilon=1e-6)
        self.norm2 = nn.LayerNorm(dim, epsilon=1e-6)
        if block_type == "std_att":
            self.attn = StdAttention(dim, num_heads, attn_drop=attn_drop)
        else:
            self.attn = WaveAttention(dim, num_heads, sr_ratio, attn_drop=attn_drop)
        self.mlp = PVT2FFN(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x, H, W):
        x = x + self.drop_path(self.attn(self.norm1(x), H, W))
        return x + self.drop_path(self.mlp(self.norm2(x), H, W))


class WaveClassAttention(StdAttention):
    """Class attention with official names ``q``/``kv``/``proj`` (CaiT's
    :class:`~paddle_vits.models.cait.ClassAttention` has separate ``k``/``v``):
    :class:`StdAttention`'s layers, with the class token as the only query.

    Shape:
        ``[B, N, C] -> [B, 1, C]`` (the updated class token, first token).
    """

    def forward(self, x):
        B, N, C = x.shape
        k, v = self.kv(x).reshape([B, N, 2, self.num_heads, self.head_dim]).unbind(2)  # [B, N, 2C] -> 2 x [B, N, h, D]
        q = self.q(x[:, :1]).reshape([B, 1, self.num_heads, self.head_dim])  # [B, 1, C] -> [B, 1, h, D]
        x = attend(q, k, v, self.scale, self.attn_drop, self.fused_attn).reshape([B, 1, C])  # [B, 1, h, D] -> [B, 1, C]
        return self.proj(x)


class ClassBlock(nn.Layer):
    """Class-attention block: updates only the class token (first token)."""

    def __init__(self, dim, num_heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, epsilon=1e-6)
        self.norm2 = nn.LayerNorm(dim, epsilon=1e-6)
        self.attn = WaveClassAttention(dim, num_heads)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        cls = x[:, :1]
        cls = cls + self.attn(self.norm1(x))
        cls = cls + self.mlp(self.norm2(cls))
        return paddle.concat([cls, x[:, 1:]], axis=1)


class Stem(nn.Layer):
    """Three convs (stride 2) then a stride-2 projection: ``[B, 3, H, W] -> [B, H/4 * W/4, C]``."""

    def __init__(self, in_channels, hidden_dim, out_channels):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2D(in_channels, hidden_dim, 7, stride=2, padding=3, bias_attr=False),
            nn.BatchNorm2D(hidden_dim),
            nn.ReLU(),
            nn.Conv2D(hidden_dim, hidden_dim, 3, padding=1, bias_attr=False),
            nn.BatchNorm2D(hidden_dim),
            nn.ReLU(),
            nn.Conv2D(hidden_dim, hidden_dim, 3, padding=1, bias_attr=False),
            nn.BatchNorm2D(hidden_dim),
            nn.ReLU(),
        )
        self.proj = nn.Conv2D(hidden_dim, out_channels, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, x):
        x = self.proj(self.conv(x))
        H, W = x.shape[2:]
        return self.norm(x.flatten(2).transpose([0, 2, 1])), H, W  # [B, C, H, W] -> [B, HW, C]


class DownSamples(nn.Layer):
    """Stride-2 3x3 conv between stages: ``[B, C, H, W] -> [B, H/2 * W/2, C']``."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.proj = nn.Conv2D(in_channels, out_channels, 3, stride=2, padding=1)
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, x):
        x = self.proj(x)
        H, W = x.shape[2:]
        return self.norm(x.flatten(2).transpose([0, 2, 1])), H, W  # [B, C, H, W] -> [B, HW, C]


def _stage_sizes(size):
    """Feature-map sizes of the four stages for an input side ``size``."""
    sizes = []
    s = (size + 1) // 2  # 7x7 conv, stride 2, padding 3
    for _ in range(4):
        s = (s + 1) // 2  # 3x3 conv, stride 2, padding 1
        sizes.append(s)
    return sizes


class WaveViT(nn.Layer):
    """Wave-ViT.

    Args:
        img_size: Input side the model is built for (checked; the model
            itself takes any size whose wavelet stages have even sides:
            multiples of 32 always work, e.g. 32, 64, 224).
        in_chans: Input channels.
        num_classes: Classes; ``0`` gives pooled features.
        stem_hidden_dim: Width of the stem's convolutions.
        embed_dims: Width of each stage.
        num_heads: Heads of each stage.
        mlp_ratios: FFN expansion of each stage.
        depths: Blocks per stage.
        sr_ratios: Key/value stride after the DWT in the wavelet stages.
        drop_path_rate: Stochastic depth, linearly increasing over blocks.
        attn_drop_rate: Dropout on attention probabilities (official: 0).
        token_label: Keep the token-labeling head ``aux_head``: the output
            becomes ``head(cls) + 0.5 * max_tokens aux_head(tokens)``.
        num_wave_stages: Stages using wavelet attention (official: 2).
    """

    def __init__(
        self,
        img_size=224,
        in_chans=3,
        num_classes=1000,
        stem_hidden_dim=32,
        embed_dims=(64, 128, 320, 448),
        num_heads=(2, 4, 10, 14),
        mlp_ratios=(8, 8, 4, 4),
        depths=(3, 4, 6, 3),
        sr_ratios=(4, 2, 1, 1),
        drop_path_rate=0.0,
        attn_drop_rate=0.0,
        token_label=True,
        num_wave_stages=2,
    ):
        super().__init__()
        self.num_stages = 4
        self.num_wave_stages = num_wave_stages
        self.num_classes = num_classes
        self.num_features = embed_dims[-1]
        self.token_label = token_label
        self.in_chans = in_chans
        self.img_size = (int(img_size), int(img_size))
        problem = self._size_problem(*self.img_size)
        if problem:
            raise ValueError(f"img_size={img_size} does not fit Wave-ViT: {problem}")
        dpr = np.linspace(0, drop_path_rate, sum(depths)).tolist()
        cur = 0
        for i in range(self.num_stages):
            if i == 0:
                patch_embed = Stem(in_chans, stem_hidden_dim, embed_dims[0])
            else:
                patch_embed = DownSamples(embed_dims[i - 1], embed_dims[i])
            block = nn.LayerList([
                Block(embed_dims[i], num_heads[i], mlp_ratios[i], drop_path=dpr[cur + j], sr_ratio=sr_ratios[i],
                      block_type="wave" if i < num_wave_stages else "std_att", attn_drop=attn_drop_rate)
                for j in range(depths[i])
            ])
            cur += depths[i]
            setattr(self, f"patch_embed{i + 1}", patch_embed)
            setattr(self, f"block{i + 1}", block)
            setattr(self, f"norm{i + 1}", nn.LayerNorm(embed_dims[i], epsilon=1e-6))
        self.post_network = nn.LayerList([ClassBlock(embed_dims[-1], num_heads[-1], mlp_ratios[-1])])
        self.feature_info = [dict(num_chs=embed_dims[i], reduction=2 ** (i + 2), module=f"block{i + 1}", index=i)
                             for i in range(self.num_stages)]
        self.head = create_classifier(self.num_features, num_classes, init=False)
        if token_label:
            self.aux_head = create_classifier(self.num_features, num_classes, init=False)
        self.apply(_init_weights)

    def _size_problem(self, H, W):
        """Why an ``H x W`` input cannot go through the wavelet stages, or None."""
        for side in (H, W):
            sizes = _stage_sizes(side)
            if any(s % 2 for s in sizes[: self.num_wave_stages]):
                return (f"an input of side {side} gives odd feature maps in the wavelet stages (stage sides "
                        f"{sizes[: self.num_wave_stages]}, which must be even); use an image size that is a "
                        "multiple of 32 (e.g. 32, 64, 224)")
        return None

    def set_export_mode(self, mode=True):
        """Run the DWT/IDWT as plain ops (``mode=True``) instead of PyLayers, for ``paddle.jit.save``
        and ONNX export. Numbers are identical; training works in both modes."""
        for layer in self.sublayers():
            if isinstance(layer, (DWT2D, IDWT2D)):
                layer.use_pylayer = not mode
        return self

    def no_weight_decay(self):
        return set()

    def get_classifier(self):
        """The class-token head (the token-labeling ``aux_head``, if any, is reset alongside it)."""
        return self.head

    def reset_classifier(self, num_classes):
        """Replace ``head`` (and ``aux_head``) by freshly initialised ones with ``num_classes`` outputs."""
        self.head = create_classifier(self.num_features, num_classes)
        if self.token_label:
            self.aux_head = create_classifier(self.num_features, num_classes)
        self.num_classes = num_classes

    def checkpoint_filter(self, state_dict):
        """Official state dict -> this model's names and layout (:func:`checkpoint_filter_fn`)."""
        return checkpoint_filter_fn(state_dict, self)

    def forward_features(self, x):
        """All tokens after the post network and the final norm: ``[B, 1 + N4, C]`` (class token first)."""
        check_input(self, x, self._size_problem)
        B = x.shape[0]
        for i in range(self.num_stages):
            x, H, W = getattr(self, f"patch_embed{i + 1}")(x)
            for blk in getattr(self, f"block{i + 1}"):
                x = blk(x, H, W)
            if i != self.num_stages - 1:
                x = getattr(self, f"norm{i + 1}")(x)
                x = x.reshape([B, H, W, -1]).transpose([0, 3, 1, 2])  # [B, N, C] -> [B, C, H, W]
        cls = x.mean(axis=1, keepdim=True)
        x = paddle.concat([cls, x], axis=1)  # [B, 1 + N, C]
        for blk in self.post_network:
            x = blk(x)
        return getattr(self, f"norm{self.num_stages}")(x)

    def forward_intermediates(self, x, indices=None, norm=False, output_fmt="NCHW", intermediates_only=False):
        """Stage outputs at strides 4/8/16/32.

        Args:
            x: Images ``[B, C, H, W]``, sides multiples of 32.
            indices: Stages to return: None (all four), an int n (the last n) or indices.
            norm: Pass each output through its stage's ``norm{i}`` (``epsilon=1e-6``), as the
                official detection/segmentation backbone (YehLi/ImageNetModel
                ``object_detection/wavevit.py``) does; otherwise the blocks' outputs.
            output_fmt: ``"NCHW"`` maps ``[B, C_i, H/s_i, W/s_i]`` or ``"NLC"`` tokens.
            intermediates_only: Return only the list (and stop after the last stage asked for).

        Returns:
            list of tensors, or ``(forward_features(x), list)``.
        """
        check_output_fmt(output_fmt)
        take, last = feature_take_indices(len(self.feature_info), indices)
        check_input(self, x, self._size_problem)
        B = x.shape[0]
        outs = []
        for i in range(self.num_stages):
            if intermediates_only and i > last:
                break
            x, H, W = getattr(self, f"patch_embed{i + 1}")(x)
            for blk in getattr(self, f"block{i + 1}"):
                x = blk(x, H, W)
            stage_norm = getattr(self, f"norm{i + 1}")
            if i in take:
                outs.append(to_output_fmt(stage_norm(x) if norm else x, (H, W), output_fmt))
            if i != self.num_stages - 1:
                x = stage_norm(x).reshape([B, H, W, -1]).transpose([0, 3, 1, 2])  # [B, N, C] -> [B, C, H, W]
        if intermediates_only:
            return outs
        cls = x.mean(axis=1, keepdim=True)
        x = paddle.concat([cls, x], axis=1)  # [B, 1 + N, C]
        for blk in self.post_network:
            x = blk(x)
        return getattr(self, f"norm{self.num_stages}")(x), outs

    def prune_intermediate_layers(self, indices=None, prune_norm=False, prune_head=True):
        """Drop what the stages ``indices`` do not need (always the class-token ``post_network``);
        returns ``(kept indices, dropped layer names)``."""
        take, last = feature_take_indices(len(self.feature_info), indices)
        dropped = ["post_network"]
        self.post_network = nn.LayerList()
        for i in range(last + 1, self.num_stages):
            for name in (f"patch_embed{i + 1}", f"block{i + 1}", f"norm{i + 1}"):
                setattr(self, name, nn.Identity())
                dropped.append(name)
        self.num_stages = last + 1
        if prune_head:
            self.reset_classifier(0)
            dropped += ["head", "aux_head"] if self.token_label else ["head"]
        return take, dropped

    def forward_head(self, x, pre_logits=False):
        """Class logits from :meth:`forward_features`' tokens; with the token-labeling head,
        ``head(cls) + 0.5 * max over tokens of aux_head(tokens)`` (official inference output)."""
        cls = x[:, 0]
        if pre_logits:
            return cls
        out = self.head(cls)
        if self.token_label and self.num_classes > 0:
            out = out + 0.5 * self.aux_head(x[:, 1:]).max(axis=1)
        return out

    def forward_token_label(self, x):
        """``(cls_logits [B, K], aux_logits [B, N, K])`` for token-labeling training (no MixToken)."""
        if not self.token_label:
            raise ValueError("this model has no token-labeling head: build it with token_label=True")
        x = self.forward_features(x)
        return self.head(x[:, 0]), self.aux_head(x[:, 1:])

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def _fold_interleave(sd, prefix, dim, sr_ratio):
    """Permute one WaveAttention's official (blocked sub-band) weights to our interleaved order.

    The sub-bands leave the DWT, go through ``filter`` (conv + BN: output and
    input channels) and into ``kv_embed`` (input channels) or, without it,
    straight into ``kv`` (LayerNorm channels and the Linear's inputs).
    """
    perm = interleave_permutation(dim // 4)
    axes = {"filter.0.weight": (0, 1), "filter.0.bias": (0,)}
    axes.update({f"filter.1.{leaf}": (0,) for leaf in ("weight", "bias", "running_mean", "running_var")})
    if sr_ratio > 1:
        axes["kv_embed.weight"] = (1,)
    else:
        axes.update({"kv.0.weight": (0,), "kv.0.bias": (0,), "kv.1.weight": (1,)})  # torch Linear: [out, in]
    for leaf, dims in axes.items():
        key = prefix + leaf
        if key in sd:
            for axis in dims:
                sd[key] = np.take(sd[key], perm, axis=axis)


def checkpoint_filter_fn(state_dict, model):
    """Official Wave-ViT checkpoint -> our names and layout (before the generic Linear/BatchNorm step).

    Drops the fixed DWT/IDWT filter buffers (``*.dwt.w_ll`` ... and
    ``*.idwt.filters``, float16 in the official files; the layers recompute
    them from PyWavelets), permutes the sub-band channels of each wavelet
    attention from the official blocked order to our interleaved one, and,
    for a model built with ``token_label=False``, drops ``aux_head``.
    """
    sd = {k: v for k, v in state_dict.items() if k.split(".")[-2:-1] not in (["dwt"], ["idwt"])}
    if not getattr(model, "token_label", True):
        sd = {k: v for k, v in sd.items() if not k.startswith("aux_head.")}
    for name, layer in model.named_sublayers():
        if not isinstance(layer, WaveAttention):
            continue
        dim, key = layer.q.weight.shape[0], f"{name}.filter.0.weight"
        # Another config's checkpoint is left as is: the strict check then names the mismatch.
        if key in sd and tuple(sd[key].shape[:2]) == (dim, dim):
            _fold_interleave(sd, f"{name}.", dim, layer.sr_ratio)
    return sd


def _create(cfg, **kwargs):
    return WaveViT(**{**cfg, **kwargs})


_PAPER = "Yao et al., Wave-ViT, ECCV 2022 (arXiv:2207.04978)"
_EVAL = dict(input_size=(3, 224, 224), crop_pct=0.96, interpolation="bicubic",
             mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD, classifier=("head", "aux_head"),
             paper=_PAPER, test_kwargs=dict(img_size=64))


_S = dict(stem_hidden_dim=32, embed_dims=(64, 128, 320, 448), num_heads=(2, 4, 10, 14),
          mlp_ratios=(8, 8, 4, 4), depths=(3, 4, 6, 3), sr_ratios=(4, 2, 1, 1))
_B = dict(stem_hidden_dim=64, embed_dims=(64, 128, 320, 512), num_heads=(2, 4, 10, 16),
          mlp_ratios=(8, 8, 4, 4), depths=(3, 4, 12, 3), sr_ratios=(4, 2, 1, 1))
_L = dict(stem_hidden_dim=64, embed_dims=(96, 192, 384, 512), num_heads=(3, 6, 12, 16),
          mlp_ratios=(8, 8, 4, 4), depths=(3, 6, 18, 3), sr_ratios=(4, 2, 1, 1))
# The 384 px releases: the same architectures (no position embeddings, so the same parameters),
# fine-tuned and evaluated at 384 px with the official eval transform (resize int(384 / 0.96)
# = 400, center-crop 384, bicubic).
_EVAL_384 = dict(_EVAL, input_size=(3, 384, 384))


@register_model(top1=83.9, num_params=22_690_176, **_EVAL)
def wavevit_s(**kwargs):
    return _create(_S, **kwargs)


@register_model(top1=84.8, num_params=33_516_128, **_EVAL)
def wavevit_b(**kwargs):
    return _create(_B, **kwargs)


@register_model(top1=85.5, num_params=57_474_504, **_EVAL)
def wavevit_l(**kwargs):
    return _create(_L, **kwargs)


@register_model(top1=85.0, num_params=22_690_176, **_EVAL_384)
def wavevit_s_384(**kwargs):
    return _create(dict(_S, img_size=384), **kwargs)


@register_model(top1=85.6, num_params=33_516_128, **_EVAL_384)
def wavevit_b_384(**kwargs):
    return _create(dict(_B, img_size=384), **kwargs)


@register_model(top1=86.3, num_params=57_474_504, **_EVAL_384)
def wavevit_l_384(**kwargs):
    return _create(dict(_L, img_size=384), **kwargs)


# Released weights: YehLi/ImageNetModel classification/README.md, Google Drive and Baidu Pan
# (access code "nets"); ImageNet-1k with token labeling. The file names are ours (Drive does
# not show them in the link); sizes and sha256 are not published (None: the strict conversion
# is the check).

def _yehli(name, drive_id, baidu, size=224):
    file = f"{name}.pth.tar"
    sources = (drive_source(drive_id, file), baidu_source(f"https://pan.baidu.com/s/{baidu}", "nets", file))
    return (Weights("in1k", sources, trained_on=f"ImageNet-1k, token labeling, {size} px"),)


register_weights({
    "wavevit_s": _yehli("wavevit_s", "1DLdqLRPiARBXAc9DQQtamVZnFtMWBurd", "1JfNgmBE5ieAGsBermjpSzQ"),
    "wavevit_b": _yehli("wavevit_b", "1g-_eP_ty1JmEsiRqmErwFgf4XTo0ML61", "16DLjX7dKaZuULn7OrxVqyw"),
    "wavevit_l": _yehli("wavevit_l", "11MitPmWgg3GB02ndLT4rFO3xc6n3Jmyh", "1L-ZQ1eiv4sdefvdi7Z4-bw"),
    "wavevit_s_384": _yehli("wavevit_s_384", "1aR_5zZ-iVDbUyEEMkvYNV7Nj78C7dJ6G", "1RLxSDwVG1wQs29s0x3_6QA", 384),
    "wavevit_b_384": _yehli("wavevit_b_384", "1mrtGVPIJ8-F9SDofuIwBccXa-xA_E7s1", "1KYINKOLO4Bf9kabDMjN-TA", 384),
    "wavevit_l_384": _yehli("wavevit_l_384", "1Rda4zS2JG0MlcQqrtxKzSWh2149_e5wV", "1BdQBbdUeeAo8CojNifURGw", 384),
})
