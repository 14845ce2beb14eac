"""CIFAR-10 archive reading, bad archives, the offline message and the deterministic dataset."""
import gzip
import io
import pickle
import random
import socket
import tarfile

import numpy as np
import paddle
import pytest

from _cifar_synth import PALETTE, make_batch
from paddle_vits.data import cifar
from paddle_vits.data.cifar import CifarError, find_or_download_cifar10, read_cifar10
from paddle_vits.data.datasets import CIFAR10
from paddle_vits.data.train_transforms import eval_transform, train_transform

BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]


def _write_tar(path, entries):
    """Write ``{name: bytes}`` as ``cifar-10-batches-py/NAME`` members of a tar.gz."""
    with tarfile.open(path, "w:gz") as tar:
        for name, raw in entries.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return str(path)


def _entries(per_batch=10):
    rng = np.random.default_rng(1)
    out = {n: pickle.dumps(make_batch(per_batch, rng), protocol=2) for n in BATCHES[:6]}
    out["batches.meta"] = pickle.dumps({b"label_names": [c.encode() for c in cifar.CIFAR10_CLASSES]}, protocol=2)
    return out


def test_synthetic_archive_has_the_real_layout(cifar_tar):
    with tarfile.open(cifar_tar, "r:gz") as tar:
        names = sorted(m.name for m in tar.getmembers())
        assert names == sorted(f"cifar-10-batches-py/{n}" for n in BATCHES)
        batch = pickle.load(tar.extractfile("cifar-10-batches-py/data_batch_1"), encoding="bytes")
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape == (40, 3072)
    assert len(batch[b"labels"]) == 40


def test_read_matches_paddles_own_reader(cifar_tar):
    data = read_cifar10(cifar_tar)
    (x, y), (xt, yt) = data["train"], data["test"]
    assert yt.shape == (100,) and yt.dtype == np.int64
    assert x.shape == (200, 32, 32, 3) and x.dtype == np.uint8 and y.shape == (200,)
    assert xt.shape == (100, 32, 32, 3) and data["classes"] == cifar.CIFAR10_CLASSES
    ref = paddle.vision.datasets.Cifar10(data_file=cifar_tar, mode="train", download=False, backend="cv2")
    for i in (0, 57, 199):
        img, label = ref[i]
        np.testing.assert_array_equal(np.asarray(img), x[i])
        assert int(label) == y[i]


def test_channels_are_in_rgb_order(cifar_tar):
    x, y = read_cifar10(cifar_tar)["train"]
    mean_colour = x.reshape(len(x), -1, 3).mean(1)  # [N, 32, 32, 3] -> [N, 1024, 3] -> [N, 3]
    assert np.abs(mean_colour - PALETTE[y]).max() < 15  # noise sigma 25 (clipped), 1024 pixels


def test_not_a_tar_gz(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(b"<html>404 not found</html>" * 10)
    with pytest.raises(CifarError, match="not a readable tar.gz.*download"):
        read_cifar10(path)


def test_truncated_archive(tmp_path, cifar_tar):
    raw = open(cifar_tar, "rb").read()
    path = tmp_path / "cut.tar.gz"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CifarError, match="(truncated or corrupt|is corrupt).*download"):
        read_cifar10(path)


def test_corrupt_compressed_stream(tmp_path, cifar_tar):
    raw = bytearray(open(cifar_tar, "rb").read())
    raw[len(raw) // 2: len(raw) // 2 + 64] = bytes(64)  # zero a block in the middle of the deflate stream
    path = tmp_path / "bad.tar.gz"
    path.write_bytes(bytes(raw))
    with pytest.raises(CifarError, match="corrupt"):
        read_cifar10(path)


def test_missing_batch(tmp_path):
    entries = _entries()
    del entries["test_batch"]
    with pytest.raises(CifarError, match="lacks test_batch"):
        read_cifar10(_write_tar(tmp_path / "x.tar.gz", entries))


def test_batch_of_the_wrong_shape(tmp_path):
    entries = _entries()
    entries["data_batch_3"] = pickle.dumps({b"data": np.zeros((4, 1024), np.uint8), b"labels": [0] * 4})
    with pytest.raises(CifarError, match=r"data_batch_3 has data \(4, 1024\).*expected \[N, 3072\]"):
        read_cifar10(_write_tar(tmp_path / "x.tar.gz", entries))


def test_batch_that_is_not_a_pickle(tmp_path):
    entries = _entries()
    entries["data_batch_2"] = b"garbage" * 100
    with pytest.raises(CifarError, match="data_batch_2 is corrupt"):
        read_cifar10(_write_tar(tmp_path / "x.tar.gz", entries))


def test_labels_out_of_range(tmp_path):
    entries = _entries()
    bad = pickle.loads(entries["test_batch"])
    bad[b"labels"][0] = 10
    entries["test_batch"] = pickle.dumps(bad)
    with pytest.raises(CifarError, match="test labels outside 0..9"):
        read_cifar10(_write_tar(tmp_path / "x.tar.gz", entries))


def test_gzip_of_something_else(tmp_path):
    path = tmp_path / "x.tar.gz"
    path.write_bytes(gzip.compress(b"plain text, not a tar" * 100))
    with pytest.raises(CifarError, match="not a readable tar.gz"):
        read_cifar10(path)


def test_offline_missing_data_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no Paddle cache copy either

    def unreachable(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.chdir(tmp_path)  # the default path data/cifar-10-python.tar.gz is absent
    with pytest.raises(CifarError) as e:
        find_or_download_cifar10()
    msg = str(e.value)
    assert "offline" in msg and cifar.DEFAULT_PATH in msg and "--data" in msg and cifar.CIFAR10_OFFICIAL_URL in msg


def test_no_download_requested(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CifarError, match="not found at"):
        find_or_download_cifar10(cifar.DEFAULT_PATH, download=False)


def _paddle_cache(tmp_path, monkeypatch, cifar_tar):
    monkeypatch.setenv("HOME", str(tmp_path))
    cache = tmp_path / ".cache" / "paddle" / "dataset" / "cifar" / "cifar-10-python.tar.gz"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(open(cifar_tar, "rb").read())
    return cache


def test_existing_path_and_paddle_cache_are_used(tmp_path, monkeypatch, cifar_tar):
    assert find_or_download_cifar10(cifar_tar) == cifar_tar
    cache = _paddle_cache(tmp_path, monkeypatch, cifar_tar)
    monkeypatch.chdir(tmp_path)
    assert find_or_download_cifar10() == str(cache)
    assert find_or_download_cifar10(cifar.DEFAULT_PATH) == str(cache)


@pytest.mark.parametrize("given", ["absent.tar.gz", "data/cifar-10-pyhton.tar.gz", "data"])
def test_a_given_path_never_falls_back_to_the_cache(tmp_path, monkeypatch, cifar_tar, given):
    _paddle_cache(tmp_path, monkeypatch, cifar_tar)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    with pytest.raises(CifarError, match=f"CIFAR-10 archive {given} (does not exist|is a directory).*check --data"):
        find_or_download_cifar10(given)


def test_augmentation_is_a_function_of_seed_epoch_index(cifar_tar):
    x, y = read_cifar10(cifar_tar)["train"]
    ds = CIFAR10(x, y, transform=train_transform(32), seed=3)
    py_state, np_state = random.getstate(), np.random.get_state()
    a, label = ds[5]
    assert random.getstate() == py_state and np.array_equal(np.random.get_state()[1], np_state[1])
    assert isinstance(a, np.ndarray) and a.dtype == np.float32 and a.shape == (3, 32, 32) and label == y[5]
    np.testing.assert_array_equal(ds[5][0], a)
    ds.set_epoch(1)
    assert not np.array_equal(ds[5][0], a)
    ds.set_epoch(0)
    np.testing.assert_array_equal(ds[5][0], a)
    assert not np.array_equal(CIFAR10(x, y, transform=train_transform(32), seed=4)[5][0], a)


def test_eval_transform_resizes_and_normalises(cifar_tar):
    x, y = read_cifar10(cifar_tar)["test"]
    img, _ = CIFAR10(x, y, transform=eval_transform(64))[0]
    assert img.shape == (3, 64, 64) and img.dtype == np.float32
    mean = np.array([0.485, 0.456, 0.406]) * 255
    std = np.array([0.229, 0.224, 0.225]) * 255
    expect = (x[0].reshape(-1, 3).mean(0) - mean) / std  # [32, 32, 3] -> [1024, 3] -> [3]
    np.testing.assert_allclose(img.reshape(3, -1).mean(1), expect, atol=0.05)  # [3, 64, 64] -> [3, 4096]


def test_worker_processes_give_the_same_batches(cifar_tar):
    x, y = read_cifar10(cifar_tar)["train"]
    ds = CIFAR10(x[:24], y[:24], transform=train_transform(32), seed=0)

    def batches(workers):
        loader = paddle.io.DataLoader(ds, batch_size=8, num_workers=workers, use_shared_memory=workers > 0)
        return [(b[0].numpy(), b[1].numpy()) for b in loader]

    for (a, la), (b, lb) in zip(batches(0), batches(2)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)


def test_from_archive(cifar_tar):
    ds = CIFAR10.from_archive(cifar_tar, split="test")
    assert len(ds) == 100 and ds.classes == cifar.CIFAR10_CLASSES
    img, label = ds[0]  # no transform: the RGB PIL image
    assert img.mode == "RGB" and 0 <= label < 10
    np.testing.assert_array_equal(np.asarray(img), read_cifar10(cifar_tar)["test"][0][0])
