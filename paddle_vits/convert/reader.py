"""Reading checkpoint files into flat ``{name: numpy.ndarray}`` state dicts, without running their code.

Supported inputs:

* ``.safetensors``: parsed here (header and every tensor's byte range checked;
  bfloat16 is read as float32).
* ``.pth`` / ``.pt`` / ``.bin`` (PyTorch zip format): the archive's pickle is
  read by :class:`paddle_vits.utils.safe_pickle.RestrictedUnpickler` with the
  tensor rebuilders added: every tensor's size, strides and offset are checked
  against its storage before it is copied out, and expansion is bounded. The
  metadata objects official releases pickle next to the weights (an
  ``argparse.Namespace``, a yacs config; :data:`_INERT_METADATA`) become inert
  placeholders; any other class is refused with its name. torch is not needed.
* Legacy (pre-1.6, non-zip) PyTorch files: ``torch.load(weights_only=True)``,
  only with torch >= 2.6.
* ``.pdparams`` / ``.pdopt`` / ``.pdckpt``: :func:`paddle_vits.utils.safe_pickle.load_paddle`.

``unsafe=True`` instead calls ``torch.load(weights_only=False)`` or
``paddle.load``, which run arbitrary pickled code: only for files you trust.

Why hand-written: no maintained library reads PyTorch's zip checkpoints into
numpy without importing torch, and ``torch.load(weights_only=True)`` rejects
half of the official releases we convert.
"""
import functools
import io
import json
import math
import os
import zipfile

import numpy as np

from ..utils.cli import UserError
from ..utils.safe_pickle import RestrictedUnpickler, UnsafePickleError, finish, inert_class, load_paddle

__all__ = ["CheckpointError", "check_finite", "read_checkpoint", "unwrap_state_dict"]


class CheckpointError(UserError, ValueError):
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

# Metadata objects the official releases pickle next to the weights; rebuilt as inert placeholders.
_INERT_METADATA = (
    ("argparse", "Namespace"),
    ("yacs.config", "CfgNode"),
    ("pathlib", "PosixPath"),
    ("pathlib", "WindowsPath"),
    ("pathlib", "PurePosixPath"),
    ("pathlib", "PureWindowsPath"),
    ("torch", "device"),
    ("torch.torch_version", "TorchVersion"),
)
_CORRUPT = "corrupt or crafted checkpoint"


class _StorageType:
    def __init__(self, name):
        self.name = name


class _TensorType:
    """Marker for ``torch.Tensor`` / ``torch.nn.Parameter`` in ``_rebuild_from_type_v2``."""


class _Storage:
    """One storage of the zip archive: a flat numpy array of its elements."""

    def __init__(self, data, key):
        self.data = data
        self.key = key


def _bf16_to_f32(raw):
    return (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def _int_tuple(value, what, allow_negative=False):
    if not isinstance(value, (tuple, list)) or len(value) > 32 or not all(
            isinstance(v, int) and not isinstance(v, bool) and (allow_negative or v >= 0) for v in value):
        raise CheckpointError(f"tensor {what} {value!r:.80} is not a tuple of non-negative ints: {_CORRUPT}")
    return tuple(value)


class _Budget:
    """Bytes of tensors rebuilt so far; a crafted file cannot expand a small storage into terabytes."""

    def __init__(self, limit):
        self.limit = limit
        self.used = 0

    def take(self, nbytes):
        self.used += nbytes
        if self.used > self.limit:
            raise CheckpointError(f"the tensors expand to more than {self.limit} bytes from a smaller file "
                                  f"(zero strides): {_CORRUPT}")


def _rebuild_tensor(budget, storage, offset, size, stride, *args):
    """A tensor view of ``storage``, every index checked to lie inside it; returns a copy."""
    if not isinstance(storage, _Storage):
        raise CheckpointError(f"tensor rebuilt from {type(storage).__name__}, not a storage: {_CORRUPT}")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise CheckpointError(f"tensor storage offset {offset!r:.40}: {_CORRUPT}")
    size = _int_tuple(size, "size")
    stride = _int_tuple(stride, "stride")
    if len(size) != len(stride):
        raise CheckpointError(f"tensor size {size} and stride {stride} differ in length: {_CORRUPT}")
    data = storage.data
    numel = math.prod(size)
    if numel == 0:
        return np.empty(size, dtype=data.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if offset >= len(data) or last >= len(data):
        raise CheckpointError(
            f"tensor of size {size}, stride {stride} at offset {offset} reaches element {last} of a storage of "
            f"{len(data)} elements (data/{storage.key}): {_CORRUPT}")
    budget.take(numel * data.itemsize)
    view = np.lib.stride_tricks.as_strided(data[offset:], shape=size,
                                           strides=tuple(s * data.itemsize for s in stride), writeable=False)
    return np.array(view)


def _rebuild_parameter(data, *args):
    if not isinstance(data, np.ndarray):
        raise CheckpointError(f"parameter rebuilt from {type(data).__name__}: {_CORRUPT}")
    return data


def _rebuild_from_type_v2(func, new_type, args, state=None):
    if new_type is not _TensorType or not callable(func) or not isinstance(args, tuple):
        raise CheckpointError(f"torch._tensor._rebuild_from_type_v2 of {new_type!r:.60}: only plain tensors "
                              "and parameters are rebuilt")
    return func(*args)


class _TorchUnpickler(RestrictedUnpickler):
    """The pickle of a PyTorch zip checkpoint: tensors rebuilt (bounds-checked) from the archive's storages."""

    def __init__(self, file, archive, prefix, budget):
        rebuild = functools.partial(_rebuild_tensor, budget)
        extra = {
            ("torch", "Size"): tuple,
            ("torch", "Tensor"): _TensorType,
            ("torch.nn.parameter", "Parameter"): _TensorType,
            ("torch._utils", "_rebuild_tensor_v2"): rebuild,
            ("torch._utils", "_rebuild_tensor"): rebuild,
            ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
            ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
            ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
        }
        extra.update({key: inert_class(*key) for key in _INERT_METADATA})
        extra.update({(mod, name): _StorageType(name)
                      for name in _STORAGE_DTYPES for mod in ("torch", "torch.storage")})
        super().__init__(file, extra=extra)
        self._archive = archive
        self._prefix = prefix
        self._cache = {}

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage"):
            raise CheckpointError(f"unsupported persistent id {pid!r:.80} in checkpoint")
        storage_type, key = pid[1], str(pid[2])
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"unsupported storage type {storage_type!r:.60}")
        if key not in self._cache:
            name = f"{self._prefix}data/{key}"
            try:
                info = self._archive.getinfo(name)
            except KeyError:
                raise CheckpointError(f"the archive lacks storage {name}: {_CORRUPT} (or truncated)") from None
            dtype = _STORAGE_DTYPES[storage_type.name]
            itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
            if info.file_size % itemsize:
                raise CheckpointError(f"storage {name} has {info.file_size} bytes, not a whole number of "
                                      f"{storage_type.name} elements: {_CORRUPT}")
            if len(pid) >= 5 and isinstance(pid[4], int) and pid[4] * itemsize != info.file_size:
                raise CheckpointError(f"storage {name} declares {pid[4]} elements of {itemsize} bytes but holds "
                                      f"{info.file_size} bytes: {_CORRUPT}")
            raw = self._archive.read(name)
            data = _bf16_to_f32(raw) if dtype == "bfloat16" else np.frombuffer(raw, dtype=dtype)
            self._cache[key] = _Storage(data, key)
        return self._cache[key]


_MAX_PICKLE = 1 << 30
_MAX_EXPANSION = 16


def _check_entry(path, info):
    """Refuse a zip entry that would decompress to far more than it occupies (a zip bomb)."""
    if info.compress_type != zipfile.ZIP_STORED and info.file_size > _MAX_EXPANSION * max(info.compress_size, 1 << 16):
        raise CheckpointError(f"{path}: {info.filename} expands from {info.compress_size} to {info.file_size} bytes "
                              f"(PyTorch stores tensors uncompressed): {_CORRUPT}")


def _restricted_torch_load(path):
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            _check_entry(path, info)
        names = archive.namelist()
        pkl = [n for n in names if n.endswith("data.pkl")]
        if not pkl:
            raise CheckpointError(f"{path}: zip archive without data.pkl; not a PyTorch checkpoint")
        prefix = pkl[0][: -len("data.pkl")]
        byteorder = prefix + "byteorder"
        if byteorder in names and archive.read(byteorder).decode("ascii", "replace").strip() != "little":
            raise CheckpointError(f"{path}: big-endian checkpoints are not supported")
        stored = sum(i.file_size for i in archive.infolist())
        budget = _Budget(4 * stored + (64 << 20))
        if archive.getinfo(pkl[0]).file_size > _MAX_PICKLE:
            raise CheckpointError(f"{path}: {pkl[0]} is over {_MAX_PICKLE} bytes: {_CORRUPT}")
        with archive.open(pkl[0]) as f:
            obj = _TorchUnpickler(io.BytesIO(f.read()), archive, prefix, budget).load()
        return finish(obj)


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


_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": "bfloat16",
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_,
}
_MAX_SAFETENSORS_HEADER = 100 << 20


PADDLE_LAYOUT_METADATA = {"format": "paddle_vits", "layout": "paddle"}


def _safetensors_header(path):
    """The JSON header of a ``.safetensors`` file (``None`` when it has none that parses)."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            if n > min(os.path.getsize(path) - 8, _MAX_SAFETENSORS_HEADER):
                return None
            header = json.loads(f.read(n).decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return header if isinstance(header, dict) else None


def is_paddle_layout(path):
    """Whether ``path`` holds weights already in Paddle layout: a ``.pdparams`` file, or a
    ``.safetensors`` file written by :func:`paddle_vits.convert.convert_checkpoint` (its metadata says so)."""
    path = os.fspath(path).lower()
    if path.endswith((".pdparams", ".pdparam")):
        return True
    if path.endswith(".safetensors"):
        header = _safetensors_header(path)
        meta = header.get("__metadata__") if header else None
        return isinstance(meta, dict) and meta.get("layout") == PADDLE_LAYOUT_METADATA["layout"] \
            and meta.get("format") == PADDLE_LAYOUT_METADATA["format"]
    return False


def _read_safetensors(path):
    """A ``.safetensors`` file, header and every tensor's byte range checked; bfloat16 becomes float32."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path!r} is too short for a .safetensors file: the file is truncated or corrupt")
        n = int.from_bytes(head, "little")
        if n > min(size - 8, _MAX_SAFETENSORS_HEADER):
            raise CheckpointError(f"{path!r}: .safetensors header of {n} bytes in a {size}-byte file: "
                                  "the file is truncated or corrupt (or crafted)")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path!r}: unreadable .safetensors header ({e}): {_CORRUPT}") from None
        data = f.read()
    if not isinstance(header, dict):
        raise CheckpointError(f"{path!r}: .safetensors header is not a table: {_CORRUPT}")
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or entry.get("dtype") not in _SAFETENSORS_DTYPES:
            dtype = entry.get("dtype") if isinstance(entry, dict) else entry
            raise CheckpointError(f"{path!r}: tensor {name!r} has unsupported dtype {dtype!r:.40} "
                                  f"(supported: {', '.join(_SAFETENSORS_DTYPES)})")
        shape = _int_tuple(entry.get("shape"), f"{name!r} shape")
        offsets = _int_tuple(entry.get("data_offsets"), f"{name!r} data_offsets")
        dtype = _SAFETENSORS_DTYPES[entry["dtype"]]
        itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
        if len(offsets) != 2 or not offsets[0] <= offsets[1] <= len(data) \
                or offsets[1] - offsets[0] != math.prod(shape) * itemsize:
            raise CheckpointError(f"{path!r}: tensor {name!r} ({entry['dtype']} {shape}) has byte range {offsets} "
                                  f"in a {len(data)}-byte data section: the file is truncated or corrupt (or crafted)")
        raw = data[offsets[0]:offsets[1]]
        arr = _bf16_to_f32(raw) if dtype == "bfloat16" else np.frombuffer(raw, dtype=dtype)
        out[name] = arr.reshape(shape).copy()
    return out


def check_finite(state_dict, what="checkpoint"):
    """Raise :class:`CheckpointError` naming every floating-point tensor that holds NaN or infinity."""
    bad = [k for k, v in state_dict.items()
           if isinstance(v, np.ndarray) and v.dtype.kind in "fc" and not np.isfinite(v).all()]
    if bad:
        shown = ", ".join(sorted(bad)[:5]) + (f" (+{len(bad) - 5} more)" if len(bad) > 5 else "")
        raise CheckpointError(f"{what} has non-finite (NaN/inf) values in {len(bad)} tensors: {shown}",
                              "the weights are broken (a diverged run?); pass --allow-nonfinite / "
                              "allow_nonfinite=True only to load them on purpose")
    return state_dict


def read_checkpoint(path, unsafe=False, allow_nonfinite=False):
    """Read a checkpoint file into a flat ``{name: numpy.ndarray}`` dict.

    Args:
        path: ``.pth``/``.pt``/``.bin``/``.safetensors``/``.pdparams`` file.
        unsafe: Use plain pickle (``torch.load(weights_only=False)`` for PyTorch
            files, ``paddle.load`` for ``.pdparams``), which executes code stored
            in the file. Only for trusted files the restricted reader refuses.
        allow_nonfinite: Accept tensors holding NaN or infinity (refused by default).

    Raises:
        CheckpointError: missing, truncated, corrupt, crafted or unsupported
            file, or non-finite values.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint {path!r} is a directory", "give the weights file inside it")
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path!r}", "check the path")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"checkpoint {path!r} is empty (0 bytes); download it again")
    sd = _read_any(path, unsafe)
    return sd if allow_nonfinite else check_finite(sd, f"checkpoint {path!r}")


def _read_any(path, unsafe):
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".safetensors":
            return unwrap_state_dict(_read_safetensors(path))
        if ext in (".pdparams", ".pdparam", ".pdopt", ".pdckpt"):
            return unwrap_state_dict(load_paddle(path, return_numpy=True, unsafe=unsafe))
        if unsafe:
            return unwrap_state_dict(_torch_load(path, unsafe=True))
        if zipfile.is_zipfile(path):
            return unwrap_state_dict(_restricted_torch_load(path))
        try:
            import torch
        except ImportError:
            raise CheckpointError(
                f"{path!r} is not a PyTorch zip checkpoint (a legacy pre-1.6 file, truncated or "
                "corrupt). Legacy files need torch installed; otherwise download the file again."
            ) from None
        if tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2] if p.isdigit()) < (2, 6):
            raise CheckpointError(f"{path!r} is a legacy (pre-1.6, non-zip) PyTorch file; torch "
                                  f"{torch.__version__} cannot read it safely (weights_only before 2.6 can run "
                                  "code)", "install torch>=2.6, or re-save it in the zip format")
        return unwrap_state_dict(_torch_load(path, unsafe=False))
    except CheckpointError:
        raise
    except UnsafePickleError as e:
        raise CheckpointError(e.what, e.fix) from None
    except ImportError as e:
        raise CheckpointError(f"reading {path!r} needs a missing package: {e}") from e
    except (MemoryError, RecursionError) as e:
        raise CheckpointError(f"could not read checkpoint {path!r} ({type(e).__name__}): {_CORRUPT}") from None
    except Exception as e:
        raise CheckpointError(
            f"could not read checkpoint {path!r} ({type(e).__name__}: {e}). "
            "The file is truncated or corrupt, or not a checkpoint: download it again."
        ) from e
