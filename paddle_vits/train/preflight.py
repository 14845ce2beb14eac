"""Everything that may fail before a run writes anything: options, checkpoint, output dir, data, model.

:func:`start` runs these checks in that order; :func:`check_resume_fits` compares a checkpoint with the
run that would continue it (data, batch geometry, weights).
"""
import json
import os
import random
import zlib

import numpy as np
import paddle
import paddle.distributed as dist

import paddle_vits

from ..data.cifar import find_or_download_cifar10, read_cifar10
from ..data.datasets import read_dataset
from ..utils.device import select_device
from ..utils.safe_pickle import UnsafePickleError
from .checkpoint import load_checkpoint
from .config import TrainingError, merge_resume, resolve_config
from .runlog import run_files


def load_for_finetune(model, path, model_name):
    """Load ImageNet weights for fine-tuning: classifier re-initialised, position embeddings resized.

    ``path`` is a weights file, ``"pretrained"`` (the default release) or a
    release tag (:func:`paddle_vits.hub.weights_file`: downloaded and cached).
    Returns the list of re-initialised classifier keys.
    """
    from ..convert import CheckpointError, load_pretrained
    from ..hub import WeightsError, weights_file

    source = model_name
    if not os.path.isfile(os.fspath(path)) and paddle_vits.is_model(path):  # a model name: its default release
        source = paddle_vits.get_model_info(path).name
        if paddle_vits.get_model_info(model_name).family != paddle_vits.get_model_info(source).family:
            raise TrainingError(f"--pretrained {path} is a {paddle_vits.get_model_info(source).family} model; "
                                f"--model {model_name} is not", "give a model of the same family, or a file")
        path = "pretrained"
    try:
        path = weights_file(source, path)
    except WeightsError as e:
        raise TrainingError(f"--pretrained {path}: {e.what}", e.fix) from e
    try:
        return load_pretrained(model, path, source, reinit_head=True, resize_pos_embed=True)
    except (CheckpointError, ValueError) as e:
        raise TrainingError(f"--pretrained {path}: {e}") from e


def data_geometry(data, batch_size, world, accum_steps=1):
    """What a resumed run must share with its checkpoint: data kind and sizes, classes, labels (and, for
    file datasets, the files' names) and the batch layout."""
    (train_items, train_labels), (_, val_labels) = data["train"], data["test"]
    geometry = {"kind": data.get("kind", "cifar10"), "train_images": int(len(train_labels)),
                "val_images": int(len(val_labels)), "classes": list(data["classes"]),
                "labels_crc32": zlib.crc32(np.ascontiguousarray(train_labels, dtype=np.int64)),
                "world_size": int(world), "batch_size": int(batch_size), "accum_steps": int(accum_steps),
                "steps_per_epoch": int(len(train_labels)) // (batch_size * accum_steps * world)}
    if len(train_items) and isinstance(train_items[0], str):
        geometry["files_crc32"] = zlib.crc32("\n".join(os.path.relpath(p, os.path.commonpath(list(train_items)))
                                                       for p in train_items).encode("utf-8"))
    return geometry


def check_resume_fits(ckpt, geometry, model, cfg):
    """Raise :class:`TrainingError` naming what differs between the checkpoint and this run."""
    saved = ckpt.get("geometry") or {}
    diffs = [f"{k} {saved[k]} -> {v}" for k, v in geometry.items() if k in saved and saved[k] != v]
    if diffs:
        raise TrainingError(f"--resume {cfg.resume}: this run does not match the checkpoint ({'; '.join(diffs)})",
                            "resume with the run's data and the same number of processes")
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(np.shape(v)) for k, v in ckpt["model"].items()}
    diffs = ([f"missing {k}" for k in sorted(own.keys() - theirs.keys())]
             + [f"unexpected {k}" for k in sorted(theirs.keys() - own.keys())]
             + [f"{k} {theirs[k]} vs {own[k]}" for k in sorted(own.keys() & theirs.keys()) if own[k] != theirs[k]])
    if diffs:
        more = f" and {len(diffs) - 3} more" if len(diffs) > 3 else ""
        raise TrainingError(f"--resume {cfg.resume}: the checkpoint's weights do not fit {cfg.model} "
                            f"({', '.join(diffs[:3])}{more})", "resume with the paddle_vits version that wrote it")
    if cfg.max_steps is not None and cfg.max_steps < int(ckpt["step"]):
        raise TrainingError(f"--max-steps {cfg.max_steps} is below the checkpoint's step {int(ckpt['step'])}",
                            "--max-steps counts from the start of the run: give a larger value or omit it")


def build_model(cfg, num_classes):
    """The configured model; a build error is reported with the model's own message."""
    kwargs = cfg.model_kwargs or {}
    try:
        return paddle_vits.create_model(cfg.model, num_classes=num_classes, img_size=cfg.img_size,
                                        drop_path_rate=cfg.drop_path, **kwargs)
    except TypeError as e:
        if not kwargs:
            raise
        raise TrainingError(f"cannot build {cfg.model} with the model arguments {json.dumps(kwargs)}: {e}",
                            "check --model-kwargs") from e
    except ValueError as e:
        given = f"img_size={cfg.img_size}" + "".join(f", {k}={v!r}" for k, v in kwargs.items())
        raise TrainingError(f"cannot build {cfg.model} with {given}: {e}",
                            "change --img-size or --model-kwargs") from e


def check_output(cfg, resuming):
    """Refuse an output directory that holds a run (unless resumed or ``overwrite``) or cannot be written."""
    out = cfg.output
    if os.path.exists(out) and not os.path.isdir(out):
        raise TrainingError(f"cannot write to output dir {out!r}: it is a file", "pass a writable --output")
    found = run_files(out) if os.path.isdir(out) and not resuming else []
    if found and not cfg.overwrite:
        raise TrainingError(f"{out} holds a run ({', '.join(found[:3])}{', ...' if len(found) > 3 else ''})",
                            f"continue it with --resume {out}, replace it with --overwrite, or pass another --output")
    parent = os.path.abspath(out)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise TrainingError(f"cannot write to output dir {out!r} ({parent} is not a writable directory)",
                            "pass a writable --output")


def start(cfg, data):
    """Everything that may fail before the first write: options, checkpoint, output dir, data and model."""
    select_device(cfg.device, verbose=dist.get_rank() == 0)
    ckpt = None
    if cfg.resume:
        try:
            ckpt = load_checkpoint(cfg.resume)
        except UnsafePickleError as e:  # damaged or hostile: its own message and fix
            raise TrainingError(f"--resume {cfg.resume}: {e.what}", e.fix) from e
        except (OSError, ValueError) as e:
            raise TrainingError(f"--resume {cfg.resume}: {e}",
                                "--resume takes the output dir of a run (it holds a checkpoint)") from e
        cfg = merge_resume(cfg, ckpt["config"])
    cfg = resolve_config(cfg)
    if dist.get_rank() == 0:
        check_output(cfg, resuming=ckpt is not None)
    if data is None:
        data = (read_dataset(cfg.data, cfg.data_root) if cfg.data is not None
                else {**read_cifar10(find_or_download_cifar10(None)), "kind": "cifar10"})
    if cfg.aug is None:
        cfg.aug = "notebook" if data.get("kind", "cifar10").startswith("cifar") else "imagenet"
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    paddle.seed(cfg.seed)  # the model's initial weights (same on every rank)
    model = build_model(cfg, len(data["classes"]))
    reinitialised = load_for_finetune(model, cfg.pretrained, cfg.model) if cfg.pretrained and ckpt is None else None
    return cfg, ckpt, data, model, reinitialised
