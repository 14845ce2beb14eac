"""Attention layers shared across families.

Every layer has two numerically equivalent paths: a fast one through
``paddle.nn.functional.scaled_dot_product_attention`` (where the layer's maths
allows it) and an explicit reference path ``softmax(q k^T * scale) v`` that
passes the attention probabilities through ``self.attn_drop``. Set
``layer.fused_attn = False`` to use the reference path; a forward hook on
``attn_drop`` then sees the attention maps (used by ``paddle_vits.explain``).
"""
import paddle.nn as nn
import paddle.nn.functional as F

from ..utils import compat


class Attention(nn.Layer):
    """Multi-head self-attention (ViT; timm's ``qkv``/``proj`` names).

    Args:
        dim: Token width.
        num_heads: Number of heads; must divide ``dim``.
        qkv_bias: Bias in the fused ``qkv`` projection.
        qk_scale: Override of the ``head_dim ** -0.5`` scale.
        attn_drop: Dropout on attention probabilities.
        proj_drop: Dropout after the output projection.

    Shape:
        ``[B, N, C] -> [B, N, C]``.
    """

    def __init__(self, dim, num_heads=8, qkv_bias=False, qk_scale=None, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = qk_scale or self.head_dim ** -0.5
        self.fused_attn = True
        self.qkv = nn.Linear(dim, dim * 3, bias_attr=None if qkv_bias else False)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape([B, N, 3, self.num_heads, self.head_dim])  # [B, N, 3C] -> [B, N, 3, H, D]
        if self.fused_attn:
            q, k, v = qkv.unbind(2)  # each [B, N, H, D]
            x = compat.scaled_dot_product_attention(
                q * (self.scale * self.head_dim ** 0.5), k, v,
                dropout_p=self.attn_drop.p if self.training else 0.0, training=self.training,
            )  # [B, N, H, D]
        else:
            q, k, v = qkv.transpose([2, 0, 3, 1, 4]).unbind(0)  # [B, N, 3, H, D] -> 3 x [B, H, N, D]
            attn = (q * self.scale) @ k.transpose([0, 1, 3, 2])  # [B, H, N, N]
            attn = self.attn_drop(F.softmax(attn, axis=-1))
            x = (attn @ v).transpose([0, 2, 1, 3])  # [B, H, N, D] -> [B, N, H, D]
        x = x.reshape([B, N, C])  # [B, N, H, D] -> [B, N, C]
        return self.proj_drop(self.proj(x))


class TalkingHeadAttention(nn.Layer):
    """Talking-heads self-attention (Shazeer et al., 2020) as used by CaiT.

    Attention logits are mixed across heads by ``proj_l`` before the softmax
    and the probabilities by ``proj_w`` after it, so there is no fused path.

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
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
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
        attn = self.proj_l(attn.transpose([0, 2, 3, 1])).transpose([0, 3, 1, 2])  # mix heads: [B, N, N, H] <-> [B, H, N, N]
        attn = F.softmax(attn, axis=-1)
        attn = self.proj_w(attn.transpose([0, 2, 3, 1])).transpose([0, 3, 1, 2])  # mix heads: [B, N, N, H] <-> [B, H, N, N]
        attn = self.attn_drop(attn)
        x = (attn @ v).transpose([0, 2, 1, 3]).reshape([B, N, C])  # [B, H, N, D] -> [B, N, H, D] -> [B, N, C]
        return self.proj_drop(self.proj(x))


class ClassAttention(nn.Layer):
    """Attention with a single query: the class token (first token) over all tokens.

    CaiT's class-attention (``q``/``k``/``v``/``proj`` names). The cost is linear
    in the number of tokens. Returns only the updated class token.

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

    _qkv_names = ("q", "k", "v")

    def __init__(self, dim, num_heads=8, qkv_bias=False, qk_scale=None, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = qk_scale or self.head_dim ** -0.5
        self.fused_attn = True
        for name in self._qkv_names:
            setattr(self, name, nn.Linear(dim, dim, bias_attr=None if qkv_bias else False))
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x):
        B, N, C = x.shape
        q_proj, k_proj, v_proj = (getattr(self, n) for n in self._qkv_names)
        q = q_proj(x[:, :1]).reshape([B, 1, self.num_heads, self.head_dim])  # [B, 1, C] -> [B, 1, H, D]
        k = k_proj(x).reshape([B, N, self.num_heads, self.head_dim])  # [B, N, C] -> [B, N, H, D]
        v = v_proj(x).reshape([B, N, self.num_heads, self.head_dim])  # [B, N, C] -> [B, N, H, D]
        if self.fused_attn:
            x_cls = compat.scaled_dot_product_attention(
                q * (self.scale * self.head_dim ** 0.5), k, v,
                dropout_p=self.attn_drop.p if self.training else 0.0, training=self.training,
            )  # [B, 1, H, D]
        else:
            q, k, v = (t.transpose([0, 2, 1, 3]) for t in (q, k, v))  # [B, L, H, D] -> [B, H, L, D]
            attn = (q * self.scale) @ k.transpose([0, 1, 3, 2])  # [B, H, 1, N]
            attn = self.attn_drop(F.softmax(attn, axis=-1))
            x_cls = (attn @ v).transpose([0, 2, 1, 3])  # [B, H, 1, D] -> [B, 1, H, D]
        x_cls = x_cls.reshape([B, 1, C])  # [B, 1, H, D] -> [B, 1, C]
        return self.proj_drop(self.proj(x_cls))


class CrossAttention(ClassAttention):
    """CrossViT's cross-attention: one branch's class token queries the other branch's tokens.

    The input is the other branch's tokens with this branch's (projected)
    class token in front; only that class token is used as the query, so the
    cost is linear in the number of tokens. Same maths as
    :class:`ClassAttention`, with the official ``wq``/``wk``/``wv`` names.

    Shape:
        ``[B, N, C] -> [B, 1, C]``.
    """

    _qkv_names = ("wq", "wk", "wv")

