"""Training checkpoints: one atomically written file with the full resume state.

The file holds only dicts, lists, tuples, numpy arrays, scalars and strings (tensors are stored as
numpy arrays), so a restricted unpickler can read it. Paddle's RNG is not stored: the engine re-seeds
it from ``(seed, step, rank)`` before every step.
"""
import os
import random

import numpy as np
import paddle

from ..utils import atomic_save
from ..utils.safe_pickle import UnsafePickleError, load_paddle

CHECKPOINT_NAME = "checkpoint.pdckpt"


def capture_rng_state():
    """Python's and numpy's global RNG states."""
    return {"python": random.getstate(), "numpy": np.random.get_state()}


def restore_rng_state(state):
    """Set the RNG states captured by :func:`capture_rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(tuple(state["numpy"]))


def to_numpy(obj):
    """``obj`` with every tensor (in nested dicts, lists and tuples) replaced by its numpy array."""
    if isinstance(obj, paddle.Tensor):
        return obj.numpy()
    if isinstance(obj, dict):
        return {k: to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_numpy(v) for v in obj)
    return obj


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


def save_checkpoint(path, model, optimizer, scheduler, scaler=None, **state):
    """Write model, optimizer, scheduler, AMP loss scaler, RNG states and ``state`` (epoch, step, ...) to ``path``.

    The write goes to a temporary file renamed over ``path``: the previous
    checkpoint survives any crash during the save.
    """
    obj = {"model": model.state_dict(), "optimizer": structured_optimizer_state(optimizer, model),
           "scheduler": scheduler.state_dict(), "rng": capture_rng_state(),
           "scaler": scaler.state_dict() if scaler is not None else None, **state}
    atomic_save(to_numpy(obj), path)


def load_checkpoint(path):
    """Read a checkpoint written by :func:`save_checkpoint` (``path`` may be its directory)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, CHECKPOINT_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no training checkpoint at {path}; --resume takes the output dir of a run "
                                f"(it holds {CHECKPOINT_NAME})")
    try:
        ckpt = load_paddle(path, return_numpy=True)
    except UnsafePickleError:
        raise
    except Exception as e:  # any unpickling failure of a damaged file
        raise ValueError(f"{path} is unreadable ({type(e).__name__}: {e}); resume from an intact copy or start "
                         "again with --overwrite") from e
    _check_contents(ckpt, path)
    return ckpt


_CONTENTS = {"model": dict, "optimizer": dict, "scheduler": dict, "rng": dict, "step": int, "best_acc": float,
             "epoch_sums": (list, tuple), "config": dict}


def _check_contents(ckpt, path):
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path} is not a training checkpoint written by paddle_vits.train")
    bad = [k for k, t in _CONTENTS.items() if not isinstance(ckpt.get(k), t if k not in ("step", "best_acc")
                                                             else (int, float, np.number))]
    if bad:
        raise ValueError(f"{path} is not a training checkpoint written by paddle_vits.train (no valid "
                         f"{', '.join(bad)})")
