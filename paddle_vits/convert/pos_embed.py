"""Resize position embeddings to another resolution, for fine-tuning at a new image size.

Families with learned position embeddings: CaiT (``pos_embed`` ``[1, N, C]``, patch
tokens only: the class token joins after the blocks) and CrossViT (``pos_embed.{i}``
``[1, 1 + N_i, C_i]``, the class token's embedding first). The patch part is
reshaped to its square grid, resized bicubically, and the prefix tokens kept.
"""
import math

import numpy as np
import paddle
import paddle.nn.functional as F


def resize_pos_embed(pos_embed, new_grid, num_prefix_tokens=0):
    """Resize ``pos_embed`` ``[1, P + H*W, C]`` to ``[1, P + H'*W', C]``.

    Args:
        pos_embed: numpy array; the patch part must be a square grid.
        new_grid: ``(H', W')``.
        num_prefix_tokens: Leading tokens (class/distillation) copied unchanged.
    """
    pos_embed = np.asarray(pos_embed)
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    n, c = grid.shape[1], grid.shape[2]
    side = int(round(math.sqrt(n)))
    if side * side != n:
        raise ValueError(f"position embedding has {n} patch tokens, not a square grid")
    h, w = int(new_grid[0]), int(new_grid[1])
    if (h, w) == (side, side):
        return pos_embed
    x = paddle.to_tensor(grid.astype(np.float32)).reshape([1, side, side, c])  # [1, N, C] -> [1, S, S, C]
    x = x.transpose([0, 3, 1, 2])  # [1, S, S, C] -> [1, C, S, S]
    x = F.interpolate(x, size=[h, w], mode="bicubic", align_corners=False)
    x = x.transpose([0, 2, 3, 1]).reshape([1, h * w, c])  # [1, C, H', W'] -> [1, H'*W', C]
    return np.concatenate([prefix, x.numpy().astype(pos_embed.dtype)], axis=1)


def _prefix_and_grid(old_len, new_len):
    """Prefix token count (0 or 1) for which both lengths leave a square grid."""
    for p in (0, 1, 2):
        a, b = old_len - p, new_len - p
        if a > 0 and b > 0 and math.isqrt(a) ** 2 == a and math.isqrt(b) ** 2 == b:
            return p, math.isqrt(b)
    raise ValueError(f"cannot resize a position embedding of {old_len} tokens to {new_len}: "
                     "not a square grid with 0-2 prefix tokens")


def resize_pos_embeds(state_dict, model):
    """Resize every ``*pos_embed*`` entry of ``state_dict`` whose shape differs from ``model``'s.

    Works for [1, N, C] embeddings with 0-2 prefix tokens (CaiT: 0, CrossViT: 1).
    Other entries are returned unchanged.
    """
    target = model.state_dict()
    out = dict(state_dict)
    for k, v in state_dict.items():
        if "pos_embed" not in k or k not in target:
            continue
        want = tuple(target[k].shape)
        v = np.asarray(v)
        if tuple(v.shape) == want or v.ndim != 3 or len(want) != 3 or v.shape[2] != want[2]:
            continue
        prefix, side = _prefix_and_grid(v.shape[1], want[1])
        out[k] = resize_pos_embed(v, (side, side), prefix)
    return out
