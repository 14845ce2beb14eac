"""Stochastic depth (DropPath)."""
import paddle
import paddle.nn as nn


def drop_path(x, drop_prob=0.0, training=False, scale_by_keep=True):
    """Drop whole samples' residual branches with probability ``drop_prob``.

    Identity when not training or when ``drop_prob == 0``.
    """
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1.0 - drop_prob
    shape = [x.shape[0]] + [1] * (x.ndim - 1)  # one draw per sample, broadcast over the rest
    mask = paddle.bernoulli(paddle.full(shape, keep_prob, dtype=x.dtype))
    if keep_prob > 0.0 and scale_by_keep:
        mask = mask / keep_prob
    return x * mask


class DropPath(nn.Layer):
    """Stochastic depth per sample (Huang et al., 2016), applied to residual branches.

    Args:
        drop_prob: Probability of dropping a sample's branch in training.
        scale_by_keep: Divide kept branches by ``1 - drop_prob`` so the
            expectation is unchanged.
    """

    def __init__(self, drop_prob=0.0, scale_by_keep=True):
        super().__init__()
        self.drop_prob = float(drop_prob)
        self.scale_by_keep = scale_by_keep

    def forward(self, x):
        return drop_path(x, self.drop_prob, self.training, self.scale_by_keep)

    def extra_repr(self):
        return f"drop_prob={self.drop_prob:.3f}"
