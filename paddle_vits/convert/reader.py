"""Reading checkpoint files into flat ``{name: numpy.ndarray}`` state dicts.

Supported inputs:

* ``.safetensors``: read with the ``safetensors`` numpy API (no torch needed).
* ``.pth`` / ``.pt`` / ``.bin`` (PyTorch zip format): read with
  ``torch.load(weights_only=True)`` when torch is installed. Official
  checkpoints that pickle non-tensor objects (an ``argparse.Namespace``, a yacs
  config) are refused by that loader, and torch may be absent altogether, so
  this module also reads the zip format itself with a *restricted* unpickler:
  it rebuilds tensors as numpy arrays, allows a short list of plain containers
  and replaces every other class by an inert stub. Nothing from the file is
  executed. ``unsafe=True`` instead calls ``torch.load(weights_only=False)``,
  which runs arbitrary pickled code: only for files you trust.
* ``.pdparams``: a Paddle state dict (``paddle.load``).

Why hand-written: no maintained library reads PyTorch's zip checkpoints into
numpy without importing torch, and ``torch.load(weights_only=True)`` rejects
half of the official releases we convert.
"""
import io
import os
import pickle
import zipfile

import numpy as np

__all__ = ["CheckpointError", "read_checkpoint", "unwrap_state_dict"]


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or does not fit the model."""


_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16",
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name):
        self.name = name


class _Stub:
    """Inert stand-in for a pickled class the restricted reader does not trust."""

    def __init__(self, *args, **kwargs):
        self._args = args

    def __setstate__(self, state):
        self._state = state

    def __setitem__(self, key, value):
        self.__dict__.setdefault("_items", {})[key] = value

    def __call__(self, *args, **kwargs):
        return _Stub(*args, **kwargs)


class _OrderedDict(dict):
    """Stand-in for ``collections.OrderedDict``: keeps the items and drops the pickled
    attributes (``state_dict()``'s ``_metadata``), which a plain ``dict`` cannot take."""

    def __setstate__(self, state):
        pass


def _make_stub(module, name):
    return type(name, (_Stub,), {"__module__": "stub." + module})


def _bf16_to_f32(raw):
    return (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def _rebuild_tensor(storage, offset, size, stride, *args):
    data, itemsize = storage
    size = tuple(size)
    if not size:
        return np.array(data[offset])
    arr = np.lib.stride_tricks.as_strided(
        data[offset:], shape=size, strides=tuple(s * itemsize for s in stride)
    )
    return np.array(arr)


def _rebuild_parameter(data, *args):
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    _SAFE = {
        ("collections", "OrderedDict"): _OrderedDict,
        ("builtins", "dict"): dict,
        ("builtins", "list"): list,
        ("builtins", "tuple"): tuple,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "int"): int,
        ("builtins", "float"): float,
        ("builtins", "str"): str,
        ("builtins", "slice"): slice,
        ("torch", "Size"): tuple,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    }

    def __init__(self, file, archive, prefix):
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix
        self._cache = {}

    def find_class(self, module, name):
        if (module, name) in self._SAFE:
            return self._SAFE[(module, name)]
        if module in ("torch", "torch.storage") and name in _STORAGE_DTYPES:
            return _StorageType(name)
        return _make_stub(module, name)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise CheckpointError(f"unsupported persistent id {pid!r} in checkpoint")
        storage_type, key = pid[1], str(pid[2])
        if key not in self._cache:
            if not isinstance(storage_type, _StorageType):
                raise CheckpointError(f"unsupported storage type {storage_type!r}")
            raw = self._archive.read(f"{self._prefix}data/{key}")
            dtype = _STORAGE_DTYPES[storage_type.name]
            if dtype == "bfloat16":
                data, itemsize = _bf16_to_f32(raw), 4
            else:
                data = np.frombuffer(raw, dtype=dtype)
                itemsize = data.itemsize
            self._cache[key] = (data, itemsize)
        return self._cache[key]


def _restricted_torch_load(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = [n for n in names if n.endswith("data.pkl")]
        if not pkl:
            raise CheckpointError(f"{path}: zip archive without data.pkl; not a PyTorch checkpoint")
        prefix = pkl[0][: -len("data.pkl")]
        byteorder = prefix + "byteorder"
        if byteorder in names and archive.read(byteorder).decode().strip() != "little":
            raise CheckpointError(f"{path}: big-endian checkpoints are not supported")
        with archive.open(pkl[0]) as f:
            return _RestrictedUnpickler(io.BytesIO(f.read()), archive, prefix).load()


def _torch_load(path, unsafe):
    import torch

    obj = torch.load(path, map_location="cpu", weights_only=not unsafe)
    return obj


def _to_numpy(value):
    if isinstance(value, np.ndarray):
        return value
    mod = type(value).__module__
    if mod.startswith("torch"):
        t = value.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        return t.numpy()
    if mod.startswith("paddle"):
        return value.numpy()
    return None


def unwrap_state_dict(obj):
    """Find the state dict inside a training checkpoint and flatten it to numpy.

    Accepts a bare state dict or one wrapped as ``{'model': ...}``,
    ``{'state_dict': ...}`` or ``{'model_state_dict': ...}``; strips a
    ``module.`` (DataParallel) prefix. Non-tensor entries are dropped.
    """
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "model_state_dict", "module"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner:
                obj = inner
                break
    if not isinstance(obj, dict):
        raise CheckpointError(f"expected a state dict, found {type(obj).__name__}")
    out = {}
    for k, v in obj.items():
        arr = _to_numpy(v)
        if arr is None:
            continue
        if k.startswith("module."):
            k = k[len("module."):]
        out[k] = arr
    if not out:
        raise CheckpointError("the checkpoint holds no tensors")
    return out


def read_checkpoint(path, unsafe=False):
    """Read a checkpoint file into a flat ``{name: numpy.ndarray}`` dict.

    Args:
        path: ``.pth``/``.pt``/``.bin``/``.safetensors``/``.pdparams`` file.
        unsafe: For PyTorch pickles only: use ``torch.load(weights_only=False)``,
            which executes code stored in the file. Never for untrusted files.

    Raises:
        CheckpointError: missing, truncated, corrupt or unsupported file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path!r}")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"checkpoint {path!r} is empty (0 bytes); download it again")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".safetensors":
            from safetensors.numpy import load_file

            return unwrap_state_dict(load_file(path))
        if ext in (".pdparams", ".pdparam"):
            import paddle

            return unwrap_state_dict(paddle.load(path, return_numpy=True))
        if unsafe:
            return unwrap_state_dict(_torch_load(path, unsafe=True))
        if zipfile.is_zipfile(path):
            return unwrap_state_dict(_restricted_torch_load(path))
        try:
            import torch  # noqa: F401
        except ImportError:
            raise CheckpointError(
                f"{path!r} is not a PyTorch zip checkpoint (a legacy pre-1.6 file, truncated or "
                "corrupt). Legacy files need torch installed; otherwise download the file again."
            ) from None
        return unwrap_state_dict(_torch_load(path, unsafe=False))
    except CheckpointError:
        raise
    except ImportError as e:
        raise CheckpointError(f"reading {path!r} needs a missing package: {e}") from e
    except Exception as e:
        raise CheckpointError(
            f"could not read checkpoint {path!r} ({type(e).__name__}: {e}). "
            "The file is truncated or corrupt, or not a checkpoint: download it again."
        ) from e
