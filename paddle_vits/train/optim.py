"""Optimizer and per-step LR schedule (linear warm-up, then cosine to ``min_lr``)."""
import math

import paddle


def cosine_lr_factor(step, total_steps, warmup_steps=0, min_ratio=0.0):
    """LR multiplier at ``step``: linear warm-up from ``1/warmup_steps`` to 1, then cosine to ``min_ratio``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(lr, total_steps, warmup_steps=0, min_lr=0.0):
    """``paddle.optimizer.lr.LambdaDecay`` stepped once per optimizer step."""
    ratio = min_lr / lr if lr > 0 else 0.0
    return paddle.optimizer.lr.LambdaDecay(
        lr, lambda s: cosine_lr_factor(s, total_steps, warmup_steps, ratio))


def _decay_split(model):
    """Parameters with and without weight decay: no decay for ``model.no_weight_decay()`` and 1-D params."""
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.stop_gradient:
            continue
        (no_decay if name in skip or p.ndim <= 1 else decay).append(p)
    return decay, no_decay


def _groups(params_by_decay, lr_scales):
    """Parameter groups of equal (weight decay, LR scale); Paddle multiplies a group's ``learning_rate``
    into the scheduled LR."""
    groups = {}
    for wd, named in params_by_decay:
        for name, p in named:
            scale = lr_scales.get(name, 1.0) if lr_scales else 1.0
            groups.setdefault((wd, scale), []).append(p)
    return [{"params": ps, "weight_decay": wd, "learning_rate": scale} for (wd, scale), ps in groups.items()]


def build_optimizer(model, opt="adam", scheduler=None, lr=1e-4, weight_decay=1e-5, clip_grad=None,
                    lr_scales=None):
    """Adam (the notebooks: L2 ``weight_decay`` on every parameter) or AdamW
    (decoupled decay, skipping biases, norms and ``no_weight_decay()``).

    Args:
        model: The model (unwrapped, not ``paddle.DataParallel``).
        opt: ``"adam"`` or ``"adamw"``.
        scheduler: LR scheduler or ``None`` (constant ``lr``).
        clip_grad: Global-norm clip value or ``None``.
        lr_scales: ``{parameter name: LR multiplier}`` (layer-wise LR decay) or ``None``.
    """
    learning_rate = scheduler if scheduler is not None else lr
    grad_clip = paddle.nn.ClipGradByGlobalNorm(clip_grad) if clip_grad else None
    trainable = [(n, p) for n, p in model.named_parameters() if not p.stop_gradient]
    if opt == "adam":
        if lr_scales:
            groups = _groups([(weight_decay or None, trainable)], lr_scales)
            return paddle.optimizer.Adam(learning_rate, parameters=groups, weight_decay=weight_decay or None,
                                         grad_clip=grad_clip)
        return paddle.optimizer.Adam(learning_rate, parameters=[p for _, p in trainable],
                                     weight_decay=weight_decay or None, grad_clip=grad_clip)
    if opt == "adamw":
        decay, no_decay = _decay_split(model)
        ids = {id(p) for p in decay}
        groups = _groups([(weight_decay, [(n, p) for n, p in trainable if id(p) in ids]),
                          (0.0, [(n, p) for n, p in trainable if id(p) not in ids])], lr_scales)
        return paddle.optimizer.AdamW(learning_rate, parameters=groups, weight_decay=weight_decay,
                                      grad_clip=grad_clip)
    raise ValueError(f"unknown optimizer {opt!r}: use 'adam' or 'adamw'")
