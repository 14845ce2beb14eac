"""Restricted unpickling: the one way the package reads a pickle it did not write in this process.

``pickle.load`` (and ``paddle.load``, which is ``pickle.load``) runs whatever
callable a file names: a weights file from a stranger can run a shell command.
The loaders here rebuild only what ``paddle.save`` of a state dict, an
optimizer state or a training checkpoint, a CIFAR-10 batch and the pickle
inside a PyTorch zip checkpoint hold:

* containers and scalars: ``dict``, ``collections.OrderedDict``, ``list``,
  ``tuple``, ``set``, ``frozenset``, ``int``, ``float``, ``complex``, ``bool``,
  ``str``, ``bytes``, ``None``;
* numpy arrays, numpy scalars and dtypes of numeric or bool kind (rebuilt by
  this module from the raw bytes, with their size checked against the shape
  and dtype; never ``ndarray.__setstate__`` or object arrays);
* what Paddle itself writes: ``(name, ndarray)`` tuples (Tensors inside nested
  dicts, via ``builtins.tuple``), ``eval('data', {'data': ndarray})`` (a
  ``DenseTensor``; only that exact literal form), ``_codecs.encode(str,
  'latin1')`` (bytes in protocol 2), and ``paddle.base.libpaddle.GeneratorState``
  (RNG states of a training checkpoint), checked field by field.

Anything else is refused with :class:`UnsafePickleError` naming the class the
file asked for; nothing from the file is called. :func:`load_paddle` is the
drop-in for ``paddle.load`` (same Tensor/numpy results); ``unsafe=True`` calls
``paddle.load`` itself, which executes code stored in the file: only for
trusted legacy files whose contents the restricted loader does not rebuild.
"""
import collections
import io
import math
import os
import pickle
import sys

import numpy as np

from .cli import UserError

__all__ = ["UnsafePickleError", "RestrictedUnpickler", "safe_loads", "safe_load_file", "load_paddle",
           "ALLOWED_DTYPE_KINDS"]

ALLOWED_DTYPE_KINDS = "biufc"  # bool, signed, unsigned, float, complex
_MAX_GENERATOR_STATE = 1 << 20
_FIX_UNSAFE = ("if the file comes from a source you trust completely, --unsafe-pickle / unsafe=True loads it "
               "with plain pickle, which runs code stored in the file")


class UnsafePickleError(UserError, ValueError):
    """A pickle names a class the restricted loader does not rebuild, or is malformed."""


class _NdarrayType:
    """Marker for ``numpy.ndarray`` as it appears in a pickle (the ``_reconstruct`` argument)."""


class _DtypeProxy:
    """A numeric numpy dtype named by a pickle; its byte order is set by ``BUILD``."""

    __hash__ = None  # proxies cannot become dict keys or set members (they are replaced after loading)

    def __init__(self, spec, align=False, copy=True):
        if isinstance(spec, bytes):  # Python 2 pickles read with encoding="bytes" (the CIFAR-10 batches)
            spec = spec.decode("ascii", "replace")
        if not isinstance(spec, str) or len(spec) > 8:
            raise UnsafePickleError(f"numpy dtype {spec!r} is not a plain type code")
        try:
            dtype = np.dtype(spec)
        except TypeError as e:
            raise UnsafePickleError(f"unknown numpy dtype {spec!r}") from e
        if dtype.kind not in ALLOWED_DTYPE_KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise UnsafePickleError(f"numpy dtype {spec!r} (kind {dtype.kind!r}) is not numeric: object, string "
                                    "and structured arrays are not rebuilt")
        self.dtype = dtype

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) < 2 or not isinstance(state[1], (str, bytes)):
            raise UnsafePickleError(f"malformed numpy dtype state {state!r:.80}")
        order = state[1].decode("ascii", "replace") if isinstance(state[1], bytes) else state[1]
        if order not in ("<", ">", "=", "|"):
            raise UnsafePickleError(f"numpy dtype byte order {order!r} is not one of < > = |")
        if any(v is not None for v in state[2:5]):
            raise UnsafePickleError("structured or sub-array numpy dtypes are not rebuilt")
        if order in "<>":
            self.dtype = self.dtype.newbyteorder(order)


def _as_bytes(data):
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if isinstance(data, str):  # protocol-2 pickles of Python 2 origin, read with encoding="latin1"
        return data.encode("latin1")
    raise UnsafePickleError(f"array data is {type(data).__name__}, not bytes")


def _native(arr):
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and sys.byteorder == "big"):
        return arr.astype(arr.dtype.newbyteorder("="))
    return arr


class _ArrayProxy:
    """A numpy array rebuilt from ``(shape, dtype, fortran, raw bytes)``, sizes checked."""

    __hash__ = None

    def __init__(self):
        self.array = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise UnsafePickleError("malformed numpy array state")
        shape, dtype, fortran, data = state[-4:]
        if not isinstance(dtype, _DtypeProxy):
            raise UnsafePickleError(f"numpy array state names {type(dtype).__name__} as its dtype")
        if not isinstance(shape, tuple) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                   for s in shape) or len(shape) > 32:
            raise UnsafePickleError(f"numpy array shape {shape!r:.80} is not a tuple of non-negative ints")
        data = _as_bytes(data)
        dt = dtype.dtype
        need = math.prod(shape) * dt.itemsize
        if need != len(data):
            raise UnsafePickleError(f"numpy array of shape {shape} and dtype {dt} needs {need} bytes, the file "
                                    f"holds {len(data)}: corrupt or crafted file")
        arr = np.frombuffer(data, dtype=dt).reshape(shape, order="F" if fortran else "C")
        self.array = _native(np.array(arr, order="C"))


def _reconstruct(subtype, shape, typecode):
    if subtype is not _NdarrayType:
        raise UnsafePickleError(f"numpy _reconstruct of {getattr(subtype, '__name__', subtype)!r}: only plain "
                                "numpy.ndarray is rebuilt")
    return _ArrayProxy()


def _scalar(dtype, data=None):
    if not isinstance(dtype, _DtypeProxy):
        raise UnsafePickleError(f"numpy scalar of {type(dtype).__name__}")
    data = _as_bytes(data)
    if len(data) != dtype.dtype.itemsize:
        raise UnsafePickleError(f"numpy {dtype.dtype} scalar with {len(data)} bytes: corrupt or crafted file")
    return _native(np.frombuffer(data, dtype=dtype.dtype).copy())[0]


def _codecs_encode(obj, encoding="utf-8", errors="strict"):
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise UnsafePickleError("_codecs.encode is rebuilt only as encode(str, 'latin1') (protocol-2 bytes)")
    return obj.encode("latin1")


def _paddle_dense_tensor(expr, scope=None, *rest):
    """``paddle.save`` writes a ``DenseTensor`` as ``eval('data', {'data': ndarray})``; nothing else is evaluated."""
    if expr == "data" and not rest and isinstance(scope, dict) and set(scope) == {"data"} \
            and isinstance(scope["data"], _ArrayProxy):
        return scope["data"]
    raise UnsafePickleError(f"the file calls builtins.eval on {expr!r:.60}: code execution refused",
                            _FIX_UNSAFE)


class _GeneratorStateProxy:
    """``paddle.base.libpaddle.GeneratorState`` fields, type-checked, rebuilt after loading."""

    __hash__ = None

    def __init__(self, *args):
        if args:
            raise UnsafePickleError("GeneratorState called with arguments")
        self.state = None

    def __setstate__(self, state):
        # Paddle 3.x: (device, seed, offset, engine state as a list of digit/space bytes);
        # Paddle 2.6: (device, seed, offset).
        ok = (isinstance(state, tuple) and len(state) in (3, 4)
              and all(isinstance(v, int) and -(1 << 63) <= v < (1 << 64) for v in state[:3])
              and (len(state) == 3 or (isinstance(state[3], list) and len(state[3]) <= _MAX_GENERATOR_STATE
                                       and all(isinstance(c, int) and c in b"0123456789 -\n" for c in state[3]))))
        if not ok:
            raise UnsafePickleError("malformed Paddle GeneratorState (RNG state): corrupt or crafted checkpoint")
        self.state = state


class InertObject:
    """Placeholder for a metadata object a format is known to carry (a pickled ``argparse.Namespace``).

    It takes whatever the pickle hands it and keeps nothing: no method of the
    original class exists here, so nothing from the file runs. Only formats
    that list such classes explicitly (the PyTorch reader) ever build one.
    """

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass

    def append(self, value):
        pass

    def extend(self, values):
        pass


def inert_class(module, name):
    """A fresh :class:`InertObject` subclass standing for ``module.name``."""
    return type(name, (InertObject,), {"__module__": "inert." + module})


class _OrderedDict(collections.OrderedDict):
    """``collections.OrderedDict`` that ignores pickled attributes (``state_dict()._metadata``)."""

    def __setstate__(self, state):
        pass


class _ObjectMarker:
    """``builtins.object`` as the base argument of ``copyreg._reconstructor``; never instantiated from a file."""

    def __new__(cls, *args, **kwargs):
        raise UnsafePickleError("builtins.object is only rebuilt as copyreg._reconstructor's base")


def _reconstructor(cls, base, state=None):
    """``copyreg._reconstructor`` (protocol 0/1 objects), only for inert placeholders."""
    if isinstance(cls, type) and issubclass(cls, InertObject):
        return cls()
    raise UnsafePickleError(f"copyreg._reconstructor of {getattr(cls, '__name__', cls)!r} refused", _FIX_UNSAFE)


_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")

SAFE_GLOBALS = {
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "tuple"): tuple,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "int"): int,
    ("builtins", "float"): float,
    ("builtins", "complex"): complex,
    ("builtins", "bool"): bool,
    ("builtins", "str"): str,
    ("builtins", "bytes"): bytes,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "eval"): _paddle_dense_tensor,
    ("collections", "OrderedDict"): _OrderedDict,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("builtins", "object"): _ObjectMarker,
    ("_codecs", "encode"): _codecs_encode,
    ("numpy", "ndarray"): _NdarrayType,
    ("numpy", "dtype"): _DtypeProxy,
    ("paddle.base.libpaddle", "GeneratorState"): _GeneratorStateProxy,
    ("paddle.fluid.libpaddle", "GeneratorState"): _GeneratorStateProxy,
}
for _mod in _NUMPY_CORE:
    SAFE_GLOBALS[(_mod, "_reconstruct")] = _reconstruct
    SAFE_GLOBALS[(_mod, "scalar")] = _scalar
# Python 2 names, as pickle maps them with fix_imports.
SAFE_GLOBALS.update({("__builtin__", n): v for (m, n), v in list(SAFE_GLOBALS.items()) if m == "builtins"})


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only :data:`SAFE_GLOBALS` (plus ``extra``).

    Args:
        file: A binary file object.
        extra: Additional ``{(module, name): callable}`` for a format's own
            objects (the PyTorch reader's tensor rebuilders).
        encoding: As in :class:`pickle.Unpickler`.
    """

    def __init__(self, file, extra=None, encoding="ASCII"):
        super().__init__(file, encoding=encoding, errors="strict")
        self._globals = dict(SAFE_GLOBALS)
        if extra:
            self._globals.update(extra)

    def find_class(self, module, name):
        found = self._globals.get((module, name))
        if found is None:
            raise UnsafePickleError(f"the file asks for {module}.{name}, which a weights/data file never needs: "
                                    "refused (it could run code)", _FIX_UNSAFE)
        return found

    def persistent_load(self, pid):
        raise UnsafePickleError(f"unsupported persistent id {pid!r:.60} in the pickle")


def finish(obj):
    """Replace the proxies built while unpickling by real numpy arrays, dtypes and RNG states."""
    memo = {}

    def walk(o):
        t = type(o)
        if t in (int, float, str, bytes, bool, complex, type(None), np.ndarray) or isinstance(o, np.generic) \
                or isinstance(o, InertObject):
            return o
        key = id(o)
        if key in memo:
            return memo[key]
        if t is _ArrayProxy:
            if o.array is None:
                raise UnsafePickleError("numpy array without data: corrupt or crafted file")
            memo[key] = o.array
            return o.array
        if t is _DtypeProxy:
            memo[key] = o.dtype
            return o.dtype
        if t is _GeneratorStateProxy:
            if o.state is None:
                raise UnsafePickleError("Paddle GeneratorState without state: corrupt or crafted checkpoint")
            from paddle.base.libpaddle import GeneratorState

            g = GeneratorState.__new__(GeneratorState)
            g.__setstate__(o.state)
            memo[key] = g
            return g
        if t is _OrderedDict:
            o = collections.OrderedDict(o)
            memo[key] = o
        if t in (dict, collections.OrderedDict, _OrderedDict):
            memo[key] = o
            for k in list(o):
                if type(k) not in (int, float, str, bytes, bool, complex, type(None), tuple) \
                        and not isinstance(k, np.generic):
                    raise UnsafePickleError(f"dict key of type {type(k).__name__}")
                o[k] = walk(o[k])
            return o
        if t is list:
            memo[key] = o
            for i, v in enumerate(o):
                o[i] = walk(v)
            return o
        if t is tuple:
            out = tuple(walk(v) for v in o)
            memo[key] = out
            return out
        if t in (set, frozenset):
            return o
        if t is bytearray:
            return o
        raise UnsafePickleError(f"unexpected object of type {t.__name__} in the pickle")

    try:
        return walk(obj)
    except RecursionError:
        raise UnsafePickleError("the pickle nests containers too deeply: corrupt or crafted file") from None


_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
           OverflowError, MemoryError, UnicodeDecodeError, RecursionError)


def _load(file, extra, encoding, what):
    try:
        obj = RestrictedUnpickler(file, extra=extra, encoding=encoding).load()
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{what}: {e.what}", e.fix) from None
    except _ERRORS as e:
        raise UnsafePickleError(f"{what} is not a readable pickle ({type(e).__name__}: {e}): truncated, corrupt "
                                "or crafted", "download or copy it again") from None
    try:
        return finish(obj)
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{what}: {e.what}", e.fix) from None


def safe_loads(data, extra=None, encoding="ASCII", what="pickle"):
    """Unpickle ``data`` (bytes) with :class:`RestrictedUnpickler`; proxies resolved.

    Raises:
        UnsafePickleError: a refused class, or a malformed/truncated pickle.
    """
    return _load(io.BytesIO(data), extra, encoding, what)


def safe_load_file(f, extra=None, encoding="ASCII", what="pickle"):
    """:func:`safe_loads` of an open binary file (or a path), read as it is unpickled."""
    if isinstance(f, (str, os.PathLike)):
        with open(f, "rb") as fh:
            return _load(fh, extra, encoding, what if what != "pickle" else os.fspath(f))
    return _load(f, extra, encoding, what)


def _to_tensor(arr, name=None):
    import paddle

    t = paddle.to_tensor(arr)
    if name:
        t.name = name
    return t


def _is_named_array(o):
    return type(o) is tuple and len(o) == 2 and isinstance(o[0], str) and isinstance(o[1], np.ndarray)


def _convert(o, cond, conv):
    """``paddle.framework.io._parse_every_object``: convert every object matching ``cond``."""
    if cond(o):
        return conv(o)
    t = type(o)
    if t in (dict, collections.OrderedDict):
        for k in list(o):
            o[k] = _convert(o[k], cond, conv)
        return o
    if t is list:
        return [_convert(v, cond, conv) for v in o]
    if t is tuple:
        return tuple(_convert(v, cond, conv) for v in o)
    return o


def _contains(o, cond, seen=None):
    seen = set() if seen is None else seen
    if cond(o):
        return True
    if type(o) in (dict, collections.OrderedDict, list, tuple) and id(o) not in seen:
        seen.add(id(o))
        return any(_contains(v, cond, seen) for v in (o.values() if isinstance(o, dict) else o))
    return False


def load_paddle(path, return_numpy=False, unsafe=False):
    """Drop-in for ``paddle.load`` of a ``paddle.save`` pickle (``.pdparams``, ``.pdopt``, checkpoints).

    Args:
        path: The file.
        return_numpy: Return numpy arrays instead of ``paddle.Tensor`` (as ``paddle.load``).
        unsafe: Call ``paddle.load`` itself, which runs code stored in the file.
            Only for trusted files that the restricted loader refuses.

    Returns:
        What ``paddle.load`` returns for the file.

    Raises:
        UnsafePickleError: the file names a class outside the allowed set, or is
            not a readable ``paddle.save`` pickle.
    """
    path = os.fspath(path)
    if unsafe:
        import paddle

        return paddle.load(path, return_numpy=return_numpy)
    obj = safe_load_file(path, encoding="latin1", what=path)
    if isinstance(obj, dict) and "UnpackBigParamInfor@@" in obj:  # parameters > 4 GB, split by paddle.save
        info = obj.pop("UnpackBigParamInfor@@")
        try:
            for key, value in info.items():
                obj[key] = np.concatenate([obj.pop(part) for part in value["slices"]]).reshape(value["OriginShape"])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise UnsafePickleError(f"{path}: malformed split-parameter table ({e})") from None
    if isinstance(obj, dict) and "StructuredToParameterName@@" in obj:
        names = obj.pop("StructuredToParameterName@@")
        if not isinstance(names, dict):
            raise UnsafePickleError(f"{path}: malformed parameter-name table")
        if not return_numpy:
            for key, name in names.items():
                if isinstance(obj.get(key), np.ndarray):
                    obj[key] = _to_tensor(obj[key], name if isinstance(name, str) else None)
        return obj
    if return_numpy:
        return _convert(obj, _is_named_array, lambda o: o[1])
    if _contains(obj, _is_named_array):
        return _convert(obj, _is_named_array, lambda o: _to_tensor(o[1], o[0]))
    return _convert(obj, lambda o: isinstance(o, np.ndarray), _to_tensor)
