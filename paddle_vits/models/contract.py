"""Helpers behind the model contract (``docs/model_contract.md``) that every family shares.

* :func:`create_classifier`: the one way a classification head is built and
  initialised, at construction and in ``reset_classifier``;
* :func:`check_input`: the one input check, with one message for a wrong rank,
  wrong channel count or wrong size (the size rule is the family's).
"""
import paddle
import paddle.nn as nn

from ..layers import init_weights_vit

__all__ = ["InputShapeError", "check_input", "create_classifier"]


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
