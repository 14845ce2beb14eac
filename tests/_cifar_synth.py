"""Synthetic ``cifar-10-python.tar.gz`` in the real format, with a learnable task.

Each class has its own colour (plus noise), so a few optimizer steps reduce the loss.
"""
import io
import pickle
import tarfile

import numpy as np

PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230], [128, 128, 128], [0, 0, 0]], dtype=np.float64)


def make_batch(n, rng, num_classes=10):
    """One pickled-batch dict of ``n`` images: class colour plus Gaussian noise (sigma 25)."""
    labels = np.arange(n) % num_classes
    rng.shuffle(labels)
    img = PALETTE[labels][:, None, None, :] + rng.normal(0, 25, size=(n, 32, 32, 3))
    img = np.clip(img, 0, 255).astype(np.uint8)
    # [N, 32, 32, 3] -> [N, 3, 32, 32] -> [N, 3072] (CIFAR's channel-planar rows)
    data = img.transpose(0, 3, 1, 2).reshape(n, 3072)
    return {b"batch_label": b"synthetic", b"labels": labels.tolist(), b"data": data,
            b"filenames": [f"{i}.png".encode() for i in range(n)]}


def write_cifar_tar(path, per_batch=40, test=100, seed=0):
    """Write data_batch_1..5 (``per_batch`` images each), test_batch and batches.meta to ``path``."""
    rng = np.random.default_rng(seed)
    entries = {f"data_batch_{i}": make_batch(per_batch, rng) for i in range(1, 6)}
    entries["test_batch"] = make_batch(test, rng)
    entries["batches.meta"] = {b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog",
                                                b"frog", b"horse", b"ship", b"truck"],
                               b"num_cases_per_batch": per_batch, b"num_vis": 3072}
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in entries.items():
            raw = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path
