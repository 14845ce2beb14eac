"""Model registry: every variant, its eval preprocessing and its reference figures.

Each family file registers its variants with :func:`register_model`::

    @register_model(input_size=(3, 224, 224), crop_pct=1.0, top1=78.4,
                    num_params=11_956_264, aliases=("cait_xxs24_224",))
    def cait_xxs_24(**kwargs):
        return _create_cait(dict(embed_dim=192, depth=24, num_heads=4), **kwargs)

and users build them with :func:`create_model`.
"""
import difflib
import fnmatch
import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional, Tuple

IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one variant.

    Attributes:
        name: Registered (canonical) name.
        family: Family module name, e.g. ``"cait"``.
        builder: Function ``builder(**kwargs) -> paddle.nn.Layer``.
        input_size: Default eval input ``(C, H, W)``.
        crop_pct: Center-crop fraction: images are resized to ``int(size / crop_pct)``
            then center-cropped to ``size``.
        interpolation: Resize interpolation (``"bicubic"``, ``"bilinear"``).
        mean: Normalisation mean (RGB, 0-1 scale).
        std: Normalisation std.
        top1: ImageNet top-1 (%) reported by the paper / official release.
        num_params: Parameter count of the official implementation (1000 classes).
        classifier: Parameter-name prefixes of the classification head(s).
        aliases: Other accepted names (timm's names of the same model).
        paper: Short reference.
    """

    name: str
    family: str
    builder: Callable
    input_size: Tuple[int, int, int] = (3, 224, 224)
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    mean: Tuple[float, float, float] = IMAGENET_DEFAULT_MEAN
    std: Tuple[float, float, float] = IMAGENET_DEFAULT_STD
    top1: Optional[float] = None
    num_params: Optional[int] = None
    classifier: Tuple[str, ...] = ("head",)
    aliases: Tuple[str, ...] = ()
    paper: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def img_size(self):
        return self.input_size[-1]

    @property
    def checkpoint_filter(self):
        """The family's ``checkpoint_filter_fn(state_dict, model)`` (official names -> ours)."""
        return getattr(sys.modules[self.builder.__module__], "checkpoint_filter_fn", None)

    def eval_config(self):
        """Preprocessing settings as a plain dict."""
        return dict(
            input_size=self.input_size,
            crop_pct=self.crop_pct,
            interpolation=self.interpolation,
            mean=self.mean,
            std=self.std,
        )


_REGISTRY = {}
_ALIASES = {}


def register_model(
    *,
    input_size=(3, 224, 224),
    crop_pct=0.875,
    interpolation="bicubic",
    mean=IMAGENET_DEFAULT_MEAN,
    std=IMAGENET_DEFAULT_STD,
    top1=None,
    num_params=None,
    classifier=("head",),
    aliases=(),
    paper="",
    **extra,
):
    """Decorator registering a variant builder under its function name."""

    def decorator(fn):
        name = fn.__name__
        if name in _REGISTRY or name in _ALIASES:
            raise ValueError(f"model name {name!r} is registered twice")
        family = fn.__module__.rsplit(".", 1)[-1]
        info = ModelInfo(
            name=name,
            family=family,
            builder=fn,
            input_size=tuple(input_size),
            crop_pct=crop_pct,
            interpolation=interpolation,
            mean=tuple(mean),
            std=tuple(std),
            top1=top1,
            num_params=num_params,
            classifier=tuple(classifier),
            aliases=tuple(aliases),
            paper=paper,
            extra=dict(extra),
        )
        _REGISTRY[name] = info
        for alias in info.aliases:
            if alias in _REGISTRY or alias in _ALIASES:
                raise ValueError(f"alias {alias!r} of {name!r} is already taken")
            _ALIASES[alias] = name
        return fn

    return decorator


def list_models(pattern=None, include_aliases=False):
    """Sorted names of registered models.

    Args:
        pattern: Optional shell-style wildcard, e.g. ``"cait_*_384"``.
        include_aliases: Also list (and match) the alias names.
    """
    names = list(_REGISTRY)
    if include_aliases:
        names += list(_ALIASES)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return sorted(names)


def resolve_name(name):
    """Canonical name for ``name`` (itself or an alias); clear error otherwise."""
    if name in _REGISTRY:
        return name
    if name in _ALIASES:
        return _ALIASES[name]
    candidates = list(_REGISTRY) + list(_ALIASES)
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(
        f"Unknown model {name!r}.{hint} "
        f"Run `paddle_vits.list_models()` (or `python scripts/list_models.py`) for all {len(_REGISTRY)} names."
    )


def get_model_info(name):
    """The :class:`ModelInfo` of a model or alias."""
    return _REGISTRY[resolve_name(name)]


def is_model(name):
    return name in _REGISTRY or name in _ALIASES


def create_model(name, pretrained=False, num_classes=None, **kwargs):
    """Build a registered model.

    Args:
        name: Registered name or alias (see :func:`list_models`).
        pretrained: ``False``; ``True`` (the default release, downloaded,
            verified and cached on first use: :mod:`paddle_vits.hub`); a release
            tag (``"fb_dist_in1k"``, see ``paddle_vits.hub.list_weights(name)``);
            or a path to weights: a converted ``.pdparams`` file, or an official
            PyTorch checkpoint (``.pth``/``.pt``/``.safetensors``), converted on the fly.
        num_classes: Classifier outputs (default 1000); ``0`` removes the head
            (the model then returns pooled features of size ``model.num_features``).
            Given explicitly with ``pretrained``, a checkpoint head of another
            size is dropped and the head re-initialised (with a warning); left
            at the default, such a checkpoint is an error, so a fine-tuned head
            is never thrown away silently.
        **kwargs: Passed to the family's model class (``drop_path_rate``,
            ``img_size``, ...).

    Returns:
        paddle.nn.Layer: the model, in train mode (call ``.eval()`` for inference).
    """
    info = get_model_info(name)
    reinit_head = num_classes is not None
    model = info.builder(num_classes=1000 if num_classes is None else num_classes, **kwargs)
    model.model_name = info.name
    model.model_info = info
    if pretrained:
        if pretrained is not True and not isinstance(pretrained, (str, os.PathLike)):
            raise TypeError(
                f"pretrained must be False, True, a release tag or a path to a weights file, got {pretrained!r}."
            )
        from .convert import load_pretrained
        from .hub import is_weights_tag, resolve_pretrained

        if pretrained is True or (isinstance(pretrained, str) and not os.path.exists(pretrained)
                                  and is_weights_tag(info.name, pretrained)):
            pretrained = resolve_pretrained(info.name, None if pretrained is True else pretrained)

        skipped = load_pretrained(model, pretrained, model_name=info.name, reinit_head=reinit_head)
        if skipped:
            warnings.warn(f"{info.name}: the classifier of {os.fspath(pretrained)} does not have "
                          f"num_classes={num_classes} outputs; re-initialised {', '.join(skipped)}", stacklevel=2)
    return model
