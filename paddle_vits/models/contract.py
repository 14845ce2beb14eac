"""Helpers behind the model contract (``docs/model_contract.md``) that every family shares.

* :func:`create_classifier`: the one way a classification head is built and
  initialised, at construction and in ``reset_classifier``;
* :func:`check_input`: the one input check, with one message for a wrong rank,
  wrong channel count or wrong size (the size rule is the family's);
* :func:`feature_take_indices` and :func:`to_output_fmt`: the argument handling of every
  family's ``forward_intermediates`` (timm's semantics, ``docs/model_contract.md``).
"""
import paddle
import paddle.nn as nn

from ..layers import init_weights_vit

__all__ = ["InputShapeError", "check_input", "check_output_fmt", "create_classifier", "feature_take_indices",
           "to_output_fmt"]


class InputShapeError(ValueError):
    """An input tensor the model cannot take (rank, channels or size)."""


def create_classifier(num_features, num_classes, init=True):
    """A head ``nn.Linear(num_features, num_classes)``, or ``nn.Identity()`` for ``num_classes == 0``.

    Args:
        num_features: Width of the pre-logits features.
        num_classes: Outputs; ``0`` removes the head.
        init: Initialise the new head as every family's head is initialised
            (weights ~ TN(0, 0.02), zero bias). A model's constructor passes
            ``False`` because it initialises all its layers afterwards;
            ``reset_classifier`` keeps the default.

    Returns:
        paddle.nn.Layer
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes must be an int >= 0 (0 removes the head), got {num_classes!r}")
    if num_classes == 0:
        return nn.Identity()
    head = nn.Linear(num_features, num_classes)
    if init:
        init_weights_vit(head)
    return head


@paddle.jit.not_to_static  # plain Python on static shapes: nothing to trace
def check_input(model, x, size_problem=None):
    """Raise :class:`InputShapeError` unless ``x`` is a ``[B, in_chans, H, W]`` batch the model can take.

    Unknown dimensions (``-1``/``None`` while tracing with ``paddle.jit.to_static``) are not checked.

    Args:
        model: The model (for its class name and its ``in_chans``).
        x: The input tensor.
        size_problem: ``size_problem(H, W)`` -> ``None`` when the family takes an
            ``H x W`` input, else a sentence saying why not and what to do.

    The message is always ``"<Model> cannot take an input of shape [...]: <problem>"``.
    """
    shape = list(x.shape)
    in_chans = model.in_chans
    problem = None
    if len(shape) != 4:
        problem = f"expected images of shape [B, C, H, W] (4 dimensions), got {len(shape)} dimensions"
    elif _known(shape[1]) and shape[1] != in_chans:
        problem = f"expected {in_chans} channels, [B, {in_chans}, H, W], got {shape[1]}"
    elif size_problem is not None and _known(shape[2]) and _known(shape[3]):
        problem = size_problem(int(shape[2]), int(shape[3]))
    if problem:
        raise InputShapeError(f"{type(model).__name__} cannot take an input of shape {shape}: {problem}")


def _known(dim):
    return dim is not None and dim >= 0


def feature_take_indices(num, indices=None):
    """Which of ``num`` blocks/stages ``forward_intermediates`` returns (timm's rule).

    Args:
        num: Blocks or stages the model has.
        indices: ``None`` (all), an int ``n`` (the last ``n``), or a sequence of
            indices (negative ones count from the end).

    Returns:
        ``(sorted list of indices in [0, num), largest index)``.
    """
    if indices is None:
        indices = num
    if isinstance(indices, bool):
        raise ValueError(f"indices must be None, an int or a sequence of ints, got {indices!r}")
    if isinstance(indices, int):
        if not 0 < indices <= num:
            raise ValueError(f"indices={indices} asks for the last {indices} of {num} blocks/stages; "
                             f"use 1..{num}")
        take = list(range(num - indices, num))
    else:
        take = []
        for i in indices:
            if isinstance(i, bool) or not isinstance(i, int) or not -num <= i < num:
                raise ValueError(f"index {i!r} is out of range for {num} blocks/stages (use 0..{num - 1} or "
                                 f"negative indices from the end)")
            take.append(i % num)
        if not take:
            raise ValueError("indices is empty; give at least one block/stage index")
    take = sorted(set(take))
    return take, take[-1]


def to_output_fmt(x, hw, output_fmt):
    """Tokens ``[B, H*W, C]`` -> ``[B, C, H, W]`` (``"NCHW"``) or unchanged (``"NLC"``)."""
    if output_fmt == "NLC":
        return x
    H, W = hw
    return x.transpose([0, 2, 1]).reshape([x.shape[0], x.shape[2], H, W])  # [B, HW, C] -> [B, C, H, W]


def check_output_fmt(output_fmt):
    """Raise ``ValueError`` unless ``output_fmt`` is ``"NCHW"`` or ``"NLC"``."""
    if output_fmt not in ("NCHW", "NLC"):
        raise ValueError(f"output_fmt must be 'NCHW' or 'NLC', got {output_fmt!r}")
