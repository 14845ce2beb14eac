"""Parity fixtures: the official implementation's logits on seeded random weights.

A fixture ``tests/fixtures/<name>.npz`` holds no weights. It holds:

* ``meta``: JSON with ``model`` (registered name), ``kwargs`` (model
  arguments), ``seed``, ``keys`` (the official state dict's ``[name, shape,
  dtype]`` list, in order), ``source`` (where the reference came from) and
  ``atol``;
* ``logits``: the reference implementation's output on the input
  ``seeded_input(meta["input_shape"], meta["seed"])``.

Both sides rebuild the same weights from ``keys`` and ``seed`` with
:func:`seeded_state_dict` (numpy only), so a full-size model's parity is
checked in CI without torch and without storing its weights. The generating
scripts (``tests/fixtures/make_*_fixtures.py``) load these weights into the
official PyTorch model (run from a checkout under /tmp, never committed) and
record its logits; each script's docstring says how to regenerate.
"""
import json
import zlib

import numpy as np


def _key_seed(seed, name):
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**32)


def seeded_value(name, shape, dtype, seed):
    """Deterministic pseudo-random tensor for one state-dict entry.

    Matrices and kernels ~ N(0, 1/fan_in); norm weights ~ 1 + N(0, 0.1);
    BatchNorm running variances in [0.5, 1.5]; other vectors ~ N(0, 0.1);
    integer buffers are zeros.
    """
    shape = tuple(int(s) for s in shape)
    if not np.issubdtype(np.dtype(dtype), np.floating):
        return np.zeros(shape, dtype=dtype)
    rng = np.random.default_rng(_key_seed(seed, name))
    leaf = name.rsplit(".", 1)[-1]
    if leaf in ("running_var",):
        v = rng.uniform(0.5, 1.5, size=shape)
    elif len(shape) >= 2:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 2 else shape[-1]
        fan_in = max(fan_in, 1)
        v = rng.standard_normal(shape) / np.sqrt(fan_in)
    elif leaf == "weight" and "norm" in name.lower():
        v = 1.0 + 0.1 * rng.standard_normal(shape)
    else:
        v = 0.1 * rng.standard_normal(shape)
    return v.astype(dtype)


def seeded_state_dict(keys, seed):
    """``{name: array}`` for ``keys`` = ``[[name, shape, dtype], ...]``."""
    return {name: seeded_value(name, shape, dtype, seed) for name, shape, dtype in keys}


def seeded_input(shape, seed):
    return np.random.default_rng(seed + 7).standard_normal(shape).astype(np.float32)


def save_fixture(path, model, kwargs, keys, seed, input_shape, logits, source, atol=1e-4):
    """Write a fixture. ``keys``: ``[[name, list(shape), dtype_str], ...]`` of the official state dict."""
    meta = dict(model=model, kwargs=kwargs, keys=keys, seed=seed, input_shape=list(input_shape),
                source=source, atol=atol)
    np.savez_compressed(path, meta=np.array(json.dumps(meta)), logits=np.asarray(logits, dtype=np.float32))


def load_fixture(path):
    """``(meta, input, logits)`` of a fixture, the input regenerated from its seed."""
    with np.load(path) as f:
        meta = json.loads(str(f["meta"]))
        logits = f["logits"]
    return meta, seeded_input(meta["input_shape"], meta["seed"]), logits


# Gradient fixtures (``tests/fixtures/grad/<name>.npz``): a parity fixture (``meta``, ``logits``) plus
# ``grad_input`` and ``grad/<official key>`` for every official parameter: the gradients of
# ``sum(logits * seeded_cotangent(logits.shape, seed))``, the reference model in eval mode.


def seeded_cotangent(shape, seed):
    """Fixed weights of the gradient fixtures' loss ``sum(logits * cotangent)``."""
    return np.random.default_rng(seed + 11).standard_normal(shape).astype(np.float32)


def save_grad_fixture(path, model, kwargs, keys, seed, input_shape, logits, grad_input, grads, source,
                      atol=1e-4, rtol=1e-4):
    """Write a gradient fixture; ``grads``: ``{official parameter name: gradient array}``."""
    meta = dict(model=model, kwargs=kwargs, keys=keys, seed=seed, input_shape=list(input_shape), source=source,
                atol=atol, rtol=rtol, loss="sum(logits * seeded_cotangent(logits.shape, seed)), eval mode")
    arrays = {f"grad/{k}": np.asarray(v, dtype=np.float32) for k, v in grads.items()}
    np.savez_compressed(path, meta=np.array(json.dumps(meta)), logits=np.asarray(logits, dtype=np.float32),
                        grad_input=np.asarray(grad_input, dtype=np.float32), **arrays)


def load_grad_fixture(path):
    """``(meta, input, logits, grad_input, {official parameter name: gradient})``."""
    with np.load(path) as f:
        meta = json.loads(str(f["meta"]))
        grads = {k[len("grad/"):]: f[k] for k in f.files if k.startswith("grad/")}
        logits, grad_input = f["logits"], f["grad_input"]
    return meta, seeded_input(meta["input_shape"], meta["seed"]), logits, grad_input, grads
