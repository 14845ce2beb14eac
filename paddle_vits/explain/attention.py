"""Attention-based explanations, read from the models' own attention layers.

Every attention layer in ``paddle_vits`` has an explicit path (``fused_attn =
False``) that passes the attention probabilities through ``self.attn_drop``.
:func:`capture_attention` switches that path on and records the output of
every ``attn_drop`` with a forward post-hook, so no model code is touched.
Each family then turns its maps into a token-grid importance map:

* **CaiT, Wave-ViT** (``class_attention``): the class token is the only query
  of the class-attention layers (CaiT's class-attention blocks, Wave-ViT's
  post-stage class block), so its attention over the patch tokens (mean over
  heads and over those layers) is directly what the classifier pools.
* **CrossViT** (``rollout``): attention rollout (Abnar & Zuidema, 2020) per
  branch: the head-averaged self-attention of each of the branch's layers,
  mixed with the identity for the residual (``0.5 A + 0.5 I``), multiplied
  through depth; the class-token row over the branch's patches. One map per
  branch (small and large patches).
* **CrossFormer** (``grad_attention``): there is no class token (the head
  average-pools the last stage), so the last stage's attention maps are
  weighted by the gradient of the class score (``relu(A * dA)``, Chefer et al.,
  2021) and the attention each token *receives* is summed inside its
  short/long-distance group and put back at the token's position.

Maps are returned per image on the token grid and bilinearly upsampled to the
image, min-max scaled to ``[0, 1]``.
"""
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import paddle
import paddle.nn.functional as F

from .image import _check_image, _info, to_batch

METHODS = {
    "cait": "class_attention",
    "wavevit": "class_attention",
    "crossvit": "rollout",
    "crossformer": "grad_attention",
}


@contextmanager
def capture_attention(model):
    """Record the attention probabilities of every attention layer of ``model``.

    Inside the context, layers with a ``fused_attn`` flag use their explicit
    path, and each forward appends ``(layer_name, probs)`` to the yielded list,
    where ``probs`` is the output of the layer's ``attn_drop`` (usually
    ``[B*, heads, queries, keys]``). Flags and hooks are restored on exit.
    """
    records, hooks, flags = [], [], []
    for name, layer in model.named_sublayers():
        drop = getattr(layer, "attn_drop", None)
        if not isinstance(drop, paddle.nn.Layer):
            continue
        if hasattr(layer, "fused_attn"):
            flags.append((layer, layer.fused_attn))
            layer.fused_attn = False
        hooks.append(drop.register_forward_post_hook(
            lambda _layer, _inputs, output, _name=name: records.append((_name, output))
        ))
    if not hooks:
        raise ValueError(f"{type(model).__name__} has no attention layer with an `attn_drop` sublayer to hook")
    try:
        yield records
    finally:
        for hook in hooks:
            hook.remove()
        for layer, flag in flags:
            layer.fused_attn = flag


def _grid(num_tokens, height, width):
    """Token grid ``(h, w)`` with ``h * w == num_tokens`` and the image's aspect ratio."""
    h = int(round(math.sqrt(num_tokens * height / width)))
    if h == 0 or num_tokens % h:
        raise ValueError(f"cannot arrange {num_tokens} tokens on a grid for a {height}x{width} image")
    return h, num_tokens // h


def class_attention(records, image_hw):
    """Class token's attention over patches, from the single-query (class-attention) layers.

    Args:
        records: ``(name, probs)`` from :func:`capture_attention`; layers whose
            maps have one query (``[B, heads, 1, 1 + N]``) are used.
        image_hw: ``(H, W)`` of the input, to lay the ``N`` patches out.

    Returns:
        dict: ``{"class_attention": [B, h, w]}``.
    """
    maps = [p for _, p in records if p.ndim == 4 and p.shape[2] == 1]
    if not maps:
        raise ValueError("the model ran no class-attention layer (a layer whose attention has a single query)")
    num_keys = maps[-1].shape[-1]
    maps = [p for p in maps if p.shape[-1] == num_keys]
    attn = paddle.stack([p.mean(axis=1)[:, 0, 1:] for p in maps]).mean(axis=0)  # L x [B, H, 1, 1+N] -> [B, N]
    h, w = _grid(num_keys - 1, *image_hw)
    return {"class_attention": attn.reshape([-1, h, w])}  # [B, N] -> [B, h, w]


def attention_rollout(maps):
    """Attention rollout of a stack of self-attention maps ``[B, heads, N, N]`` (first to last).

    Returns ``[B, N, N]``: how much each output token draws on each input token,
    counting the residual connections as ``0.5 A + 0.5 I``.
    """
    eye = paddle.eye(maps[0].shape[-1], dtype=maps[0].dtype)
    rollout = None
    for probs in maps:
        a = 0.5 * probs.mean(axis=1) + 0.5 * eye  # [B, H, N, N] -> [B, N, N]
        a = a / a.sum(axis=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    return rollout


_CROSSVIT_BRANCH = re.compile(r"blocks\.\d+\.blocks\.(\d+)\.\d+\.attn$")


def crossvit_rollout(records, image_hw):
    """Per-branch rollout for CrossViT: ``{"branch0": [B, h0, w0], "branch1": [B, h1, w1], ...}``.

    Only each branch's self-attention layers are rolled out (the fusion layers
    update the class token alone), and the class-token row is kept.
    """
    branches = {}
    for name, probs in records:
        match = _CROSSVIT_BRANCH.search(name)
        if match:
            branches.setdefault(int(match.group(1)), []).append(probs)
    if not branches:
        raise ValueError("no CrossViT branch self-attention found "
                         "(expected layers named blocks.<k>.blocks.<branch>.<d>.attn)")
    out = {}
    for branch in sorted(branches):
        rollout = attention_rollout(branches[branch])
        n = rollout.shape[-1] - 1
        h, w = _grid(n, *image_hw)
        out[f"branch{branch}"] = rollout[:, 0, 1:].reshape([-1, h, w])  # [B, N] -> [B, h, w]
    return out


@contextmanager
def _capture_group_tokens(model):
    """Record, for each attention layer inside a block with a ``norm1``, the layer's input
    (grouped tokens, ``[B * groups, N, C]``) and the block's ``norm1`` output (``[B, L, C]``)."""
    layers = dict(model.named_sublayers())
    inputs, normed, hooks = {}, {}, []
    for name, layer in layers.items():
        if not isinstance(getattr(layer, "attn_drop", None), paddle.nn.Layer) or "." not in name:
            continue
        norm = getattr(layers.get(name.rsplit(".", 1)[0]), "norm1", None)
        if not isinstance(norm, paddle.nn.Layer):
            continue
        hooks.append(layer.register_forward_pre_hook(
            lambda _layer, args, _name=name: inputs.__setitem__(_name, args[0])))
        hooks.append(norm.register_forward_post_hook(
            lambda _layer, _args, out, _name=name: normed.__setitem__(_name, out)))
    try:
        yield inputs, normed
    finally:
        for hook in hooks:
            hook.remove()


def _token_positions(grouped, tokens):
    """Where each grouped token sits in the block's token sequence.

    ``grouped`` ``[B * G, N, C]`` holds the rows of ``tokens`` ``[B, L, C]``
    rearranged into ``G`` groups per image (plus padding). Grouping only moves
    rows, so each grouped row is an exact copy of one token row and is found
    by its bytes: any grouping scheme (SDA windows, LDA strides, padding) is
    recovered without knowing it. Returns ``[G, N]`` indices into ``L`` for the
    first image, ``-1`` for padding. The tokens must be distinct (use an input
    of random noise).
    """
    grouped, tokens = grouped.numpy(), tokens.numpy()
    groups = grouped.shape[0] // tokens.shape[0]
    index = {row.tobytes(): j for j, row in enumerate(tokens[0])}
    if len(index) != tokens.shape[1]:
        raise ValueError("tokens are not distinct: read the grouping from an input of random noise")
    rows = grouped[:groups].reshape(-1, grouped.shape[-1])  # [G * N, C]
    found = np.array([index.get(row.tobytes(), -1) for row in rows], dtype=np.int64)
    return found.reshape(groups, -1)  # [G * N] -> [G, N]


def _group_layouts(model, image_hw):
    """``{attention layer name: (positions [G, N], L)}`` for the grouped-attention layers.

    Grouping depends only on the input size, so it is read once from a forward
    pass on random noise (every token distinct, so matching by value is exact)
    and reused for any image of that size.
    """
    probe = np.random.default_rng(0).standard_normal((1, 3) + tuple(image_hw)).astype("float32")
    was_training = model.training
    model.eval()
    try:
        with capture_attention(model), _capture_group_tokens(model) as (inputs, normed), paddle.no_grad():
            model(paddle.to_tensor(probe))
    finally:
        if was_training:
            model.train()
    return {name: (_token_positions(inputs[name], normed[name]), normed[name].shape[1])
            for name in inputs if name in normed and normed[name].ndim == 3}


def token_groups(model, image_size):
    """Which tokens attend to each other, per grouped-attention layer, read from the model itself.

    For every attention layer inside a block with a ``norm1`` (CrossFormer's
    SDA/LDA blocks, for instance), recovers how the block grouped its tokens
    by running the model once (see :func:`_token_positions`).

    Args:
        model: The model.
        image_size: Input size, an int or ``(H, W)``.

    Returns:
        dict: ``{layer_name: [h, w] int array}``, each token's group id (``-1``
        for tokens in no group), in forward order.
    """
    image_hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    out = {}
    for name, (positions, length) in _group_layouts(model, image_hw).items():
        ids = np.full(length, -1, dtype=np.int64)
        for g, row in enumerate(positions):
            ids[row[row >= 0]] = g
        out[name] = ids.reshape(_grid(length, *image_hw))  # [L] -> [h, w]
    return out


def _grad_attention(model, records, logits, label, image_hw):
    """Gradient-weighted attention received per token in the last (coarsest) stage.

    For each attention layer of the stage with the fewest tokens:
    ``relu(A * dscore/dA)``, averaged over heads, summed over queries: the
    attention each key token receives, weighted by how much it moves the class
    score. Values are put back at the tokens' positions (recovered by
    :func:`_group_layouts`) and summed over the stage's layers.
    """
    layouts = _group_layouts(model, image_hw)
    probs = {}
    for name, p in records:
        probs.setdefault(name, p)
    names = [n for n in probs if n in layouts]
    if not names:
        raise ValueError("no grouped attention layer (an attention layer in a block with `norm1`) was run")
    length = min(layouts[n][1] for n in names)
    names = [n for n in names if layouts[n][1] == length]
    batch = logits.shape[0]
    labels = logits.argmax(axis=-1) if label is None else paddle.to_tensor(
        np.broadcast_to(np.asarray(label, dtype=np.int64), [batch]))
    score = paddle.take_along_axis(logits, labels.reshape([-1, 1]), axis=1).sum()  # [B] -> [B, 1] -> scalar
    grads = paddle.grad(score, [probs[n] for n in names])
    heat = np.zeros([batch, length], dtype=np.float64)
    for name, grad in zip(names, grads):
        received = F.relu(probs[name] * grad).mean(axis=1).sum(axis=1).numpy()  # [B*G, h, N, N] -> [B*G, N]
        positions = layouts[name][0]  # [G, N]
        groups = positions.shape[0]
        if received.shape != (batch * groups, positions.shape[1]):
            raise ValueError(f"{name}: attention of shape {list(probs[name].shape)} does not match its grouping")
        for row in range(received.shape[0]):
            pos = positions[row % groups]
            keep = pos >= 0
            np.add.at(heat[row // groups], pos[keep], received[row][keep])
    h, w = _grid(length, *image_hw)
    return {"grad_attention": paddle.to_tensor(heat.astype(np.float32)).reshape([batch, h, w])}  # [B, L] -> [B, h, w]


def _upsample(maps, image_hw):
    """``[B, h, w]`` token maps -> ``[B, H, W]`` numpy, bilinear, min-max scaled per image."""
    maps = F.interpolate(maps.unsqueeze(1).astype("float32"), size=list(image_hw), mode="bilinear",
                         align_corners=False)[:, 0]  # [B, h, w] -> [B, 1, H, W] -> [B, H, W]
    maps = maps.numpy()
    lo = maps.min(axis=(1, 2), keepdims=True)
    hi = maps.max(axis=(1, 2), keepdims=True)
    return (maps - lo) / np.maximum(hi - lo, 1e-12)


@dataclass
class AttentionExplanation:
    """Result of :func:`explain_attention`.

    Attributes:
        image: The explained image, uint8 ``[H, W, 3]``.
        label: Class the maps refer to (only gradient-weighted maps depend on it).
        method: ``"class_attention"``, ``"rollout"`` or ``"grad_attention"``.
        maps: ``{name: [H, W]}`` maps in ``[0, 1]``, upsampled to the image.
        token_maps: ``{name: [h, w]}`` the same maps on the token grid, unscaled.
        probs: Class probabilities of the image.
    """

    image: np.ndarray
    label: int
    method: str
    maps: dict = field(default_factory=dict)
    token_maps: dict = field(default_factory=dict)
    probs: np.ndarray = None


def attention_maps(model, x, label=None, method=None):
    """Attention maps of a batch.

    Args:
        model: A model built by :func:`paddle_vits.create_model` (its
            ``model_info.family`` picks the method), or any model if
            ``method`` is given.
        x: Normalised input ``[B, 3, H, W]``.
        label: Class index (int or one per image) for ``grad_attention``;
            default: the predicted class.
        method: Override: ``"class_attention"``, ``"rollout"`` or
            ``"grad_attention"``.

    Returns:
        tuple: ``(token_maps, logits)`` with ``token_maps`` a dict
        ``{name: paddle.Tensor [B, h, w]}`` and ``logits`` ``[B, K]``.
    """
    if method is None:
        family = _info(model).family
        if family not in METHODS:
            raise ValueError(f"no attention explanation for family {family!r}; supported: {sorted(METHODS)}")
        method = METHODS[family]
    if method not in set(METHODS.values()):
        raise ValueError(f"unknown method {method!r}; use one of {sorted(set(METHODS.values()))}")
    image_hw = tuple(x.shape[-2:])
    was_training = model.training
    model.eval()
    try:
        if method == "grad_attention":
            with capture_attention(model) as records:
                logits = model(x)
            return _grad_attention(model, records, logits, label, image_hw), logits.detach()
        with capture_attention(model) as records:
            with paddle.no_grad():
                logits = model(x)
            if method == "class_attention":
                return class_attention(records, image_hw), logits
            return crossvit_rollout(records, image_hw), logits
    finally:
        if was_training:
            model.train()


def explain_attention(model, image, label=None, method=None, mean=None, std=None):
    """Attention maps of one uint8 image ``[H, W, 3]`` (the model's eval crop).

    Args:
        model: A model built by :func:`paddle_vits.create_model` (its family
            picks the method, see ``METHODS``), or any model with ``method``,
            ``mean`` and ``std`` given.
        image: uint8 ``[H, W, 3]`` at the model's input size (see
            :func:`paddle_vits.explain.load_image`).
        label: Class for ``grad_attention`` (the other methods do not depend
            on it); default: the predicted class.
        method: ``"class_attention"``, ``"rollout"`` or ``"grad_attention"``
            instead of the family's default.
        mean: Normalisation mean override (RGB, 0-1 scale).
        std: Normalisation std override.

    Returns:
        AttentionExplanation
    """
    image = _check_image(image)
    if mean is None or std is None:
        info = _info(model)
        mean, std = mean or info.mean, std or info.std
    x = to_batch(image[None], mean, std)
    token_maps, logits = attention_maps(model, x, label=label, method=method)
    probs = F.softmax(logits, axis=-1).numpy()[0]
    if method is None:
        method = METHODS[_info(model).family]
    return AttentionExplanation(
        image=image,
        label=int(np.argmax(probs)) if label is None else int(label),
        method=method,
        maps={k: _upsample(v, image.shape[:2])[0] for k, v in token_maps.items()},
        token_maps={k: v.numpy()[0] for k, v in token_maps.items()},
        probs=probs,
    )
