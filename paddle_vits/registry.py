"""Model registry: metadata only (names, eval preprocessing, reference figures).

Each family file registers its variants with :func:`register_model`::

    @register_model(input_size=(3, 224, 224), crop_pct=1.0, top1=78.4,
                    num_params=11_956_264, aliases=("cait_xxs24_224",))
    def cait_xxs_24(**kwargs):
        return _create_cait(dict(embed_dim=192, depth=24, num_heads=4), **kwargs)

The registry imports nothing from the rest of the package but the constants:
building a model and loading its weights is :mod:`paddle_vits.factory`
(:func:`~paddle_vits.factory.create_model`), and each model converts official
checkpoints itself (its ``checkpoint_filter``, see ``docs/model_contract.md``).
"""
import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Callable, Optional, Tuple

from .constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD


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
        test_kwargs: Model arguments that keep tests fast (e.g. a smaller ``img_size``);
            the registry-wide tests build every variant with them.
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
    test_kwargs: dict = field(default_factory=dict)

    @property
    def img_size(self):
        """Default eval input side (an int; the registry's variants are square)."""
        return self.input_size[-1]

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
    test_kwargs=None,
):
    """Decorator registering a variant builder under its function name.

    Every argument is a :class:`ModelInfo` field; there is no catch-all, so a
    misspelt keyword is a ``TypeError``.
    """

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
            test_kwargs=dict(test_kwargs or {}),
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
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a registered name such as {min(_REGISTRY, default='cait_xxs_24')!r} "
                         f"(see paddle_vits.list_models()), got {name!r}")
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
    """Whether ``name`` is a registered model or alias."""
    return name in _REGISTRY or name in _ALIASES
