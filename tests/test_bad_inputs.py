"""Adversarial inputs: hostile pickles, crafted PyTorch zips and safetensors, bad images, bad options.

Every fixture is generated here: pickles are written opcode by opcode (nothing
hostile is ever pickled by Python), ``.pth`` zips are assembled by hand, bomb
PNGs have hand-written headers. Each case checks the outcome (exception or exit
status and its one line), that the payload did not run (the marker file it
would create is absent) and that files already on disk are unchanged.
"""
import ast
import hashlib
import io
import os
import signal
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib

import numpy as np
import paddle
import pytest
from PIL import Image

from paddle_vits.convert import CheckpointError, read_checkpoint
from paddle_vits.utils import compat
from paddle_vits.utils.safe_pickle import UnsafePickleError, load_paddle, safe_loads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "_test_scripts_tiny"  # tests/test_scripts.py: 8x8 input, patch conv + pos_embed + fc + head
COLOUR = "_test_mean_colour"  # tests/test_eval_imagenet.py: 16x16 input, linear on the mean colour


def _skip_export_where_unsupported(script):
    """On a Paddle that cannot export, export_model.py stops first with that reason (tested in test_compat)."""
    if script == "export_model.py" and compat.export_unsupported():
        pytest.skip(compat.export_unsupported())


# ---- pickle assembler -----------------------------------------------------------------------

def _str(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b  # BINUNICODE


def _int(v):
    if -(2 ** 31) <= v < 2 ** 31:
        return b"J" + struct.pack("<i", v)  # BININT
    n = (v.bit_length() + 8) // 8
    return b"\x8a" + bytes([n]) + v.to_bytes(n, "little", signed=True)  # LONG1


def _global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"  # GLOBAL


def _call(module, name, *args):
    """GLOBAL module.name, MARK, args, TUPLE, REDUCE: ``module.name(*args)``."""
    return _global(module, name) + b"(" + b"".join(_str(a) if isinstance(a, str) else a for a in args) + b"tR"


def _in_dict(value_ops, key="payload"):
    """``{'weight': <array>, key: <value>}`` around hostile ops, as a state dict would hold them."""
    arr = (_global("numpy._core.multiarray", "_reconstruct") + b"(" + _global("numpy", "ndarray")
           + _int(0) + b"\x85" + b"C\x01b" + b"tR"
           + b"(" + _int(1) + _int(2) + b"\x85" + _call("numpy", "dtype", "f4", b"\x89\x88")
           + b"(" + _int(3) + _str("<") + b"NNN" + _int(-1) + _int(-1) + _int(0) + b"tb"
           + b"\x89" + b"C\x08" + np.array([1.5, -2.0], "<f4").tobytes() + b"tb")
    return b"\x80\x02}(" + _str("weight") + arr + _str(key) + value_ops + b"u."


def _hostile_payloads(marker):
    """(id, pickle bytes, name the refusal must mention): each would create ``marker`` if unpickled."""
    m = str(marker)
    cmd = f"touch {m}"
    py = f"open({m!r}, 'w').write('pwned')"
    return [
        ("os.system", _in_dict(_call("os", "system", cmd)), "os.system"),
        ("posix.system", _in_dict(_call("posix", "system", cmd)), "posix.system"),
        ("builtins.eval", _in_dict(_call("builtins", "eval", py)), "builtins.eval"),
        ("builtins.exec", _in_dict(_call("builtins", "exec", py)), "builtins.exec"),
        ("__builtin__.eval", _in_dict(_call("__builtin__", "eval", py)), "eval"),
        ("subprocess.call", _in_dict(_global("subprocess", "call") + b"((" + _str("touch") + _str(m) + b"ltR"),
         "subprocess.call"),
        ("stack_global", b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00" + b"\x8c\x02os\x8c\x06system\x93"
         + _str(cmd) + b"\x85R.", "os.system"),
        ("inst", b"(" + _str(cmd) + b"ios\nsystem\n.", "os.system"),
        ("obj", b"(" + _global("os", "system") + _str(cmd) + b"o.", "os.system"),
        ("getattr_chain", _in_dict(_call("builtins", "getattr", _global("os", "path"), "join")), "builtins.getattr"),
        ("numpy_load", _in_dict(_call("numpy", "load", m)), "numpy.load"),
        ("object_array", _in_dict(_call("numpy", "dtype", "O8", b"\x89\x88")), "not numeric"),
        ("eval_not_literal", _in_dict(_global("builtins", "eval") + b"(" + _str(py) + b"}tR"), "builtins.eval"),
        ("codecs_rot13", _in_dict(_call("_codecs", "encode", "abc", "rot13")), "_codecs.encode"),
        ("persistent_id", _in_dict(_str("x") + b"Q"), "persistent id"),
        ("ext_code", _in_dict(b"\x82\x01"), "not a readable pickle"),
    ]


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a payload ran"


def _payload_ids():
    return [p[0] for p in _hostile_payloads("m")]


def _payload(name, marker):
    return next(p for p in _hostile_payloads(marker) if p[0] == name)


@pytest.fixture(autouse=True)
def _no_hang():
    """SIGALRM raises (instead of killing the run) so a hang fails its own test."""
    def timeout(signum, frame):
        raise TimeoutError("hung: the operation did not finish in time")

    old = signal.signal(signal.SIGALRM, timeout)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _snapshot(*paths):
    return {str(p): hashlib.sha256(open(p, "rb").read()).hexdigest() if os.path.isfile(p) else None for p in paths}


# ---- the restricted unpickler on its own ----------------------------------------------------

@pytest.mark.parametrize("name", _payload_ids())
def test_hostile_pickle_refused_naming_the_class(name, marker):
    _, data, expect = _payload(name, marker)
    with pytest.raises(UnsafePickleError, match=expect.replace(".", r"\.")) as info:
        safe_loads(data)
    assert "\n" not in str(info.value)


def test_assembler_control_reads_back():
    """The same assembler without a payload is a valid pickle (so refusals above are the payload's)."""
    out = safe_loads(_in_dict(_str("fine")))
    np.testing.assert_array_equal(out["weight"], np.array([1.5, -2.0], np.float32))
    assert out["payload"] == "fine"


@pytest.mark.parametrize("state, match", [
    ((1, (3,), "dtype", False, b"\0" * 12), "dtype"),  # a str where a dtype must be
    ((1, (2 ** 40,), "f4", False, b"\0" * 8), "needs"),  # shape larger than the data
    ((1, (-1,), "f4", False, b"\0" * 4), "non-negative"),
    ((1, (3,), "f4", False, b"\0" * 13), "needs"),  # one byte too many
])
def test_array_state_checked_against_its_bytes(state, match):
    version, shape, dtype, fortran, data = state
    dt = _call("numpy", "dtype", dtype, b"\x89\x88") + b"(" + _int(3) + _str("<") + b"NNN" + _int(-1) + _int(-1) \
        + _int(0) + b"tb" if dtype == "f4" else _str(dtype)
    ops = (b"\x80\x02" + _global("numpy.core.multiarray", "_reconstruct") + b"(" + _global("numpy", "ndarray")
           + _int(0) + b"\x85C\x01btR(" + _int(version) + b"(" + b"".join(_int(s) for s in shape) + b"t" + dt
           + b"\x89" + b"B" + struct.pack("<I", len(data)) + data + b"tb.")
    with pytest.raises(UnsafePickleError, match=match):
        safe_loads(ops)


def test_deep_nesting_is_an_error_not_a_crash():
    with pytest.raises(UnsafePickleError):
        safe_loads(b"\x80\x02" + b"]" * 200000 + b"a" * 199999 + b".")


# ---- every reader of Paddle files and CIFAR batches goes through it -------------------------

@pytest.mark.parametrize("ext", [".pdparams", ".pdopt", ".pdckpt"])
@pytest.mark.parametrize("name", ["os.system", "posix.system", "builtins.eval", "subprocess.call"])
def test_paddle_files_refused_in_every_loader(tmp_path, marker, ext, name):
    from paddle_vits.train.checkpoint import load_checkpoint

    path = tmp_path / f"evil{ext}"
    path.write_bytes(_payload(name, marker)[1])
    with pytest.raises(UnsafePickleError, match=name.replace(".", r"\.")):
        load_paddle(path)
    with pytest.raises(CheckpointError, match=name.replace(".", r"\.")):
        read_checkpoint(path)
    if ext == ".pdckpt":
        with pytest.raises(ValueError, match=name.replace(".", r"\.")):
            load_checkpoint(path)


def test_create_model_pretrained_refuses_hostile_pdparams(tmp_path, marker):
    import paddle_vits

    path = tmp_path / "evil.pdparams"
    path.write_bytes(_payload("os.system", marker)[1])
    with pytest.raises(CheckpointError, match=r"os\.system"):
        paddle_vits.create_model("cait_xxs_24", pretrained=str(path), img_size=32, depth=1, num_classes=10)


def test_unsafe_is_explicit_and_really_plain_pickle(tmp_path):
    """``unsafe=True`` is ``paddle.load``: shown with a harmless global the safe loader refuses."""
    path = tmp_path / "legacy.pdparams"
    path.write_bytes(b"\x80\x02}(" + _str("when") + _call("datetime", "date", _int(2020), _int(1), _int(2)) + b"u.")
    with pytest.raises(UnsafePickleError, match=r"datetime\.date"):
        load_paddle(path)
    assert str(load_paddle(path, unsafe=True)["when"]) == "2020-01-02"


def test_paddle_save_round_trip_matches_paddle_load(tmp_path):
    """State dict, optimizer state and a training checkpoint written by Paddle load as ``paddle.load`` does."""
    import random

    net = paddle.nn.Sequential(paddle.nn.Linear(3, 2), paddle.nn.BatchNorm1D(2))
    opt = paddle.optimizer.AdamW(learning_rate=0.1, parameters=net.parameters())
    net(paddle.randn([4, 3])).sum().backward()
    opt.step()
    objs = {"sd.pdparams": net.state_dict(), "o.pdopt": opt.state_dict(),
            "c.pdckpt": {"model": net.state_dict(), "optimizer": opt.state_dict(), "step": 3, "best": np.float64(.5),
                         "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                                 "paddle": paddle.get_rng_state()}}}
    for protocol in (2, 4):
        for name, obj in objs.items():
            path = str(tmp_path / f"{protocol}{name}")
            paddle.save(obj, path, protocol=protocol)
            _assert_same(paddle.load(path), load_paddle(path), name)
            _assert_same(paddle.load(path, return_numpy=True), load_paddle(path, return_numpy=True), name)


def _assert_same(a, b, where):
    if isinstance(a, paddle.Tensor):
        assert isinstance(b, paddle.Tensor) and a.name == b.name and a.dtype == b.dtype, where
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    elif isinstance(a, dict):
        assert type(a) is type(b) and list(a) == list(b), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype, where
        np.testing.assert_array_equal(a, b)
    elif type(a).__name__ == "GeneratorState":
        assert type(b) is type(a) and a.__getstate__() == b.__getstate__(), where
    else:
        assert type(a) is type(b) and a == b, where


def _cifar_tar(path, batch_bytes):
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(batch_bytes)
            tar.addfile(info, io.BytesIO(batch_bytes))
    return path


@pytest.mark.parametrize("name", ["os.system", "posix.system", "builtins.eval", "subprocess.call", "stack_global"])
def test_cifar_tarball_with_hostile_batch(tmp_path, marker, name):
    from paddle_vits.data.cifar import CifarError, read_cifar10

    path = _cifar_tar(tmp_path / "c.tar.gz", _payload(name, marker)[1])
    with pytest.raises(CifarError, match=r"data_batch_1 is corrupt or crafted.*refused"):
        read_cifar10(path)


def test_cifar_batch_oversized_member_refused_before_reading(tmp_path):
    from paddle_vits.data.cifar import CifarError, read_cifar10

    path = tmp_path / "big.tar.gz"
    with tarfile.open(path, "w:gz") as tar:  # 80 MB of zeros compress to ~80 KB
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = 80 << 20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
        for name in [f"data_batch_{i}" for i in range(2, 6)] + ["test_batch"]:
            tar.addfile(tarfile.TarInfo(f"cifar-10-batches-py/{name}"), io.BytesIO(b""))
    with pytest.raises(CifarError, match="over the"):
        read_cifar10(path)


# ---- crafted PyTorch zips -------------------------------------------------------------------

def _tensor_ops(storage_type, key, numel, offset, size, stride):
    pid = b"(" + _str("storage") + _global("torch", storage_type) + _str(key) + _str("cpu") + _int(numel) + b"tQ"
    tup = lambda vals: b"(" + b"".join(_int(v) if isinstance(v, int) else _str(str(v)) for v in vals) + b"t"  # noqa
    off = _int(offset) if isinstance(offset, int) else _str(str(offset))
    return (_global("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + off + tup(size) + tup(stride)
            + b"\x89" + _global("collections", "OrderedDict") + b")RtR")


def _pth(path, tensors, storages, byteorder="little"):
    """A PyTorch zip checkpoint: ``tensors`` {name: _tensor_ops args}, ``storages`` {key: raw bytes}."""
    pkl = b"\x80\x02}(" + b"".join(_str(k) + _tensor_ops(*v) for k, v in tensors.items()) + b"u."
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", byteorder)
        z.writestr("archive/version", "3\n")
        for key, raw in storages.items():
            z.writestr(f"archive/data/{key}", raw)
    return path


F4 = np.arange(4, dtype="<f4").tobytes()


def test_pth_assembler_control(tmp_path):
    sd = read_checkpoint(_pth(tmp_path / "ok.pth", {"w": ("FloatStorage", "0", 4, 1, (2, 1), (1, 2))}, {"0": F4}))
    np.testing.assert_array_equal(sd["w"], np.array([[1.0], [2.0]], np.float32))
    bf16 = (np.array([1.0, -2.5], "<f4").view("<u4") >> 16).astype("<u2").tobytes()
    sd = read_checkpoint(_pth(tmp_path / "bf.pth", {"b": ("BFloat16Storage", "0", 2, 0, (2,), (1,))}, {"0": bf16}))
    np.testing.assert_array_equal(sd["b"], np.array([1.0, -2.5], np.float32))


CRAFTED_PTH = [
    ("offset_past_end", ("FloatStorage", "0", 4, 100, (2,), (1,)), {"0": F4}, "reaches element"),
    ("size_past_end", ("FloatStorage", "0", 4, 0, (1000,), (1,)), {"0": F4}, "reaches element"),
    ("stride_past_end", ("FloatStorage", "0", 4, 0, (2, 2), (100, 1)), {"0": F4}, "reaches element"),
    ("last_element_plus_one", ("FloatStorage", "0", 4, 1, (4,), (1,)), {"0": F4}, "reaches element"),
    ("negative_stride", ("FloatStorage", "0", 4, 3, (2,), (-1,)), {"0": F4}, "non-negative"),
    ("negative_offset", ("FloatStorage", "0", 4, -4, (2,), (1,)), {"0": F4}, "offset"),
    ("negative_size", ("FloatStorage", "0", 4, 0, (-2,), (1,)), {"0": F4}, "non-negative"),
    ("huge_size_zero_stride", ("FloatStorage", "0", 4, 0, (2 ** 62,), (0,)), {"0": F4}, "expand"),
    ("expand_to_terabytes", ("FloatStorage", "0", 4, 0, (10 ** 6, 10 ** 6), (0, 0)), {"0": F4}, "expand"),
    ("rank_mismatch", ("FloatStorage", "0", 4, 0, (2, 2), (1,)), {"0": F4}, "differ in length"),
    ("string_size", ("FloatStorage", "0", 4, 0, ("2",), (1,)), {"0": F4}, "non-negative ints"),
    ("string_offset", ("FloatStorage", "0", 4, "0", (2,), (1,)), {"0": F4}, "offset"),
    ("too_many_dims", ("FloatStorage", "0", 4, 0, (1,) * 40, (1,) * 40), {"0": F4}, "non-negative ints"),
    ("bytes_not_whole_elements", ("FloatStorage", "0", 4, 0, (1,), (1,)), {"0": F4[:7]}, "whole number"),
    ("declared_numel_wrong", ("FloatStorage", "0", 100, 0, (2,), (1,)), {"0": F4}, "declares 100"),
    ("missing_storage", ("FloatStorage", "9", 4, 0, (2,), (1,)), {"0": F4}, "lacks storage"),
    ("unknown_storage_type", ("ComplexFloatStorage", "0", 4, 0, (2,), (1,)), {"0": F4}, "ComplexFloatStorage"),
    ("wrong_dtype_wider", ("DoubleStorage", "0", 2, 0, (4,), (1,)), {"0": F4}, "reaches element"),
    ("odd_bf16", ("BFloat16Storage", "0", 2, 0, (2,), (1,)), {"0": F4[:3]}, "whole number"),
]


@pytest.mark.parametrize("name, spec, storages, match", CRAFTED_PTH, ids=[c[0] for c in CRAFTED_PTH])
def test_crafted_pth_is_a_clear_error(tmp_path, name, spec, storages, match):
    path = _pth(tmp_path / f"{name}.pth", {"w": spec}, storages)
    with pytest.raises(CheckpointError, match=match) as info:
        read_checkpoint(path)
    assert "\n" not in str(info.value)


def test_zip_bomb_storage_refused_before_decompressing(tmp_path):
    path = tmp_path / "bomb.pth"
    pkl = b"\x80\x02}(" + _str("w") + _tensor_ops("FloatStorage", "0", 1 << 26, 0, (4,), (1,)) + b"u."
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/data/0", bytes(1 << 28))  # 256 MB of zeros, ~260 KB deflated
    with pytest.raises(CheckpointError, match="expands from"):
        read_checkpoint(path)


def test_pickle_declaring_a_huge_bytes_object(tmp_path):
    """BINBYTES8 claiming 2**62 bytes in a 20-byte file: an error, not an allocation or a crash."""
    with pytest.raises(UnsafePickleError, match="not a readable pickle"):
        safe_loads(b"\x80\x04\x8e" + struct.pack("<Q", 2 ** 62) + b"abc.")
    with pytest.raises(UnsafePickleError, match="not a readable pickle"):
        safe_loads(b"\x80\x04\x8e" + struct.pack("<Q", 2 ** 33) + b"abc.")


def test_big_endian_pth_refused(tmp_path):
    path = _pth(tmp_path / "be.pth", {"w": ("FloatStorage", "0", 4, 0, (4,), (1,))}, {"0": F4}, byteorder="big")
    with pytest.raises(CheckpointError, match="big-endian"):
        read_checkpoint(path)


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "stack_global", "inst"])
def test_pth_with_hostile_pickle(tmp_path, marker, name):
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", _payload(name, marker)[1])
    with pytest.raises(CheckpointError, match=r"os\.system|builtins\.eval"):
        read_checkpoint(path)


# ---- crafted safetensors --------------------------------------------------------------------

def _safetensors(path, header, data=b""):
    import json

    raw = json.dumps(header).encode() if not isinstance(header, bytes) else header
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def test_bfloat16_safetensors_read_as_float32(tmp_path):
    vals = np.array([1.0, -2.5, 0.375, 3.0], "<f4")
    bf16 = (vals.view("<u4") >> 16).astype("<u2").tobytes()
    sd = read_checkpoint(_safetensors(tmp_path / "b.safetensors",
                                      {"w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}, bf16))
    assert sd["w"].dtype == np.float32
    np.testing.assert_array_equal(sd["w"], vals.reshape(2, 2))


CRAFTED_ST = [
    ("offsets_past_end", {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1 << 40]}}, F4, "byte range"),
    ("size_mismatch", {"w": {"dtype": "F32", "shape": [8], "data_offsets": [0, 16]}}, F4, "byte range"),
    ("reversed_offsets", {"w": {"dtype": "F32", "shape": [0], "data_offsets": [16, 0]}}, F4, "byte range"),
    ("negative_shape", {"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, F4, "non-negative"),
    ("unknown_dtype", {"w": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}}, F4, "unsupported dtype"),
    ("header_not_table", [1, 2], F4, "not a table"),
    ("header_not_json", b"{not json", F4, "unreadable"),
    ("header_not_utf8", b"\xff\xfe{}", F4, "unreadable"),
]


@pytest.mark.parametrize("name, header, data, match", CRAFTED_ST, ids=[c[0] for c in CRAFTED_ST])
def test_crafted_safetensors_is_a_clear_error(tmp_path, name, header, data, match):
    with pytest.raises(CheckpointError, match=match):
        read_checkpoint(_safetensors(tmp_path / f"{name}.safetensors", header, data))


def test_safetensors_header_length_past_the_file(tmp_path):
    path = tmp_path / "h.safetensors"
    path.write_bytes(struct.pack("<Q", 2 ** 63) + b"{}")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checkpoint(path)


# ---- non-finite weights ---------------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_weights_refused_with_names_unless_allowed(tmp_path, bad):
    from safetensors.numpy import save_file

    sd = {"a.weight": np.ones(3, np.float32), "b.weight": np.array([1.0, bad], np.float32),
          "c.bias": np.full(2, bad, np.float16), "n": np.array(3, np.int64)}
    save_file(sd, str(tmp_path / "nan.safetensors"))
    with pytest.raises(CheckpointError, match=r"non-finite.*2 tensors: b\.weight, c\.bias") as info:
        read_checkpoint(tmp_path / "nan.safetensors")
    assert "allow" in info.value.fix
    assert np.isnan(read_checkpoint(tmp_path / "nan.safetensors", allow_nonfinite=True)["b.weight"][1]) == (bad != bad)


# ---- images ---------------------------------------------------------------------------------

def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_header_only(path, w, h):
    """A PNG whose header claims ``w x h`` (8-bit RGB) with a tiny IDAT: a decompression bomb to open."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    body = _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def _bad_images(d):
    """{name: path} of images that must be bad images, never a traceback or a huge allocation."""
    d.mkdir(parents=True, exist_ok=True)
    out = {"bomb_20000x20000": _png_header_only(d / "bomb.png", 20000, 20000),
           "bomb_warning_10000x9000": _png_header_only(d / "bomb2.png", 10000, 9000)}
    Image.new("L", (3_000_000, 1)).save(d / "wide.png")
    out["3000000x1"] = d / "wide.png"
    Image.new("L", (1, 3_000_000)).save(d / "tall.png")
    out["1x3000000"] = d / "tall.png"
    Image.new("RGB", (64, 64), (200, 10, 10)).save(d / "full.jpg", quality=90)
    raw = (d / "full.jpg").read_bytes()
    (d / "cut.jpg").write_bytes(raw[: len(raw) // 3])
    out["truncated_jpeg"] = d / "cut.jpg"
    (d / "text.jpg").write_text("not an image")
    out["text_as_jpeg"] = d / "text.jpg"
    (d / "empty.png").write_bytes(b"")
    out["empty_file"] = d / "empty.png"
    os.symlink(d / "nowhere.png", d / "dangling.png")
    out["dangling_symlink"] = d / "dangling.png"
    os.mkfifo(d / "fifo.png")
    out["fifo"] = d / "fifo.png"
    return out


BAD_IMAGE_NAMES = ["bomb_20000x20000", "bomb_warning_10000x9000", "3000000x1", "1x3000000", "truncated_jpeg",
                   "text_as_jpeg", "empty_file", "dangling_symlink", "fifo"]


@pytest.fixture(scope="module")
def bad_images(tmp_path_factory):
    return _bad_images(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("name", BAD_IMAGE_NAMES)
def test_bad_image_is_a_bad_image(bad_images, name):
    from paddle_vits.data.imagenet import ImageNetDataError, ImageNetVal
    from paddle_vits.data.transforms import BadImageError, EvalTransform
    from paddle_vits.explain import eval_crop

    root = bad_images[name].parent
    lst = root / f"{name}.txt"
    lst.write_text(f"{bad_images[name].name} 0\n")
    signal.alarm(60)  # a FIFO must not block: fail instead of hanging the suite
    try:
        with pytest.raises(ImageNetDataError, match=r"image .*(--on-bad-image skip)"):
            ImageNetVal(root, EvalTransform(16, 0.875), val_list=lst)[0]
        assert ImageNetVal(root, EvalTransform(16, 0.875), val_list=lst, on_bad_image="skip")[0] is None
        with pytest.raises((BadImageError, FileNotFoundError)):
            eval_crop(str(bad_images[name]), 16)
    finally:
        signal.alarm(0)


def test_huge_aspect_pil_image_refused_by_resize():
    from paddle_vits.data.transforms import BadImageError, EvalTransform

    with pytest.raises(BadImageError, match="aspect ratio"):
        EvalTransform(224)(Image.new("RGB", (200_000, 2)))


class _KillsItsWorker:
    """Dataset whose item 5 kills the process decoding it (as the OOM killer would)."""

    def __init__(self, main_pid):
        self.main_pid = main_pid

    def __len__(self):
        return 12

    def __getitem__(self, i):
        if i == 5 and os.getpid() != self.main_pid:
            os.kill(os.getpid(), signal.SIGKILL)
        return np.zeros((3, 2, 2), np.float32), np.int64(0)


def test_dead_decode_worker_is_an_error_not_a_hang():
    from paddle_vits.eval import WorkerDiedError, iterate_batches

    signal.alarm(120)
    try:
        with pytest.raises(WorkerDiedError, match="worker process died") as info:
            list(iterate_batches(_KillsItsWorker(os.getpid()), batch_size=2, workers=2))
        assert "--workers" in info.value.fix
    finally:
        signal.alarm(0)


# ---- list files and folder walks ------------------------------------------------------------

def _solid(path, rgb=(10, 200, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 20), rgb).save(path)


def test_val_list_utf8_bom_crlf_keeps_the_first_image(tmp_path):
    from paddle_vits.data.imagenet import read_val_list

    _solid(tmp_path / "a.png")
    _solid(tmp_path / "b.png")
    (tmp_path / "l.txt").write_bytes(b"\xef\xbb\xbfa.png 3\r\n\r\nb.png 4\r\n")
    assert [(os.path.basename(p), y) for p, y in read_val_list(str(tmp_path / "l.txt"))] == [("a.png", 3), ("b.png", 4)]


@pytest.mark.parametrize("raw, match", [
    (b"a.png 1\nb\xe9.png 2\n", r"l\.txt:2: not UTF-8"),
    (b"a.png 1\nb.png two\n", r"l\.txt:2: label 'two'"),
    (b"a.png 1\nb.png -3\n", r"l\.txt:2: negative label"),
    (b"a.png\n", r"l\.txt:1: expected"),
    (b"\xef\xbb\xbf# only a comment\n", "no entries"),
])
def test_val_list_errors_name_file_and_line(tmp_path, raw, match):
    from paddle_vits.data.imagenet import ImageNetDataError, read_val_list

    (tmp_path / "l.txt").write_bytes(raw)
    with pytest.raises(ImageNetDataError, match=match):
        read_val_list(str(tmp_path / "l.txt"))


def test_folder_walk_survives_symlink_loops_and_counts_each_image_once(tmp_path):
    from paddle_vits.data.imagenet import scan_image_folder

    val = tmp_path / "val"
    _solid(val / "n01" / "x.png")
    _solid(val / "n01" / "sub" / "y.png")
    _solid(val / "n02" / "z.png")
    os.symlink(val / "n01", val / "n01" / "sub" / "loop")  # a loop
    os.symlink(val, val / "n02" / "up")  # a loop through the root
    os.symlink(val / "n01" / "x.png", val / "n02" / "x_again.png")  # the same file twice
    signal.alarm(60)
    try:
        samples, classes = scan_image_folder(str(val))
    finally:
        signal.alarm(0)
    assert classes == ["n01", "n02"]
    names = sorted((os.path.basename(p), y) for p, y in samples)
    assert names == [("x.png", 0), ("y.png", 0), ("z.png", 1)]


def _one_line_list(d):
    (d / "l.txt").write_text("a.png 0\n")
    return str(d / "l.txt")


def test_limit_and_batch_size_checked(tmp_path):
    from paddle_vits.data.imagenet import ImageNetVal
    from paddle_vits.eval import iterate_batches

    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
            next(iterate_batches([1, 2], batch_size=bad))
    with pytest.raises(ValueError, match="workers must be an integer >= 0"):
        next(iterate_batches([1, 2], batch_size=1, workers=-1))
    with pytest.raises(ValueError, match="limit must be an integer >= 1"):
        ImageNetVal(str(tmp_path), None, val_list=_one_line_list(tmp_path), limit=-1)


# ---- scripts as subprocesses ----------------------------------------------------------------

def _run(tmp_path, script, *args, timeout=300):
    runner = tmp_path / f"run_{script}"
    runner.write_text(
        "import runpy, sys\n"
        f"sys.path[:0] = [{ROOT!r}, {os.path.join(ROOT, 'tests')!r}]\n"
        "import test_scripts, test_eval_imagenet\n"
        "test_scripts.register_tiny_model(); test_eval_imagenet.register_tiny_model()\n"
        f"sys.argv = [{script!r}] + sys.argv[1:]\n"
        f"runpy.run_path({os.path.join(ROOT, 'scripts', script)!r}, run_name='__main__')\n")
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONPATH=ROOT)
    env.pop("PADDLE_VITS_DEBUG", None)
    return subprocess.run([sys.executable, str(runner), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=tmp_path)


def _assert_one_line_error(proc, *patterns, code=2):
    assert proc.returncode == code, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") or ": error: " in last, last
    for p in patterns:
        assert p in last, (p, last)


@pytest.fixture(scope="module")
def colour_set(tmp_path_factory):
    """A 4-image folder set for the mean-colour model, its weights, and an existing result file."""
    d = tmp_path_factory.mktemp("colour")
    for i, rgb in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]):
        _solid(d / "data" / f"c{i}" / f"img{i}.png", rgb)
    w = {"head.weight": np.eye(3, 8, dtype=np.float32), "head.bias": np.zeros(8, np.float32)}
    paddle.save({k: paddle.to_tensor(v) for k, v in w.items()}, str(d / "w.pdparams"))
    (d / "result.json").write_text('{"old": true}\n')
    return d


@pytest.mark.parametrize("script", ["convert_weights.py", "eval_imagenet.py", "explain.py", "export_model.py"])

@pytest.mark.parametrize("payload", ["os.system", "builtins.eval"])
def test_scripts_refuse_hostile_weights(tmp_path, marker, colour_set, script, payload):
    _skip_export_where_unsupported(script)
    ext = ".pth" if script == "convert_weights.py" else ".pdparams"
    evil = tmp_path / f"evil{ext}"
    data = _payload(payload, marker)[1]
    if ext == ".pth":
        with zipfile.ZipFile(evil, "w") as z:
            z.writestr("archive/data.pkl", data)
    else:
        evil.write_bytes(data)
    existing = tmp_path / "existing.pdparams"
    existing.write_bytes(b"previous output")
    image = colour_set / "data" / "c0" / "img0.png"
    args = {
        "convert_weights.py": ["--model", TINY, "--src", evil, "--out", existing],
        "eval_imagenet.py": ["--model", COLOUR, "--weights", evil, "--data", colour_set / "data", "--num-classes", 8,
                             "--output", colour_set / "result.json", "--workers", 0, "--no-progress"],
        "explain.py": ["--model", COLOUR, "--weights", evil, "--image", image, "--num-classes", 8,
                       "--out", tmp_path / "o.png"],
        "export_model.py": ["--model", COLOUR, "--weights", evil, "--num-classes", 8, "--out", tmp_path / "exp"],
    }[script]
    before = _snapshot(existing, colour_set / "result.json", evil)
    proc = _run(tmp_path, script, *args)
    _assert_one_line_error(proc, payload, "refused")
    assert _snapshot(existing, colour_set / "result.json", evil) == before
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "exp" / "model.json").exists()


@pytest.mark.parametrize("name", ["offset_past_end", "stride_past_end", "expand_to_terabytes"])
def test_convert_script_crafted_pth(tmp_path, name):
    _, spec, storages, match = next(c for c in CRAFTED_PTH if c[0] == name)
    src = _pth(tmp_path / "c.pth", {"patch.weight": spec}, storages)
    out = tmp_path / "out.pdparams"
    out.write_bytes(b"keep me")
    proc = _run(tmp_path, "convert_weights.py", "--model", TINY, "--src", src, "--out", out)
    _assert_one_line_error(proc, "corrupt or crafted checkpoint")
    assert out.read_bytes() == b"keep me"


def test_eval_script_bad_images_fail_or_skip(tmp_path, colour_set, bad_images):
    data = tmp_path / "data"
    import shutil

    shutil.copytree(colour_set / "data", data, symlinks=True)
    for name in ("bomb_20000x20000", "3000000x1", "truncated_jpeg"):
        shutil.copy(bad_images[name], data / "c0" / f"bad_{name}.png")
    common = ["--model", COLOUR, "--weights", colour_set / "w.pdparams", "--data", data, "--num-classes", 8,
              "--no-progress", "--workers", 2, "--batch-size", 2]
    proc = _run(tmp_path, "eval_imagenet.py", *common)
    _assert_one_line_error(proc, "bad_", "--on-bad-image skip")
    out = tmp_path / "r.json"
    proc = _run(tmp_path, "eval_imagenet.py", *common, "--on-bad-image", "skip", "--output", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(4 images, 3 unreadable skipped" in proc.stdout
    import json

    assert json.loads(out.read_text())["skipped"] == 3


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "0"], "--batch-size: must be an integer >= 1, got '0'"),
    (["--batch-size", "-1"], "--batch-size: must be an integer >= 1"),
    (["--limit", "-1"], "--limit: must be an integer >= 1"),
    (["--limit", "0"], "--limit: must be an integer >= 1"),
    (["--workers", "-2"], "--workers: must be an integer >= 0"),
    (["--crop-pct", "0"], "--crop-pct: must be a number in (0, 1]"),
    (["--crop-pct", "nan"], "--crop-pct: must be a number in (0, 1]"),
    (["--num-classes", "0"], "--num-classes: must be an integer >= 1"),
    (["--img-size", "-32"], "--img-size: must be an integer >= 1"),
    (["--threads", "0"], "--threads: must be an integer >= 1"),
])
def test_eval_options_rejected_with_the_valid_range(tmp_path, capsys, args, message):
    ns = {}
    exec(compile(open(os.path.join(ROOT, "scripts", "eval_imagenet.py")).read(), "eval_imagenet.py", "exec"), ns)
    with pytest.raises(SystemExit) as info:
        ns["parse_args"](["--model", "m", "--weights", "w", "--data", "d"] + args)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_eval_script_outputs_checked_before_the_run(tmp_path, colour_set):
    common = ["--model", COLOUR, "--weights", colour_set / "w.pdparams", "--data", colour_set / "data",
              "--num-classes", 8, "--no-progress", "--workers", 0]
    (tmp_path / "afile").write_text("x")
    proc = _run(tmp_path, "eval_imagenet.py", *common, "--output", tmp_path)
    _assert_one_line_error(proc, "is a directory")
    proc = _run(tmp_path, "eval_imagenet.py", *common, "--output", tmp_path / "afile" / "r.json")
    _assert_one_line_error(proc, "is a file, not a folder")
    proc = _run(tmp_path, "eval_imagenet.py", *common, "--batch-size", "0")
    assert proc.returncode == 2 and "must be an integer >= 1" in proc.stderr and "Traceback" not in proc.stderr


def test_eval_script_refuses_nan_weights(tmp_path, colour_set):
    w = tmp_path / "nan.pdparams"
    paddle.save({"head.weight": paddle.full([3, 8], float("nan")), "head.bias": paddle.zeros([8])}, str(w))
    proc = _run(tmp_path, "eval_imagenet.py", "--model", COLOUR, "--weights", w, "--data", colour_set / "data",
                "--num-classes", 8, "--no-progress", "--workers", 0)
    _assert_one_line_error(proc, "non-finite", "head.weight", "--allow-nonfinite")


def test_explain_script_bad_image_and_labels(tmp_path, colour_set, bad_images):
    common = ["--model", COLOUR, "--weights", colour_set / "w.pdparams", "--num-classes", 8]
    proc = _run(tmp_path, "explain.py", *common, "--image", bad_images["3000000x1"], "--out", tmp_path / "o.png")
    _assert_one_line_error(proc, "aspect ratio")
    (tmp_path / "labels.txt").write_bytes(b"a\nb\xe9\n")
    proc = _run(tmp_path, "explain.py", *common, "--image", colour_set / "data" / "c0" / "img0.png",
                "--labels", tmp_path / "labels.txt", "--out", tmp_path / "o.png")
    _assert_one_line_error(proc, "labels.txt:2 is not UTF-8")
    proc = _run(tmp_path, "explain.py", *common, "--image", colour_set / "data" / "c0" / "img0.png",
                "--out", tmp_path)
    _assert_one_line_error(proc, "is a directory")
    assert not (tmp_path / "o.png").exists()


def test_convert_script_io_faults_keep_the_old_file(tmp_path):
    from safetensors.numpy import save_file

    import test_scripts

    save_file(test_scripts._official(), str(tmp_path / "t.safetensors"))
    (tmp_path / "afile").write_text("x")
    for out, message in ((tmp_path, "--out must end with .pdparams"),
                         (tmp_path / "d.pdparams", "is a directory"),
                         (tmp_path / "afile" / "o.pdparams", "part of the output path is a file")):
        if out.name == "d.pdparams":
            out.mkdir()
        proc = _run(tmp_path, "convert_weights.py", "--model", TINY, "--src", tmp_path / "t.safetensors",
                    "--out", out)
        _assert_one_line_error(proc, message)


def test_convert_disk_full_keeps_the_old_file(tmp_path, monkeypatch, capsys, tiny_script_model):
    """ENOSPC in the middle of the write: one line, exit 2, the previous output intact, no temp left."""
    import errno

    from safetensors.numpy import save_file

    import test_scripts
    from paddle_vits.utils.cli import run

    save_file(test_scripts._official(), str(tmp_path / "t.safetensors"))
    out = tmp_path / "o.pdparams"
    out.write_bytes(b"previous")
    real_save = paddle.save

    def full_disk(obj, path, *a, **k):
        real_save(obj, path, *a, **k)
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(paddle, "save", full_disk)
    ns = {}
    exec(compile(open(os.path.join(ROOT, "scripts", "convert_weights.py")).read(), "convert_weights.py", "exec"), ns)
    rc = run(ns["main"], ["--model", TINY, "--src", str(tmp_path / "t.safetensors"), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: No space left on device") and "free disk space" in err
    assert out.read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["o.pdparams", "t.safetensors"]


def test_export_script_fails_when_the_export_disagrees(tmp_path):
    """A model whose Python-side state changes between calls exports a different program: exit 1, nothing kept."""
    _skip_export_where_unsupported("export_model.py")
    out = tmp_path / "exp"
    out.mkdir()
    (out / "model.json").write_text("previous export")
    runner = tmp_path / "run_export.py"
    runner.write_text(
        "import runpy, sys\n"
        f"sys.path[:0] = [{ROOT!r}]\n"
        "import paddle\n"
        "from paddle_vits import registry\n"
        "class Drifts(paddle.nn.Layer):\n"
        "    def __init__(self, num_classes=4, img_size=8):\n"
        "        super().__init__(); self.num_classes = num_classes; self.calls = 0\n"
        "        self.head = paddle.nn.Linear(3, num_classes)\n"
        "    def forward(self, x):\n"
        "        self.calls += 1\n"
        "        return self.head(x.mean(axis=[2, 3])) * float(self.calls)\n"
        "def _test_drifts(**kw):\n"
        "    return Drifts(**kw)\n"
        "registry.register_model(input_size=(3, 8, 8))(_test_drifts)\n"
        "sys.argv = ['export_model.py'] + sys.argv[1:]\n"
        f"runpy.run_path({os.path.join(ROOT, 'scripts', 'export_model.py')!r}, run_name='__main__')\n")
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, str(runner), "--model", "_test_drifts", "--num-classes", "4",
                           "--out", str(out), "--threads", "1"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "disagrees with the eager model" in proc.stderr and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "jit.load check" in errors[0] and "Paddle Inference check" in errors[0]
    assert "nothing written" in errors[0]
    assert sorted(os.listdir(out)) == ["model.json"] and (out / "model.json").read_text() == "previous export"


@pytest.mark.parametrize("script, args, message", [
    ("export_model.py", ["--model", COLOUR, "--out", "x", "--opset", "3"], "--opset: must be an integer in 7..21"),
    ("export_model.py", ["--model", "no_such_model", "--out", "x"], "no_such_model"),
    ("benchmark.py", ["--model", COLOUR, "--steps", "0"], "--steps: must be an integer >= 1"),
    ("benchmark_wavelets.py", ["--shape", "1", "2", "7", "8"], "H and W must be even"),
    ("explain.py", ["--model", COLOUR, "--weights", "w", "--image", "i", "--topk", "0"], "--topk: must be"),
])
def test_script_options_one_line(tmp_path, script, args, message):
    _skip_export_where_unsupported(script)
    proc = _run(tmp_path, script, *args)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_export_script_out_is_a_file(tmp_path):
    (tmp_path / "f").write_text("keep")
    proc = _run(tmp_path, "export_model.py", "--model", COLOUR, "--out", tmp_path / "f")
    _assert_one_line_error(proc, "is a file")
    assert (tmp_path / "f").read_text() == "keep"


# ---- nothing reads a pickle except through the restricted loader -----------------------------

_PICKLE_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
# The only places a plain unpickler may run: the explicit unsafe branches.
_ALLOWED_CALLS = {("paddle_vits/utils/safe_pickle.py", "load_paddle", "paddle.load"),
                  ("paddle_vits/convert/reader.py", "_torch_load", "torch.load")}


def _source_files():
    for top in ("paddle_vits", "scripts"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            for f in files:
                if f.endswith(".py"):
                    yield os.path.relpath(os.path.join(dirpath, f), ROOT)


def _plain_unpickling(rel, source):
    """Places in ``source`` (file ``rel``) that import a pickle module or call a plain loader."""
    tree = ast.parse(source, rel)
    funcs = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for child in ast.walk(node):
                funcs[id(child)] = node.name  # innermost function wins (walked later)
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(m.split(".")[0] in _PICKLE_MODULES for m in mods) and rel != "paddle_vits/utils/safe_pickle.py":
                problems.append(f"{rel}:{node.lineno}: imports {mods}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name):
            name = f"{node.func.value.id}.{node.func.attr}"
            if name in ("np.load", "numpy.load"):
                if any(k.arg == "allow_pickle" for k in node.keywords):
                    problems.append(f"{rel}:{node.lineno}: {name}(allow_pickle=...)")
            elif name in ("paddle.load", "torch.load", "pickle.load", "pickle.loads", "dill.load", "joblib.load"):
                if (rel, funcs.get(id(node)), name) not in _ALLOWED_CALLS:
                    problems.append(f"{rel}:{node.lineno}: {name}")
    return problems


def test_no_plain_unpickling_anywhere():
    problems = []
    for rel in _source_files():
        with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
            problems += _plain_unpickling(rel, f.read())
    assert not problems, problems


@pytest.mark.parametrize("source", [
    "import paddle\ndef f(p):\n    return paddle.load(p)\n",
    "import pickle\n",
    "from pickle import load\n",
    "import numpy as np\nx = np.load('a.npy', allow_pickle=True)\n",
    "import torch\ndef _torch_load(p):\n    return torch.load(p)\n",  # allowed only in reader.py
])
def test_the_scan_catches_plain_loads(source):
    assert _plain_unpickling("paddle_vits/x.py", source)


# ---- our own weights as .safetensors --------------------------------------------------------

def test_converted_safetensors_beside_pdparams_load_identically(tmp_path, tiny_script_model):
    """``--safetensors`` writes a code-free copy, marked as Paddle layout, that loads to the same model."""
    from safetensors.numpy import save_file

    import test_scripts
    from paddle_vits import create_model
    from paddle_vits.convert import convert_checkpoint, is_paddle_layout

    save_file(test_scripts._official(), str(tmp_path / "t.safetensors"))
    report = convert_checkpoint(TINY, tmp_path / "t.safetensors", tmp_path / "w.pdparams", safetensors=True)
    assert report["written"] == [str(tmp_path / "w.pdparams"), str(tmp_path / "w.safetensors")]
    assert is_paddle_layout(tmp_path / "w.safetensors") and not is_paddle_layout(tmp_path / "t.safetensors")
    a = create_model(TINY, pretrained=str(tmp_path / "w.pdparams")).state_dict()
    b = create_model(TINY, pretrained=str(tmp_path / "w.safetensors")).state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k].numpy(), b[k].numpy(), err_msg=k)
    fc = test_scripts._official()["fc.weight"]
    np.testing.assert_array_equal(b["fc.weight"].numpy(), fc.T)  # transposed once, not twice


def _dtype_ops(spec="f4", state=None):
    state = state if state is not None else (b"(" + _int(3) + _str("<") + b"NNN" + _int(-1) + _int(-1) + _int(0)
                                             + b"t")
    return _call("numpy", "dtype", spec, b"\x89\x88") + state + b"b"


def _unbuilt_array():
    return (_global("numpy.core.multiarray", "_reconstruct") + b"(" + _global("numpy", "ndarray") + _int(0)
            + b"\x85C\x01btR")


MALFORMED = [
    ("array_never_built", b"\x80\x02" + _unbuilt_array() + b".", "without data"),
    ("array_as_dict_key", b"\x80\x02}" + _unbuilt_array() + _int(1) + b"s.", "without data|dict key|unhashable"),
    ("reconstruct_of_a_dtype", b"\x80\x02" + _global("numpy.core.multiarray", "_reconstruct") + b"(" + _dtype_ops()
     + _int(0) + b"\x85C\x01btR.", "only plain numpy.ndarray"),
    ("structured_dtype_state", b"\x80\x02" + _dtype_ops(state=b"(" + _int(3) + _str("<") + b"N(" + _str("a")
                                                           + b"t}NNNt") + b".", "structured"),
    ("byteorder_garbage", b"\x80\x02" + _dtype_ops(state=b"(" + _int(3) + _str("!") + b"NNN" + _int(-1) + _int(-1)
                                                      + _int(0) + b"t") + b".", "byte order"),
    ("string_dtype", b"\x80\x02" + _call("numpy", "dtype", "U8", b"\x89\x88") + b".", "not numeric"),
    ("scalar_wrong_size", b"\x80\x02" + _global("numpy.core.multiarray", "scalar") + b"(" + _dtype_ops()
     + b"C\x03abctR.", "scalar with 3 bytes"),
    ("generator_state_garbage", b"\x80\x02" + _global("paddle.base.libpaddle", "GeneratorState") + b")\x81"
     + b"(" + _int(-1) + _int(0) + _int(0) + b"(" + _int(0x41) + b"lt" + b"b.", "GeneratorState"),
    ("generator_state_args", b"\x80\x02" + _call("paddle.base.libpaddle", "GeneratorState", "x") + b".",
     "GeneratorState"),
    ("reconstructor_of_a_real_class", b"\x80\x02" + _global("copyreg", "_reconstructor") + b"("
     + _global("builtins", "dict") + _global("builtins", "object") + b"NtR.", "_reconstructor"),
]


@pytest.mark.parametrize("name, data, match", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_numpy_and_paddle_objects_refused(name, data, match):
    with pytest.raises(UnsafePickleError, match=match):
        safe_loads(data)


def test_inert_metadata_via_protocol_0_reconstructor(tmp_path):
    """``copyreg._reconstructor(argparse.Namespace, object, None)`` (protocol 0/1) in a .pth: an inert placeholder."""
    from paddle_vits.convert.reader import _TorchUnpickler, _Budget

    data = (b"\x80\x02}(" + _str("args") + _global("copyreg", "_reconstructor") + b"("
            + _global("argparse", "Namespace") + _global("builtins", "object") + b"NtR" + b"}" + _str("lr") + _int(1) + b"sb" + b"u.")
    obj = _TorchUnpickler(io.BytesIO(data), None, "", _Budget(1)).load()
    assert type(obj["args"]).__module__ == "inert.argparse" and not hasattr(obj["args"], "lr")


def test_ordered_dict_attributes_are_dropped():
    od = b"\x80\x02" + _global("collections", "OrderedDict") + b")R" + b"}" + _str("__class__") + _int(1) + b"sb."
    got = safe_loads(od)
    assert type(got).__name__ == "OrderedDict" and dict(got) == {}


LIVE = ["os.system", "posix.system", "builtins.eval", "builtins.exec", "subprocess.call", "stack_global", "inst",
        "obj", "eval_not_literal"]


@pytest.mark.parametrize("name", LIVE)
def test_payloads_are_live_under_plain_pickle(tmp_path, name):
    """Control: plain ``pickle.loads`` of the same bytes does run the payload, so the refusals above mean it."""
    import pickle

    target = tmp_path / "ran"
    pickle.loads(_payload(name, target)[1])
    assert target.exists()


class _Slow:
    def __len__(self):
        return 40

    def __getitem__(self, i):
        import time

        time.sleep(0.05)
        return np.zeros((3, 2, 2), np.float32), np.int64(0)


def test_worker_killed_from_outside_is_an_error_not_a_hang():
    """``kill -9`` of a decode worker mid-run (what the OOM killer does): the loader stops with an error."""
    import multiprocessing as mp

    from paddle_vits.eval import WorkerDiedError, iterate_batches

    signal.alarm(120)
    try:
        batches = iterate_batches(_Slow(), batch_size=2, workers=2)
        next(batches)
        victims = mp.active_children()
        assert victims, "no worker processes"
        os.kill(victims[0].pid, signal.SIGKILL)
        with pytest.raises(WorkerDiedError):
            for _ in batches:
                pass
    finally:
        signal.alarm(0)
