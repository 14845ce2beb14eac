"""Strict conversion of official PyTorch state dicts to Paddle models.

Conversion is three steps:

1. the model's ``checkpoint_filter(state_dict)`` (its family's
   ``checkpoint_filter_fn``, part of the model contract) renames official/timm
   keys to ours and drops buffers that our model recomputes;
2. generic, by module type: ``nn.Linear`` weights are transposed (PyTorch
   stores ``[out, in]``, Paddle ``[in, out]``) and BatchNorm buffers are
   renamed (``running_mean``/``running_var`` -> ``_mean``/``_variance``,
   ``num_batches_tracked`` dropped);
3. strict checks: every model key present, no key left over, every shape
   equal. A different classifier size is accepted only with ``reinit_head``.
"""
import os

import numpy as np
import paddle.nn as nn

from ..registry import get_model_info
from .reader import PADDLE_LAYOUT_METADATA, CheckpointError, is_paddle_layout, read_checkpoint

__all__ = ["convert_state_dict", "load_pretrained", "convert_checkpoint", "check_state_dict", "infer_num_classes",
           "save_safetensors"]

_BN_TYPES = (nn.BatchNorm1D, nn.BatchNorm2D, nn.BatchNorm3D, nn.BatchNorm, nn.SyncBatchNorm)


def _examples(keys, n=5):
    keys = sorted(keys)
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def _generic_layout(state_dict, model):
    """Transpose Linear weights and rename BatchNorm buffers, chosen by module type."""
    sd = dict(state_dict)
    for name, layer in model.named_sublayers():
        prefix = f"{name}." if name else ""
        if isinstance(layer, nn.Linear):
            key = prefix + "weight"
            if key in sd:
                w = sd[key]
                if w.ndim != 2:
                    raise CheckpointError(f"{key}: Linear weight with shape {tuple(w.shape)}")
                sd[key] = np.ascontiguousarray(w.T)
        elif isinstance(layer, _BN_TYPES):
            for src, dst in (("running_mean", "_mean"), ("running_var", "_variance")):
                if prefix + src in sd:
                    sd[prefix + dst] = sd.pop(prefix + src)
            sd.pop(prefix + "num_batches_tracked", None)
    return sd


def _numpy_dtype(tensor):
    """The numpy dtype of a Paddle tensor, read from its metadata (no copy of its data)."""
    return np.dtype(str(tensor.dtype).rsplit(".", 1)[-1])


def _classifier_keys(keys, prefixes):
    return {k for k in keys if any(k == p or k.startswith(p + ".") for p in prefixes)}


def check_state_dict(state_dict, model, classifier=("head",), reinit_head=False, model_name=None):
    """Check ``state_dict`` (Paddle names and layout) against ``model``, strictly.

    Returns:
        (state_dict, skipped): the dict cast to the model's dtypes, and the
        classifier keys left out because their shape differs (only when
        ``reinit_head``).

    Raises:
        CheckpointError: missing/unexpected keys or mismatched shapes.
    """
    name = model_name or type(model).__name__
    target = model.state_dict()
    missing = set(target) - set(state_dict)
    unexpected = set(state_dict) - set(target)
    head_keys = _classifier_keys(target, classifier)
    skipped = []
    mismatched = []
    for k in sorted(set(target) & set(state_dict)):
        want, got = tuple(target[k].shape), tuple(state_dict[k].shape)
        if want != got:
            if k in head_keys:
                skipped.append(k)
            else:
                mismatched.append(f"{k}: checkpoint {got} vs model {want}")
    # A head missing from the checkpoint (features-only) or present when num_classes=0.
    head_missing = missing & head_keys
    head_unexpected = _classifier_keys(unexpected, classifier)
    problems = []
    if missing - head_keys:
        problems.append(f"{len(missing - head_keys)} model keys missing from the checkpoint: {_examples(missing - head_keys)}")
    if unexpected - head_unexpected:
        problems.append(f"{len(unexpected - head_unexpected)} checkpoint keys the model does not have: "
                        f"{_examples(unexpected - head_unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches: {_examples(mismatched, 3)}")
    if problems:
        raise CheckpointError(
            f"checkpoint does not fit {name}: " + "; ".join(problems)
            + ". Is it a checkpoint of another model or image size? "
            "Pass the model the checkpoint was trained as (`paddle_vits.list_models()`)."
        )
    if skipped or head_missing or head_unexpected:
        if not reinit_head:
            raise CheckpointError(
                f"the checkpoint's classifier does not fit {name}: "
                + _examples(skipped + sorted(head_missing | head_unexpected), 4)
                + ". To fine-tune with another number of classes, ask for a re-initialised head "
                "(create_model(..., num_classes=N, pretrained=PATH) or --num-classes N)."
            )
        skipped = sorted(set(skipped) | head_missing | head_unexpected)
    out = {}
    for k, v in state_dict.items():
        if k in target and k not in skipped:
            out[k] = np.asarray(v).astype(_numpy_dtype(target[k]), copy=False)
    return out, skipped


def _to_paddle_layout(state_dict, model):
    """Steps 1-2 of the module docstring: the model's own renames, then the generic layout."""
    sd = dict(state_dict)
    checkpoint_filter = getattr(model, "checkpoint_filter", None)
    if checkpoint_filter is not None:
        sd = checkpoint_filter(sd)
    return _generic_layout(sd, model)


def _model_info(model, model_name):
    model_name = model_name or getattr(model, "model_name", None)
    return model_name, (get_model_info(model_name) if model_name else None)


def convert_state_dict(state_dict, model, model_name=None, reinit_head=False):
    """Convert an official/timm state dict (numpy) to the Paddle ``model``'s names and layout.

    Args:
        state_dict: ``{name: numpy.ndarray}`` as read by :func:`read_checkpoint`.
        model: A model built by :func:`paddle_vits.create_model`.
        model_name: Registered name (defaults to ``model.model_name``).
        reinit_head: Allow a classifier of another size (it is left out).

    Returns:
        (state_dict, skipped) as in :func:`check_state_dict`.
    """
    model_name, info = _model_info(model, model_name)
    sd = _to_paddle_layout(state_dict, model)
    classifier = info.classifier if info is not None else ("head",)
    return check_state_dict(sd, model, classifier, reinit_head=reinit_head, model_name=model_name)


def load_pretrained(model, path, model_name=None, reinit_head=False, unsafe=False, resize_pos_embed=False,
                    state_dict=None, allow_nonfinite=False):
    """Load weights into ``model`` from a ``.pdparams`` or an official checkpoint.

    A ``.pdparams`` file, or a ``.safetensors`` file written by
    :func:`convert_checkpoint` (marked in its metadata), must already be in
    Paddle layout; any other file is converted on the fly.

    Args:
        model: A model built by :func:`paddle_vits.create_model`.
        path: The weights file.
        model_name: Registered name (defaults to ``model.model_name``).
        reinit_head: Allow a classifier of another size; the model keeps its
            freshly initialised one.
        unsafe: As in :func:`read_checkpoint`.
        resize_pos_embed: Interpolate position embeddings of another
            resolution to the model's (fine-tuning at a new image size).
        state_dict: The contents of ``path`` if the caller has read it already
            (:func:`read_checkpoint`), so that the file is read once.
        allow_nonfinite: Load weights holding NaN/inf (refused by default).

    Returns:
        The list of classifier keys that were re-initialised (empty when none).
    """
    model_name, info = _model_info(model, model_name)
    path = os.fspath(path)
    sd = read_checkpoint(path, unsafe=unsafe, allow_nonfinite=allow_nonfinite) if state_dict is None else state_dict
    if not is_paddle_layout(path):
        sd = _to_paddle_layout(sd, model)
    if resize_pos_embed:
        from .pos_embed import resize_pos_embeds

        sd = resize_pos_embeds(sd, model)
    classifier = info.classifier if info is not None else ("head",)
    sd, skipped = check_state_dict(sd, model, classifier, reinit_head, model_name)
    own = model.state_dict()
    sd.update({k: own[k] for k in skipped if k in own})  # the fresh head: no "skip loading" warnings
    model.set_state_dict(sd)
    return skipped


def convert_checkpoint(model_name, src, out, num_classes=None, unsafe=False, allow_nonfinite=False, safetensors=False,
                       **model_kwargs):
    """Convert an official checkpoint file to a ``.pdparams`` file.

    Args:
        model_name: Registered name or alias of the model the checkpoint belongs to.
        src: Official/timm checkpoint (``.pth``, ``.pt``, ``.safetensors``).
        out: Output ``.pdparams`` path, written atomically.
        num_classes: Head size; ``None`` keeps the checkpoint's. Another size
            re-initialises the head.
        unsafe: Allow executing pickled code (``torch.load(weights_only=False)``).
        allow_nonfinite: Convert weights holding NaN/inf (refused by default).
        safetensors: Also write the weights as ``.safetensors`` next to ``out``
            (a format that cannot carry code; readable by every loader here).
        **model_kwargs: Extra model arguments (e.g. ``img_size``).

    Returns:
        dict: a report (model, number of tensors and parameters, skipped keys).
    """
    from ..utils import atomic_save

    info = get_model_info(model_name)
    sd = read_checkpoint(src, unsafe=unsafe, allow_nonfinite=allow_nonfinite)
    reinit = num_classes is not None
    if num_classes is None:
        num_classes = infer_num_classes(sd, info)
    model = info.builder(num_classes=num_classes, **model_kwargs)
    converted, skipped = convert_state_dict(sd, model, info.name, reinit_head=reinit)
    model.set_state_dict(converted)
    atomic_save(model.state_dict(), out)
    written = [os.fspath(out)]
    if safetensors:
        written.append(save_safetensors(model.state_dict(), os.path.splitext(os.fspath(out))[0] + ".safetensors"))
    n_params = int(sum(int(np.prod(p.shape)) for p in model.parameters()))
    return dict(model=info.name, tensors=len(converted), params=n_params,
                num_classes=num_classes, skipped=skipped, out=os.fspath(out), written=written)


def save_safetensors(state_dict, path):
    """Write a Paddle state dict as ``.safetensors`` (atomically), marked as Paddle layout.

    Args:
        state_dict: ``{name: paddle.Tensor or numpy array}``.
        path: Output file.

    Returns:
        ``path``.
    """
    from safetensors.numpy import save

    from ..utils import atomic_write_bytes

    arrays = {k: np.ascontiguousarray(v.numpy() if hasattr(v, "numpy") else np.asarray(v))
              for k, v in state_dict.items()}
    atomic_write_bytes(path, save(arrays, metadata=dict(PADDLE_LAYOUT_METADATA)))
    return os.fspath(path)


def infer_num_classes(state_dict, info):
    """Classifier size stored in a checkpoint (official or Paddle layout).

    Args:
        state_dict: As returned by :func:`read_checkpoint`.
        info: The model's registry entry (``get_model_info(name)``), for its classifier names.

    Raises:
        CheckpointError: the checkpoint has no ``<classifier>.bias`` to read it from.
    """
    for prefix in info.classifier:
        bias = state_dict.get(prefix + ".bias")
        if bias is not None and bias.ndim == 1:
            return int(bias.shape[0])
    raise CheckpointError(
        f"cannot tell the number of classes of this {info.name} checkpoint: it has no "
        f"{' or '.join(p + '.bias' for p in info.classifier)} (a features-only checkpoint?); "
        "pass the number of classes explicitly (num_classes=N or --num-classes N)")
