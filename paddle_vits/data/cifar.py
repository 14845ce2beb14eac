"""CIFAR-10 and CIFAR-100 from the standard ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``
(read directly, no extraction).

The CIFAR-10 archive holds ``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``:
pickled dicts with ``b'data'`` (uint8 ``[N, 3072]``, channel-planar RGB 32x32) and
``b'labels'``. The CIFAR-100 archive holds ``cifar-100-python/{train, test, meta}`` with
``b'fine_labels'`` (100 classes, named by ``meta``'s ``b'fine_label_names'``).
When the CIFAR-10 file is absent, Paddle's own downloader fetches it into
``~/.cache/paddle/dataset/cifar``; offline, that fails at once with a message saying
where to put the file.
"""
import os
import socket
import tarfile
import zlib

import numpy as np
import paddle

from ..utils.cli import UserError
from ..utils.safe_pickle import UnsafePickleError, safe_load_file

CIFAR10_URL = "https://dataset.bj.bcebos.com/cifar/cifar-10-python.tar.gz"
CIFAR10_OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR100_OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DEFAULT_PATH = os.path.join("data", "cifar-10-python.tar.gz")
_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))


class CifarError(UserError, ValueError):
    """A missing, unreadable or corrupt CIFAR-10 archive."""


_MAX_MEMBER = 64 << 20  # a real CIFAR-10 batch is 30.7 MB; larger is a crafted (or another) archive
_MAX_MEMBER_100 = 192 << 20  # CIFAR-100's train file holds all 50000 images (154 MB)


def _read_batch(tar, member, path, label_key=b"labels", url=CIFAR10_OFFICIAL_URL, max_size=_MAX_MEMBER):
    name = os.path.basename(url)
    if member.size > max_size:
        raise CifarError(f"{path}: batch {member.name} is {member.size} bytes, over the {max_size} a CIFAR "
                         f"batch can be; not {name} (download it from {url})")
    try:
        with tar.extractfile(member) as f:
            batch = safe_load_file(f, encoding="bytes", what="its pickle")
    except UnsafePickleError as e:
        raise CifarError(f"{path}: batch {member.name} is corrupt or crafted ({e.what}). Delete the file and "
                         f"download it again from {url}") from None
    try:
        if not isinstance(batch, dict):
            raise ValueError(f"a {type(batch).__name__}, not a dict")
        data = np.asarray(batch[b"data"])
        if data.dtype != np.uint8:
            raise ValueError(f"data of dtype {data.dtype}, not uint8")
        labels = np.asarray(batch[label_key])
        if labels.dtype.kind not in "iu":
            raise ValueError(f"labels of dtype {labels.dtype}, not integers")
        labels = labels.astype(np.int64)
    except (OSError, EOFError, zlib.error, tarfile.TarError, KeyError, ValueError, TypeError) as e:
        raise CifarError(f"{path}: batch {member.name} is corrupt ({type(e).__name__}: {e}). Delete the file and "
                         f"download it again from {url}") from e
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise CifarError(f"{path}: batch {member.name} has data {data.shape} and {len(labels)} labels; "
                         f"expected [N, 3072] uint8 and N labels (is this the python version, {name}?)")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels  # [N, 3072] -> [N, 3, 32, 32] -> [N, 32, 32, 3]


def _open_members(path, url):
    """``(tarfile, {basename: member})`` of the archive at ``path``; :class:`CifarError` when unreadable."""
    path = os.fspath(path)
    name = os.path.basename(url)
    if not os.path.isfile(path):
        raise CifarError(f"CIFAR archive not found: {path}", f"download {name} from {url}")
    try:
        tar = tarfile.open(path, "r:gz")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise CifarError(f"{path} is not a readable tar.gz ({type(e).__name__}: {e}). Delete it and download "
                         f"{name} again from {url}") from e
    try:
        return tar, {os.path.basename(m.name): m for m in tar.getmembers() if m.isfile()}
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        tar.close()
        raise CifarError(f"{path} is truncated or corrupt ({type(e).__name__}: {e}). Delete it and download "
                         f"{name} again from {url}") from e


def _read_names(tar, member, path, key, url):
    """The class names stored under ``key`` in the pickled meta ``member``."""
    if member.size > _MAX_MEMBER:
        raise CifarError(f"{path}: {member.name} is {member.size} bytes; not {os.path.basename(url)}")
    try:
        with tar.extractfile(member) as f:
            meta = safe_load_file(f, encoding="bytes", what="its pickle")
        classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta[key])
        if not classes or len(classes) > 1000:
            raise ValueError(f"{len(classes)} class names")
    except (OSError, EOFError, zlib.error, UnsafePickleError, KeyError, TypeError, ValueError,
            UnicodeDecodeError) as e:
        raise CifarError(f"{path}: {os.path.basename(member.name)} is corrupt ({e}); download the archive again "
                         f"from {url}") from e
    return classes


def _check_labels(path, splits, classes):
    for name, (_, y) in splits.items():
        if len(y) and (y.min() < 0 or y.max() >= len(classes)):
            raise CifarError(f"{path}: {name} labels outside 0..{len(classes) - 1}")
    return {**splits, "classes": classes}


def read_cifar10(path):
    """Read ``cifar-10-python.tar.gz``.

    Returns:
        dict with ``train``/``test`` -> ``(images uint8 [N, 32, 32, 3], labels int64 [N])``
        and ``classes`` (tuple of 10 names).

    Raises:
        CifarError: the file is missing, not a tar.gz, truncated or lacks a batch.
    """
    url = CIFAR10_OFFICIAL_URL
    tar, members = _open_members(path, url)
    with tar:
        missing = [n for n in _TRAIN_BATCHES + ("test_batch",) if n not in members]
        if missing:
            raise CifarError(f"{path} lacks {', '.join(missing)}: not the python version of CIFAR-10 "
                             f"(expected cifar-10-python.tar.gz from {url})")
        parts = [_read_batch(tar, members[n], path) for n in _TRAIN_BATCHES]
        train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        test = _read_batch(tar, members["test_batch"], path)
        classes = CIFAR10_CLASSES
        if "batches.meta" in members:
            classes = _read_names(tar, members["batches.meta"], path, b"label_names", url)
    return _check_labels(path, {"train": train, "test": test}, classes)


def read_cifar100(path):
    """Read ``cifar-100-python.tar.gz`` with its 100 fine labels.

    Returns:
        dict with ``train``/``test`` -> ``(images uint8 [N, 32, 32, 3], labels int64 [N])``
        and ``classes`` (the 100 fine label names of ``meta``).

    Raises:
        CifarError: the file is missing, not a tar.gz, truncated, lacks ``train``/``test``/``meta``
            or holds malformed batches.
    """
    url = CIFAR100_OFFICIAL_URL
    tar, members = _open_members(path, url)
    with tar:
        missing = [n for n in ("train", "test", "meta") if n not in members]
        if missing:
            raise CifarError(f"{path} lacks {', '.join(missing)}: not the python version of CIFAR-100 "
                             f"(expected cifar-100-python/{{train,test,meta}} as in {url})")
        train, test = (_read_batch(tar, members[n], path, b"fine_labels", url, _MAX_MEMBER_100)
                       for n in ("train", "test"))
        classes = _read_names(tar, members["meta"], path, b"fine_label_names", url)
    return _check_labels(path, {"train": train, "test": test}, classes)


def _online(host="dataset.bj.bcebos.com", port=443, timeout=5.0):
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def find_or_download_cifar10(path=None, download=True):
    """Path of ``cifar-10-python.tar.gz``: ``path`` if it exists; for the default path
    (``None`` or :data:`DEFAULT_PATH`) also Paddle's cache or download.

    Raises:
        CifarError: a ``path`` other than the default that is not a file (a mistyped path never
            falls back to another copy), or absent and cannot be downloaded (offline or ``download=False``).
    """
    path = os.fspath(path or DEFAULT_PATH)
    if os.path.isfile(path):
        return path
    if os.path.abspath(path) != os.path.abspath(DEFAULT_PATH):
        what = "is a directory, not" if os.path.isdir(path) else "does not exist; expected"
        raise CifarError(f"CIFAR-10 archive {path} {what} cifar-10-python.tar.gz (check --data, or omit it to "
                         f"use {DEFAULT_PATH} or Paddle's download cache)")
    cache = os.path.join(os.path.expanduser("~"), ".cache", "paddle", "dataset", "cifar", "cifar-10-python.tar.gz")
    if os.path.isfile(cache):
        return cache
    where = (f"Download cifar-10-python.tar.gz ({CIFAR10_OFFICIAL_URL}) and put it at {os.path.abspath(path)} "
             "(or pass --data PATH).")
    if not download:
        raise CifarError(f"CIFAR-10 not found at {path}. {where}")
    if not _online():
        raise CifarError(f"CIFAR-10 not found at {path} and this machine is offline, so Paddle cannot download "
                         f"it. {where}")
    ds = paddle.vision.datasets.Cifar10(mode="test", download=True)
    return ds.data_file
