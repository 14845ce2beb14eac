"""Classification losses on soft targets."""
import paddle
import paddle.nn.functional as F


def soft_target_cross_entropy(logits, target):
    """Mean over the batch of ``-sum_k target_k * log_softmax(logits)_k``.

    Args:
        logits: ``[B, K]``.
        target: ``[B, K]`` probabilities (one-hot, smoothed or mixed).
    """
    return paddle.sum(-target * F.log_softmax(logits.astype("float32"), axis=-1), axis=-1).mean()


def label_smoothing_cross_entropy(logits, labels, smoothing=0.1):
    """Cross-entropy against ``(1 - s) * one_hot + s / K`` (the notebooks' loss).

    Equal to ``(1 - s) * NLL + s * mean_k(-log p_k)``.
    """
    num_classes = logits.shape[-1]
    labels = labels.astype("int64").reshape([-1])  # [B] or [B, 1] -> [B]
    target = F.one_hot(labels, num_classes) * (1.0 - smoothing) + smoothing / num_classes
    return soft_target_cross_entropy(logits, target)
