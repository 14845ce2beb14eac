"""Defaults of ``scripts/eval_imagenet.py``: the CaiT notebook's job, and one message for whatever is missing.

With no arguments the script evaluates CaiT-M48 at 448 on ImageNet-val laid out
as the notebook had it: images under ``data/ILSVRC2012`` with
``data/ILSVRC2012/val_list.txt`` (``relative/path label`` lines), weights in
``data/`` (``data/README.md``). ``PADDLE_VITS_DATA`` moves that ``data`` folder.
"""
import os
import re

from ..hub import is_weights_tag
from ..utils.cli import UserError

__all__ = ["DEFAULT_MODEL", "data_root", "default_data_dir", "weight_candidates", "resolve_eval_inputs"]

DEFAULT_MODEL = "cait_m_48_448"


def data_root():
    """The ``data`` folder: ``$PADDLE_VITS_DATA``, else ``data`` in the working directory."""
    return os.environ.get("PADDLE_VITS_DATA") or "data"


def default_data_dir():
    return os.path.join(data_root(), "ILSVRC2012")


def _official_file(model_name):
    """The official release's file name where known (CaiT: ``cait_m_48_448`` -> ``M48_448.pth``)."""
    m = re.fullmatch(r"cait_(xxs|xs|s|m)_(\d+)(?:_(\d+))?", model_name)
    if m is None:
        return None
    return f"{m.group(1).upper()}{m.group(2)}_{m.group(3) or 224}.pth"


def weight_candidates(model_name):
    """Where the weights are looked for, in order: converted ``.pdparams``, then the official file."""
    names = [f"{model_name}.pdparams"] + ([_official_file(model_name)] if _official_file(model_name) else [])
    root = data_root()
    return [os.path.join(folder, n) for n in names for folder in (root, os.path.join(root, "weights"))]


def resolve_eval_inputs(model_name, data=None, weights=None, val_list=None):
    """``(data, weights)``: the given ones or the defaults (``weights`` may be ``"pretrained"`` or a release tag).

    Raises:
        UserError: one message naming everything missing, where to put it and which flag to pass.
    """
    missing = []
    data = data or default_data_dir()
    if not os.path.isdir(data):
        missing.append(f"ImageNet-val images: no folder {data} (put the images there with a val_list.txt of "
                       "'relative/path label' lines, or <wnid>/*.JPEG folders; or pass --data DIR)")
    if val_list is not None and not os.path.isfile(val_list):
        missing.append(f"val list: no file {val_list} (pass --val-list FILE, or leave it out to use "
                       "DATA/val_list.txt)")
    if weights is None:
        found = [p for p in weight_candidates(model_name) if os.path.isfile(p)]
        if found:
            weights = found[0]
        else:
            where = " or ".join(weight_candidates(model_name))
            missing.append(f"{model_name} weights: none of {where} (put the official checkpoint or a converted "
                           ".pdparams there, or pass --weights FILE)")
    elif not os.path.isfile(weights) and weights != "pretrained" and not is_weights_tag(model_name, weights):
        missing.append(f"weights: no file {weights} (a .pdparams from scripts/convert_weights.py, an official "
                       "checkpoint, 'pretrained' or a release tag; pass --weights FILE|TAG)")
    if missing:
        raise UserError(f"cannot evaluate {model_name}, missing: " + "; ".join(missing),
                        "see data/README.md, or pass --model NAME to evaluate another model")
    return data, weights
