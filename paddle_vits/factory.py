"""Build registered models and load their weights: the one entry point, :func:`create_model`.

The factory sits on top of the registry (metadata only) and the converter
(checkpoint reading and renaming); neither imports it, so there is no import
cycle. A checkpoint file is read once, also when its class count is taken
from it (``num_classes="checkpoint"``).
"""
import numbers
import os
import warnings

from .convert import infer_num_classes, load_pretrained, read_checkpoint
from .registry import get_model_info
from .utils.cli import UserError

__all__ = ["ModelArgumentError", "create_model"]


class ModelArgumentError(UserError, ValueError):
    """An argument of :func:`create_model` outside its valid range (a ``ValueError``)."""


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_img_size(img_size):
    sides = img_size if isinstance(img_size, (list, tuple)) else (img_size,)
    if len(sides) not in (1, 2) or not all(_is_int(s) and s >= 1 for s in sides):
        raise ModelArgumentError(f"img_size must be a positive int (or (H, W) of positive ints), got {img_size!r}",
                                 "e.g. img_size=224")


def _check_args(name, pretrained, num_classes, kwargs):
    if not isinstance(name, str) or not name:
        raise ModelArgumentError(f"the model name must be a non-empty string, got {name!r}",
                                 "see paddle_vits.list_models() for the names")
    if num_classes is not None and num_classes != "checkpoint" and not (_is_int(num_classes) and num_classes >= 0):
        raise ModelArgumentError(f"num_classes must be an int >= 0 (0 removes the head), None or 'checkpoint', "
                                 f"got {num_classes!r}", "e.g. num_classes=10")
    if num_classes == "checkpoint" and not pretrained:
        raise ModelArgumentError("num_classes='checkpoint' needs a checkpoint", "pass pretrained=PATH")
    if "img_size" in kwargs:
        _check_img_size(kwargs["img_size"])
    for key in ("drop_rate", "attn_drop_rate", "drop_path_rate"):
        if key in kwargs:
            value = kwargs[key]
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
                raise ModelArgumentError(f"{key} must be a probability in [0, 1), got {value!r}", f"e.g. {key}=0.1")
    if isinstance(pretrained, bool):
        return
    if pretrained is not None:
        if not isinstance(pretrained, (str, os.PathLike)):
            raise TypeError(f"pretrained must be False, True, a release tag or a path to a weights file, "
                            f"got {pretrained!r}")
        if not os.fspath(pretrained):
            raise ModelArgumentError("pretrained must be a path to a weights file or a release tag, got an empty "
                                     "string", "pass pretrained=True for the default release, or False for "
                                     "random weights")


def _resolve_weights(info, pretrained):
    """A local checkpoint path for ``pretrained`` (``True``, a release tag or a path)."""
    from .hub import is_weights_tag, resolve_pretrained

    if pretrained is True:
        return resolve_pretrained(info.name)
    if isinstance(pretrained, str) and not os.path.exists(pretrained) and is_weights_tag(info.name, pretrained):
        return resolve_pretrained(info.name, pretrained)
    return pretrained


def create_model(name, pretrained=False, num_classes=None, features_only=False, out_indices=None, **kwargs):
    """Build a registered model.

    Args:
        name: Registered name or alias (see :func:`~paddle_vits.list_models`).
        pretrained: ``False``; ``True`` (the default release, downloaded,
            verified, converted and cached on first use: :mod:`paddle_vits.hub`);
            a release tag (``"fb_dist_in1k"``, see ``paddle_vits.hub.list_weights(name)``);
            or a path to weights: a converted ``.pdparams`` file, or an official
            PyTorch checkpoint (``.pth``/``.pt``/``.safetensors``), converted on
            the fly. The file is read once.
        num_classes: Classifier outputs (default 1000); ``0`` removes the head
            (the model then returns pooled features of size ``model.num_features``);
            ``"checkpoint"``: the size of the ``pretrained`` checkpoint's head.
            Given explicitly with ``pretrained``, a checkpoint head of another
            size is dropped and the head re-initialised (with a warning); left
            at the default, such a checkpoint is an error, so a fine-tuned head
            is never thrown away silently.
        features_only: Return a backbone (:class:`paddle_vits.features.FeatureBackbone`) whose
            ``forward`` gives a list of ``NCHW`` feature maps, with ``feature_info`` (channels and
            stride of each). Classification weights load into it: the head(s) and the class-token
            stage are dropped after loading, with a warning naming them. Without ``num_classes``
            the checkpoint's head size is taken, so a fine-tuned checkpoint loads too.
        out_indices: With ``features_only``: the stages/blocks to return (default: the
            family's, see :mod:`paddle_vits.features`).
        **kwargs: Passed to the family's model class (``drop_path_rate``,
            ``img_size``, ...).

    Returns:
        paddle.nn.Layer: the model, in train mode (call ``.eval()`` for inference).

    Raises:
        ModelArgumentError: (a ``ValueError``) an argument out of range, naming it.
        paddle_vits.convert.CheckpointError: weights that do not fit the model.
        paddle_vits.hub.WeightsError: released weights that cannot be had (the
            message names the URLs and the cache path to put the file at).
    """
    _check_args(name, pretrained, num_classes, kwargs)
    if out_indices is not None and not features_only:
        raise ModelArgumentError("out_indices is only used with features_only=True",
                                 "pass features_only=True, or drop out_indices")
    info = get_model_info(name)
    if features_only and pretrained and num_classes is None:
        num_classes = "checkpoint"  # the head is dropped anyway: take whatever size the checkpoint has
    state_dict = None
    if pretrained:
        pretrained = _resolve_weights(info, pretrained)
        state_dict = read_checkpoint(pretrained)
        if num_classes == "checkpoint":
            num_classes = infer_num_classes(state_dict, info)
    reinit_head = num_classes is not None
    model = info.builder(num_classes=1000 if num_classes is None else num_classes, **kwargs)
    model.model_name = info.name
    model.model_info = info
    if pretrained:
        skipped = load_pretrained(model, pretrained, model_name=info.name, reinit_head=reinit_head,
                                  state_dict=state_dict)
        if skipped:
            warnings.warn(f"{info.name}: the classifier of {os.fspath(pretrained)} does not have "
                          f"num_classes={num_classes} outputs; re-initialised {', '.join(skipped)}", stacklevel=2)
    if features_only:
        from .features import FeatureBackbone

        model = FeatureBackbone(model, out_indices)
        model.model_name = info.name
        model.model_info = info
        if pretrained:
            warnings.warn(f"{info.name} features_only: the loaded classification weights of "
                          f"{', '.join(model.dropped)} are not used by the feature maps and were dropped",
                          stacklevel=2)
    return model
