"""The training options: one schema, :class:`TrainConfig`, for the API, the CLI and the checkpoints.

Each field's metadata holds its help text, its valid range or choices, what ``None`` means and
whether a resumed run may change it. :func:`build_parser` generates ``scripts/train.py``'s options
from it, :meth:`TrainConfig.check` validates against it (the message names the valid range) and
:func:`merge_resume` uses it to decide which options a ``--resume`` may change.
"""
import argparse
import dataclasses
import difflib
import json
import math
import os

import paddle_vits

from ..utils.cli import UserError, add_common_args


class TrainingError(UserError, RuntimeError):
    """A run that cannot start or continue (bad option, NaN loss, unwritable output)."""


@dataclasses.dataclass(frozen=True)
class Range:
    """A closed or half-open numeric interval; ``None`` bounds are open-ended. Values must be finite."""

    lo: float = None
    hi: float = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, v):
        if not math.isfinite(v):
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)

    def __str__(self):
        if self.lo is not None and self.hi is not None:
            return f"{'(' if self.lo_open else '['}{self.lo}, {self.hi}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {self.lo}"
        return f"{'<' if self.hi_open else '<='} {self.hi}"


POSITIVE = Range(0, lo_open=True)
NON_NEGATIVE = Range(0)
AT_LEAST_1 = Range(1)

# The notebooks' recipes by registry family; other families use DEFAULT_RECIPE. CrossViT is fed its
# native input size (240 px for the _224 variants: the notebook fed 224 px, which the model resized
# to 240 internally).
NATIVE = "native"  # a recipe's img_size: the registry's input size of the model
RECIPES = {
    "crossvit": dict(batch_size=256, lr=3e-4, epochs=100, img_size=NATIVE),
    "wavevit": dict(batch_size=128, lr=1e-4, epochs=50, img_size=224),
}
DEFAULT_RECIPE = dict(batch_size=128, lr=1e-4, epochs=50, img_size=224)
DEFAULT_DATA = os.path.join("data", "cifar-10-python.tar.gz")


def _recipe_default(key):
    per_family = ", ".join(f"{family} {'its native input size' if recipe[key] == NATIVE else recipe[key]}"
                           for family, recipe in RECIPES.items())
    return f"the family's recipe: {per_family}, other families {DEFAULT_RECIPE[key]}"


def _option(default, help, *, range=None, choices=None, unset=None, metavar=None, const=None, resumable=False):
    """A :class:`TrainConfig` field and its CLI description.

    Args:
        range: :class:`Range` of valid values (numbers). choices: valid values (strings).
        unset: what ``None`` means (only for fields whose default is ``None``).
        const: value of the bare flag (``--amp`` alone).
        resumable: ``--resume`` may change it: ``"saved"`` (not given: the saved run's value) or
            ``"now"`` (it applies to one invocation: not given means its default).
    """
    meta = dict(help=help, range=range, choices=choices, unset=unset, metavar=metavar, const=const,
                resumable=resumable)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass
class TrainConfig:
    """Options of :func:`paddle_vits.train.train`; ``None`` fields mean what their ``unset`` says.

    ``scripts/train.py`` offers every field as ``--field-name`` (booleans that default to true as
    ``--no-field-name``). With ``resume``, the options "given" are those on the command line
    (:func:`config_from_argv`), or for a config built in Python those that differ from their default.
    """

    model: str = _option("wavevit_s", "registered model name or alias (python scripts/list_models.py)")
    data: str = _option(None, "cifar-10-python.tar.gz, cifar-100-python.tar.gz, an image folder DIR with "
                              "train/<class>/* and val/<class>/*, or DIR with train_list.txt and val_list.txt "
                              "(PaddleClas lists); a path given here must exist", metavar="PATH",
                        unset=f"{DEFAULT_DATA}, else Paddle's download cache", resumable="saved")
    data_root: str = _option(None, "directory the paths of train_list.txt/val_list.txt are relative to",
                             metavar="DIR", unset="the --data directory", resumable="saved")
    output: str = _option(None, "output dir; one that holds a run needs --resume or --overwrite", metavar="DIR",
                          unset="output/DATA_MODEL (DATA: cifar10, cifar100 or the data folder's name)")
    resume: str = _option(None, "continue the run in DIR with its saved options", metavar="DIR", unset="a new run",
                          resumable="now")
    overwrite: bool = _option(False, "replace the run that --output holds (its checkpoint, weights and logs)")
    epochs: int = _option(None, "training epochs", range=AT_LEAST_1, unset=_recipe_default("epochs"))
    batch_size: int = _option(None, "images per step and process", range=AT_LEAST_1,
                              unset=_recipe_default("batch_size"))
    lr: float = _option(None, "peak learning rate", range=POSITIVE, unset=_recipe_default("lr"))
    min_lr: float = _option(0.0, "final LR of the cosine schedule (at most --lr)", range=NON_NEGATIVE)
    opt: str = _option("adam", "optimizer: Adam with L2 decay (the notebooks) or AdamW", choices=("adam", "adamw"))
    warmup_epochs: float = _option(0.0, "linear LR warm-up, in epochs (at most --epochs)", range=NON_NEGATIVE)
    weight_decay: float = _option(1e-5, "weight decay", range=NON_NEGATIVE)
    smoothing: float = _option(0.1, "label smoothing", range=Range(0, 1, hi_open=True))
    img_size: int = _option(None, "input size of the model (images are resized/cropped to it)", range=Range(1, 1024),
                            unset=_recipe_default("img_size"))
    aug: str = _option(None, "training augmentation: the notebooks' CIFAR recipe, or ImageNet's (RandomResizedCrop "
                             "0.08-1, flip, RandAugment, random erasing; eval: resize to img/0.875, center crop)",
                       choices=("notebook", "imagenet"), unset="notebook for CIFAR archives, imagenet for image "
                                                               "folders and lists")
    randaug_n: int = _option(2, "RandAugment ops per image (--aug imagenet; 0: off)", range=Range(0, 10))
    randaug_m: float = _option(9.0, "RandAugment magnitude (--aug imagenet)", range=Range(0, 10))
    reprob: float = _option(0.25, "random erasing probability (--aug imagenet)", range=Range(0, 1))
    mixup: float = _option(0.0, "Mixup alpha (0: off)", range=NON_NEGATIVE)
    cutmix: float = _option(0.0, "CutMix alpha (0: off)", range=NON_NEGATIVE)
    mixup_prob: float = _option(1.0, "probability of mixing a batch", range=Range(0, 1))
    clip_grad: float = _option(None, "global-norm gradient clipping threshold", range=POSITIVE, unset="no clipping")
    drop_path: float = _option(0.0, "stochastic depth rate", range=Range(0, 1, hi_open=True))
    amp: str = _option(None, "mixed precision on GPU; --amp alone is float16 (CPU: ignored, said so)",
                       choices=("float16", "bfloat16"), const="float16", unset="float32")
    amp_level: str = _option("O1", "AMP level: O1 (per-op casts) or O2 (half-precision weights, float32 master "
                                   "weights through paddle.amp.decorate)", choices=("O1", "O2"))
    recompute: bool = _option(False, "activation checkpointing per block on GPU (less memory, about a third "
                                     "more compute; CPU: ignored, said so)")
    accum_steps: int = _option(1, "gradient accumulation: micro-batches of --batch-size per optimizer step",
                               range=Range(1, 1024), metavar="N")
    model_ema: bool = _option(False, "keep an exponential moving average of the weights (evaluated and saved "
                                     "beside them)")
    model_ema_decay: float = _option(0.9998, "EMA decay per optimizer step", range=Range(0, 1, hi_open=True))
    layer_decay: float = _option(None, "layer-wise LR decay: block i of L trains at lr * decay^(L+1-i)",
                                 range=Range(0, 1, lo_open=True), unset="the same LR everywhere")
    freeze: bool = _option(False, "train only the classifier (linear probing)")
    workers: int = _option(2, "DataLoader worker processes", range=Range(0, 64), resumable="saved")
    seed: int = _option(42, "seed of the initial weights, data order, augmentation and dropout",
                        range=Range(0, 2 ** 32 - 1))
    max_steps: int = _option(None, "stop once N optimizer steps, counted from the start of the run, are done "
                                   "(the run ends after --epochs anyway; with --resume, N >= the checkpoint's step)",
                             range=AT_LEAST_1, unset="all epochs", metavar="N", resumable="now")
    save_every: int = _option(0, "also checkpoint every N steps inside an epoch (0: at epoch ends only)",
                              range=NON_NEGATIVE, metavar="N", resumable="saved")
    pretrained: str = _option(None, "ImageNet weights to fine-tune from: a .pdparams or official file, "
                                    "'pretrained' or a release tag of --model, or a model name (its default "
                                    "release; downloaded and cached)", metavar="FILE|TAG|NAME",
                              unset="random initialisation")
    model_kwargs: dict = _option(None, 'extra model arguments, a JSON object, e.g. \'{"depth": 12}\'',
                                 metavar="JSON", unset="none")
    threads: int = _option(None, "CPU threads", range=Range(1, 1024), unset="the cores / local processes",
                           resumable="saved")
    device: str = _option(None, "where to train", choices=("cpu", "gpu"), unset="gpu when Paddle has one",
                          resumable="now")
    val_batch_size: int = _option(None, "validation batch size", range=AT_LEAST_1, unset="--batch-size",
                                  resumable="saved")
    progress: bool = _option(True, "progress bars", resumable="saved")
    visualdl: bool = _option(True, "VisualDL logs (when visualdl is installed)", resumable="saved")
    eval_only: bool = _option(False, "evaluate the --resume run's checkpoint (and its EMA) and write the "
                                     "evaluation report; no training", resumable="now")

    def check(self):
        """Check every field against its type, range or choices; raise :class:`TrainingError` on the first bad one."""
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if value is None and f.default is None:
                continue
            if not _has_type(value, f.type):
                raise TrainingError(f"{flag(f.name)} must be {_type_name(f.type)}, got {value!r}",
                                    _valid(f) or f"pass {_type_name(f.type)}")
            if f.type is str and not os.fspath(value):
                raise TrainingError(f"{flag(f.name)} is empty", f"give a value or leave it unset for {meta['unset']}"
                                    if f.default is None else "give a value")
            if meta["range"] is not None and value not in meta["range"]:
                raise TrainingError(f"{flag(f.name)} {value} is out of range", _valid(f))
            if meta["choices"] is not None and value not in meta["choices"]:
                raise TrainingError(f"{flag(f.name)} {value!r} is not one of its choices", _valid(f))
        return self


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "a JSON object"}


def _has_type(value, typ):
    if typ is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if typ is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if typ is str:
        return isinstance(value, (str, os.PathLike))
    return isinstance(value, typ)


def _type_name(typ):
    return _TYPE_NAMES[typ]


def flag(name):
    """The CLI flag of field ``name`` (``batch_size`` -> ``--batch-size``)."""
    return "--" + name.replace("_", "-")


def _valid(f):
    meta = f.metadata
    parts = []
    if meta["range"] is not None:
        parts.append(f"valid: {meta['range']}")
    if meta["choices"] is not None:
        parts.append(f"valid: {', '.join(meta['choices'])}")
    if f.default is None and parts:
        parts.append(f"or leave it unset for {meta['unset']}")
    return ", ".join(parts)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
RESUMABLE = tuple(n for n, f in FIELDS.items() if f.metadata["resumable"])


def recipe_for(model_name):
    """The recipe (``batch_size``, ``lr``, ``epochs``, ``img_size``) of the model's registry family."""
    info = paddle_vits.get_model_info(model_name)
    recipe = dict(RECIPES.get(info.family, DEFAULT_RECIPE))
    if recipe["img_size"] == NATIVE:
        recipe["img_size"] = info.input_size[-1]
    return recipe


def _data_name(data):
    """Short name of a dataset path for the default output dir: cifar10, cifar100 or the folder's name."""
    if data is None:
        return "cifar10"
    name = os.path.basename(os.path.normpath(os.fspath(data))).lower()
    for archive in ("cifar-10", "cifar-100"):
        if name.startswith(archive + "-python"):
            return archive.replace("-", "")
    return name.split(".")[0] or "data"


def resolve_config(cfg):
    """Check ``cfg``, fill its ``None`` fields from the model's recipe and check the options together."""
    cfg.check()
    if not paddle_vits.is_model(cfg.model):
        close = difflib.get_close_matches(cfg.model, paddle_vits.list_models(include_aliases=True), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise TrainingError(f"unknown model {cfg.model!r}", f"{hint}see python scripts/list_models.py")
    cfg = dataclasses.replace(cfg, model=paddle_vits.get_model_info(cfg.model).name)
    for k, v in recipe_for(cfg.model).items():
        if getattr(cfg, k) is None:
            setattr(cfg, k, v)
    if cfg.output is None:
        cfg.output = os.path.join("output", f"{_data_name(cfg.data)}_{cfg.model}")
    cfg.output = os.fspath(cfg.output)
    if cfg.data is not None:
        cfg.data = os.path.abspath(cfg.data)  # a resumed run finds it from any working directory
    if cfg.min_lr > cfg.lr:
        raise TrainingError(f"--min-lr {cfg.min_lr} is above --lr {cfg.lr}",
                            "the cosine schedule decays from --lr to --min-lr: use --min-lr <= --lr")
    if cfg.warmup_epochs > cfg.epochs:
        raise TrainingError(f"--warmup-epochs {cfg.warmup_epochs} is longer than --epochs {cfg.epochs}",
                            "use --warmup-epochs <= --epochs")
    if (cfg.mixup or cfg.cutmix) and cfg.batch_size % 2:
        raise TrainingError(f"--mixup/--cutmix mix a batch with its reverse: --batch-size {cfg.batch_size} is odd",
                            "use an even --batch-size")
    if cfg.eval_only and not cfg.resume:
        raise TrainingError("--eval-only evaluates a run's checkpoint: it needs --resume DIR",
                            "pass --resume with the run's output directory")
    if cfg.model_kwargs is not None and not cfg.model_kwargs.keys().isdisjoint({"num_classes", "img_size",
                                                                                "drop_path_rate"}):
        raise TrainingError(f"--model-kwargs {json.dumps(cfg.model_kwargs)} sets an option train.py sets itself",
                            "use --img-size and --drop-path; the classes come from the data")
    return cfg


def explicit_options(cfg):
    """Names of the options the user set: those given on the command line, else those off their default."""
    given = getattr(cfg, "_given", None)
    if given is not None:
        return set(given)
    return {n for n, f in FIELDS.items() if getattr(cfg, n) != f.default}


def merge_resume(cfg, saved):
    """The configuration of a resumed run: the saved run's options plus the resumable ones ``cfg`` sets.

    ``max_steps`` applies to one invocation (not given: run to the end); the other resumable options
    keep their saved values unless given.

    Args:
        cfg: The options given with ``--resume``.
        saved: The checkpoint's ``config`` dict.

    Raises:
        TrainingError: ``cfg`` sets an option a resumed run cannot change (the message lists each with
            its saved value), ``--output`` is not the resumed directory, or ``--overwrite`` is given.
    """
    unknown = sorted(set(saved) - set(FIELDS))
    if unknown:
        raise TrainingError(f"--resume {cfg.resume}: the checkpoint has options this version does not know "
                            f"({', '.join(unknown)})", "resume it with the paddle_vits version that wrote it")
    saved = TrainConfig(**saved)
    given = explicit_options(cfg)
    if "overwrite" in given and cfg.overwrite:
        raise TrainingError("--overwrite and --resume exclude each other",
                            "--resume continues the run; --overwrite (without --resume) replaces it")
    run_dir = os.fspath(cfg.resume)
    if os.path.isfile(run_dir):  # the checkpoint file itself
        run_dir = os.path.dirname(run_dir) or "."
    if cfg.output is not None and os.path.realpath(cfg.output) != os.path.realpath(run_dir):
        raise TrainingError(f"--output {cfg.output} is not the resumed run's directory {run_dir}",
                            "a resumed run writes into its own directory: drop --output (to branch a run, copy "
                            "its directory and resume the copy)")
    changed = []
    for name in sorted(given - set(RESUMABLE) - {"output", "overwrite"}):
        mine, theirs = getattr(cfg, name), getattr(saved, name)
        if name == "model" and paddle_vits.is_model(mine):
            mine = paddle_vits.get_model_info(mine).name
        if mine != theirs:
            changed.append(f"{flag(name)} {mine} (saved: {theirs})")
    if changed:
        raise TrainingError(f"--resume continues the saved run with its own options; cannot change "
                            f"{', '.join(changed)}",
                            f"drop them, or start a new run with another --output; a resumed run may change "
                            f"{', '.join(flag(n) for n in RESUMABLE if n != 'resume')}")
    updates = {n: getattr(cfg, n) for n in RESUMABLE
               if n in given or FIELDS[n].metadata["resumable"] == "now"}
    return dataclasses.replace(saved, output=run_dir, overwrite=False, **updates)


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are :class:`UserError` (one line, exit 2 through ``utils.cli.run``)."""

    def error(self, message):
        raise UserError(message, f"see {self.prog} --help")


def _json_object(text):
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON object")
    return value


def _help(f):
    meta = f.metadata
    parts = [meta["help"]]
    if meta["range"] is not None:
        parts.append(f"valid: {meta['range']}")
    if f.default is None:
        parts.append(f"default: {meta['unset']}")
    elif f.type is not bool:
        parts.append(f"default: {f.default}")
    return "; ".join(parts)


def build_parser(prog=None, description=None):
    """``scripts/train.py``'s parser, generated from :class:`TrainConfig` (plus ``--debug``).

    Only the options given on the command line end up in the parsed namespace.
    """
    p = _Parser(prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
                argument_default=argparse.SUPPRESS)
    for name, f in FIELDS.items():
        meta = f.metadata
        if f.type is bool:
            on = not f.default
            p.add_argument(flag(name) if on else "--no-" + name.replace("_", "-"), dest=name,
                           action="store_true" if on else "store_false",
                           help=meta["help"] if on else f"no {meta['help']}")
            continue
        kw = dict(dest=name, help=_help(f), type=_json_object if f.type is dict else f.type)
        if meta["choices"] is not None:
            kw["choices"] = meta["choices"]
        if meta["metavar"] is not None:
            kw["metavar"] = meta["metavar"]
        if meta["const"] is not None:
            kw.update(nargs="?", const=meta["const"])
        p.add_argument(flag(name), **kw)
    add_common_args(p)
    return p


def read_config_file(path):
    """The options of a YAML recipe file: a mapping whose keys are :class:`TrainConfig` field names.

    Raises:
        TrainingError: missing or unparsable file, not a mapping, an unknown key (the message names the
            closest field), or a value of the wrong type.
    """
    import yaml

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise TrainingError(f"--config {path} does not exist", "give a YAML recipe file, e.g. configs/cifar10/*.yaml")
    try:
        with open(path, encoding="utf-8-sig") as f:
            raw = yaml.safe_load(f)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise TrainingError(f"--config {path} is not valid YAML ({e})".replace("\n", " "), "fix the file") from e
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise TrainingError(f"--config {path} holds a {type(raw).__name__}, not a mapping of options",
                            "write one 'option: value' per line (keys are the option names with _)")
    out = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in FIELDS or name in ("resume", "overwrite", "eval_only"):
            close = difflib.get_close_matches(name, [n for n in FIELDS if n not in ("resume", "overwrite")], n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise TrainingError(f"--config {path}: unknown option {key!r}",
                                f"{hint}the keys are the options of scripts/train.py --help, with _ for -")
        f = FIELDS[name]
        if f.type is float and isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if value is not None and not _has_type(value, f.type):
            raise TrainingError(f"--config {path}: {name} must be {_type_name(f.type)}, got {value!r}",
                                _valid(f) or f"give {_type_name(f.type)}")
        out[name] = value
    return out


def config_to_yaml(cfg):
    """``cfg`` as a YAML recipe that :func:`read_config_file` reads back to the same options."""
    import yaml

    d = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("resume", "overwrite", "eval_only")}
    return yaml.safe_dump(d, sort_keys=False)


def config_from_argv(argv=None, prog=None, description=None):
    """Parse ``argv`` (with ``--config FILE``: the file's options, overridden by the command line's) into a
    :class:`TrainConfig` that remembers which options were given."""
    parser = build_parser(prog, description)
    parser.add_argument("--config", metavar="FILE", help="YAML recipe (configs/): its keys are these options' "
                                                         "names with _; command-line options override it")
    ns = vars(parser.parse_args(argv))
    given = {k: v for k, v in ns.items() if k in FIELDS}
    if ns.get("config"):
        given = {**read_config_file(ns["config"]), **given}
    cfg = TrainConfig(**given)
    cfg._given = frozenset(given)
    return cfg
