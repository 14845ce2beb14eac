"""The attention kernel every family uses, and ViT multi-head self-attention.

One kernel, :func:`attend`, computes ``softmax(q k^T * scale + mask) v`` for
every attention layer in ``paddle_vits`` (CaiT's talking-heads attention mixes
heads between the logits and the softmax, which no kernel expresses; it writes
the same maths out and keeps the same contract). It is the one place where
attention runs, so it is also the one place performance work touches.

Contract of the kernel and of the layers around it:

* **Layout.** ``q`` is ``[B, Nq, heads, D]``, ``k`` and ``v`` ``[B, Nk, heads,
  D]``: the layout a fused projection yields after one reshape, and the one
  Paddle's SDPA takes, so the fused path needs no transposes. The output is
  ``[B, Nq, heads, D]``.
* **Two paths, same numbers.** ``fused=True`` calls
  ``paddle.nn.functional.scaled_dot_product_attention`` (SDPA; through
  :func:`paddle_vits.utils.compat.scaled_dot_product_attention`, which writes
  the same maths out on Paddle 2.6, whose CPU build has no SDPA kernel);
  ``fused=False`` writes the maths out. They agree to float rounding.
  On CPU in eager mode ``fused=True`` also writes the maths out unless
  :data:`SDPA_ON_CPU` is set: Paddle's CPU SDPA is slower than the explicit
  path (``docs/performance.md``: CaiT-XXS shapes, batch 16, 2 threads, 32.6 ms
  against 24.0 ms per layer). On GPU, and in programs traced for export,
  ``fused=True`` runs SDPA (flash attention where dtype and shapes allow).
* **The scale.** Paddle's SDPA has no ``scale`` argument: it always scales
  the logits by ``head_dim ** -0.5``. A layer with another scale (``qk_scale``)
  gets it by passing ``q * (scale * head_dim ** 0.5)``: SDPA's own factor
  then cancels, leaving ``q k^T * scale``. With the default scale the factor
  is exactly 1.
* **Masks.** ``mask`` is an additive bias broadcast against the
  ``[B, heads, Nq, Nk]`` logits (CrossFormer's learned position bias plus its
  padding mask). SDPA kernels need not back-propagate into an additive mask,
  so a mask that needs a gradient always takes the explicit path.
* **Dropout and the explanation hook.** On the explicit path the attention
  probabilities ``[B, heads, Nq, Nk]`` pass through ``attn_drop`` (an
  ``nn.Dropout``), and only there. Every attention layer therefore has an
  ``attn_drop`` sublayer and a ``fused_attn`` flag it passes as ``fused``:
  :func:`paddle_vits.explain.capture_attention` sets ``fused_attn = False``
  and reads the maps with a forward post-hook on ``attn_drop``, so no model
  code knows about explanations. On the fused path SDPA applies the same
  dropout rate itself (in training mode only).
* **Heads.** :func:`head_dim` is the one check that ``num_heads`` divides the
  width.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..utils import compat


SDPA_ON_CPU = False
"""Run SDPA for ``fused=True`` on CPU in eager mode too (default False: the explicit path is faster there)."""


def _use_sdpa(q):
    """SDPA on GPU and in static programs; on CPU in eager mode only with :data:`SDPA_ON_CPU`."""
    return SDPA_ON_CPU or not paddle.in_dynamic_mode() or not q.place.is_cpu_place()


def head_dim(dim, num_heads):
    """Width of one head, ``dim // num_heads``; a ``ValueError`` when the heads do not divide ``dim``."""
    if num_heads <= 0 or dim % num_heads:
        raise ValueError(f"the attention width {dim} is not divisible by num_heads={num_heads}; "
                         f"use a num_heads that divides {dim}")
    return dim // num_heads


def attend(q, k, v, scale, attn_drop, fused=True, mask=None):
    """``softmax(q k^T * scale + mask) v``, the attention kernel (contract: module docstring).

    Args:
        q: Queries ``[B, Nq, heads, D]``.
        k: Keys ``[B, Nk, heads, D]``.
        v: Values ``[B, Nk, heads, D]``.
        scale: Logit scale (usually ``D ** -0.5``).
        attn_drop: The layer's ``nn.Dropout`` on the probabilities; its rate and
            train/eval mode are used on both paths, and the explicit path calls
            it (the explanation hook).
        fused: Use SDPA (the layer's ``fused_attn``); ignored when ``mask``
            needs a gradient, and on CPU unless :data:`SDPA_ON_CPU`.
        mask: Optional additive bias, broadcastable to ``[B, heads, Nq, Nk]``.

    Returns:
        ``[B, Nq, heads, D]``.
    """
    if fused and (mask is None or mask.stop_gradient) and _use_sdpa(q):
        training = attn_drop.training
        return compat.scaled_dot_product_attention(
            q * (scale * q.shape[-1] ** 0.5), k, v, attn_mask=mask,  # SDPA's own D ** -0.5 cancels
            dropout_p=attn_drop.p if training else 0.0, training=training,
        )
    q, k, v = (t.transpose([0, 2, 1, 3]) for t in (q, k, v))  # [B, N, H, D] -> [B, H, N, D]
    attn = (q * scale) @ k.transpose([0, 1, 3, 2])  # [B, H, Nq, Nk]
    if mask is not None:
        attn = attn + mask
    attn = attn_drop(F.softmax(attn, axis=-1))
    return (attn @ v).transpose([0, 2, 1, 3])  # [B, H, Nq, D] -> [B, Nq, H, D]


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
        self.num_heads = num_heads
        self.head_dim = head_dim(dim, num_heads)
        self.scale = qk_scale or self.head_dim ** -0.5
        self.fused_attn = True
        self.qkv = nn.Linear(dim, dim * 3, bias_attr=None if qkv_bias else False)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape([B, N, 3, self.num_heads, self.head_dim])  # [B, N, 3C] -> [B, N, 3, H, D]
        q, k, v = qkv.unbind(2)  # each [B, N, H, D]
        x = attend(q, k, v, self.scale, self.attn_drop, self.fused_attn)  # [B, N, H, D]
        x = x.reshape([B, N, C])  # [B, N, H, D] -> [B, N, C]
        return self.proj_drop(self.proj(x))
