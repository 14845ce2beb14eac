"""Training checkpoints: one atomically written file with the full resume state."""
import os
import random

import numpy as np
import paddle

from ..utils import atomic_save
from ..utils.safe_pickle import load_paddle

CHECKPOINT_NAME = "checkpoint.pdckpt"


def capture_rng_state():
    """Python, numpy and Paddle (CPU generator) RNG states."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "paddle": paddle.get_rng_state()}


def restore_rng_state(state):
    """Set the RNG states captured by :func:`capture_rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    paddle.set_rng_state(state["paddle"])


def _split_key(key, names):
    """``(parameter name, rest)`` when ``key`` is ``NAME_rest`` for a name in ``names`` (longest wins), else None."""
    best = None
    for name in names:
        if key.startswith(name + "_") and (best is None or len(name) > len(best)):
            best = name
    return None if best is None else (best, key[len(best) + 1:])


def structured_optimizer_state(optimizer, model):
    """``optimizer.state_dict()`` with per-parameter keys renamed to structured names.

    Paddle keys optimizer state by the parameters' unique names
    (``linear_3.w_0_moment1_0``), which depend on how many layers the process
    built before; checkpoints store ``head.weight@moment1_0`` so that any
    process, or a notebook that built other models first, can resume.
    """
    to_structured = {p.name: k for k, p in model.named_parameters()}
    out = {}
    for key, value in optimizer.state_dict().items():
        if key == "master_weights":
            out[key] = {to_structured.get(k, k): v for k, v in value.items()}
            continue
        split = _split_key(key, to_structured)
        out[key if split is None else f"{to_structured[split[0]]}@{split[1]}"] = value
    return out


def load_optimizer_state(optimizer, model, state):
    """Inverse of :func:`structured_optimizer_state`: set ``optimizer`` from a checkpoint's state."""
    to_unique = {k: p.name for k, p in model.named_parameters()}
    out = {}
    for key, value in state.items():
        if key == "master_weights":
            out[key] = {to_unique.get(k, k): v for k, v in value.items()}
            continue
        name, sep, rest = key.partition("@")
        if sep and name not in to_unique:
            raise ValueError(f"the checkpoint's optimizer state has {name!r}, which the model does not")
        out[f"{to_unique[name]}_{rest}" if sep else key] = value
    optimizer.set_state_dict(out)


def save_checkpoint(path, model, optimizer, scheduler, **state):
    """Write model, optimizer, scheduler, RNG states and ``state`` (epoch, step, ...) to ``path``.

    The write goes to a temporary file renamed over ``path``: the previous
    checkpoint survives any crash during the save.
    """
    obj = {"model": model.state_dict(), "optimizer": structured_optimizer_state(optimizer, model),
           "scheduler": scheduler.state_dict(), "rng": capture_rng_state(), **state}
    atomic_save(obj, path)


def load_checkpoint(path):
    """Read a checkpoint written by :func:`save_checkpoint` (``path`` may be its directory)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, CHECKPOINT_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no training checkpoint at {path}; --resume takes the output dir of a run "
                                f"(it holds {CHECKPOINT_NAME})")
    ckpt = load_paddle(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "step" not in ckpt:
        raise ValueError(f"{path} is not a training checkpoint written by paddle_vits.train")
    return ckpt
