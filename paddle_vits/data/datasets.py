"""Training datasets chosen by what ``--data`` points at.

* ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``: the archives (CIFAR-100 with its fine labels),
  read by :mod:`paddle_vits.data.cifar`'s safe reader.
* An image folder ``DIR/train/<class>/*`` and ``DIR/val/<class>/*`` (ImageNet's layout): classes are the
  sorted folder names of ``train``; ``val`` must have the same ones.
* PaddleClas file lists ``DIR/train_list.txt`` and ``DIR/val_list.txt`` of ``relative/path label`` lines,
  the paths relative to ``data_root`` (default ``DIR``); class names from ``DIR/classes.txt`` when present,
  else the label numbers.

:func:`read_dataset` returns the same dict for each: ``train``/``test`` -> ``(items, labels)``, ``classes``
and ``kind``; ``items`` are uint8 ``[N, H, W, 3]`` images (CIFAR) or file paths. :class:`ImageDataset`
serves either as ``(float32 [3, H, W] numpy array, int64 label)``, with augmentation drawn from
``(seed, epoch, index)``.
"""
import os
import random

import numpy as np

from ..utils.cli import UserError
from .cifar import CIFAR10_CLASSES, read_cifar10, read_cifar100
from .imagenet import ImageNetDataError, read_val_list, scan_image_folder
from .transforms import open_image

__all__ = ["CIFAR10", "DatasetError", "ImageDataset", "read_dataset", "dataset_kind"]


class DatasetError(UserError, ValueError):
    """A dataset path of the wrong layout, a bad list file or an unreadable image."""


_LAYOUTS = ("cifar-10-python.tar.gz, cifar-100-python.tar.gz, a folder with train/<class>/* and "
            "val/<class>/*, or a folder with train_list.txt and val_list.txt")


def dataset_kind(path):
    """``"cifar10"``, ``"cifar100"``, ``"folder"`` or ``"list"`` for ``path``; :class:`DatasetError` naming
    what was found when it is none of them."""
    path = os.fspath(path)
    if os.path.isfile(path):
        name = os.path.basename(path).lower()
        if "cifar-100" in name or "cifar100" in name:
            return "cifar100"
        if name.endswith((".tar.gz", ".tgz")):
            return "cifar10"
        raise DatasetError(f"--data {path} is a file that is not a CIFAR archive", f"expected {_LAYOUTS}")
    if not os.path.isdir(path):
        raise DatasetError(f"--data {path} does not exist", f"check --data; expected {_LAYOUTS}")
    lists = [n for n in ("train_list.txt", "val_list.txt") if os.path.isfile(os.path.join(path, n))]
    dirs = [n for n in ("train", "val") if os.path.isdir(os.path.join(path, n))]
    if len(lists) == 2:
        return "list"
    if len(dirs) == 2:
        return "folder"
    found = sorted(os.listdir(path))
    shown = ", ".join(found[:8]) + (", ..." if len(found) > 8 else "") if found else "nothing"
    raise DatasetError(f"--data {path} is a directory of neither layout (it holds {shown})", f"expected {_LAYOUTS}")


def _folder(path):
    splits = {}
    for split in ("train", "val"):
        try:
            samples, classes = scan_image_folder(os.path.join(path, split))
        except ImageNetDataError as e:
            raise DatasetError(e.what, f"expected {path}/{split}/<class>/<image>") from None
        splits[split] = (samples, classes)
    train_classes, val_classes = splits["train"][1], splits["val"][1]
    if train_classes != val_classes:
        only_train = sorted(set(train_classes) - set(val_classes))
        only_val = sorted(set(val_classes) - set(train_classes))
        raise DatasetError(f"{path}: train and val have different class folders (only in train: "
                           f"{', '.join(only_train[:5]) or 'none'}; only in val: {', '.join(only_val[:5]) or 'none'})",
                           "give val/ the same class folders as train/ (an empty folder is fine)")
    return splits["train"][0], splits["val"][0], tuple(train_classes)


def _lists(path, root):
    root = os.fspath(root) if root is not None else path
    if not os.path.isdir(root):
        raise DatasetError(f"--data-root {root} is not a directory", "give the directory the list paths start from")
    out = []
    for name in ("train_list.txt", "val_list.txt"):
        try:
            samples = read_val_list(os.path.join(path, name), root)
        except ImageNetDataError as e:
            raise DatasetError(e.what, "fix the list: one 'relative/path label' per line") from None
        for i, (p, _) in enumerate(samples):
            if not os.path.isfile(p):
                raise DatasetError(f"{os.path.join(path, name)}: entry {i + 1} names {p}, which does not exist",
                                   "pass --data-root, the directory the list's paths are relative to")
        out.append(samples)
    num_classes = 1 + max(label for samples in out for _, label in samples)
    classes_file = os.path.join(path, "classes.txt")
    if os.path.isfile(classes_file):
        with open(classes_file, encoding="utf-8-sig") as f:
            classes = tuple(line.strip() for line in f if line.strip())
        if len(classes) < num_classes:
            raise DatasetError(f"{classes_file} names {len(classes)} classes but the lists use labels up to "
                               f"{num_classes - 1}", "one class name per line, in label order")
    else:
        classes = tuple(str(i) for i in range(num_classes))
    return out[0], out[1], classes


def _split(samples):
    items = np.array([p for p, _ in samples], dtype=object)
    return items, np.array([label for _, label in samples], dtype=np.int64)


def read_dataset(path, data_root=None):
    """Read (or, for file datasets, list) the dataset at ``path``; see the module docstring for the layouts.

    Returns:
        dict with ``train`` and ``test`` -> ``(items, labels int64 [N])``, ``classes`` (tuple of names)
        and ``kind`` (:func:`dataset_kind`).

    Raises:
        DatasetError: a layout that is none of the four, a list entry that does not exist, train and val
            with different classes. :class:`~paddle_vits.data.cifar.CifarError`: a bad archive.
    """
    path = os.fspath(path)
    kind = dataset_kind(path)
    if kind == "cifar10":
        return {**read_cifar10(path), "kind": kind}
    if kind == "cifar100":
        return {**read_cifar100(path), "kind": kind}
    if data_root is not None and kind != "list":
        raise DatasetError(f"--data-root is for file lists; --data {path} is an image folder",
                           "drop --data-root")
    train, val, classes = _folder(path) if kind == "folder" else _lists(path, data_root)
    return {"train": _split(train), "test": _split(val), "classes": classes, "kind": kind}


def _sample_seed(seed, epoch, index):
    return (int(seed) * 1_000_003 + int(epoch) * 100_003 + int(index)) % (2 ** 32)


class ImageDataset:
    """A split of :func:`read_dataset`; augmentation randomness is a function of ``(seed, epoch, index)``.

    Python's and numpy's RNGs are seeded from ``(seed, epoch, index)`` before each sample's transform
    (and restored after), so augmentation does not depend on worker count and a resumed run sees the
    images an uninterrupted one would. Call :meth:`set_epoch` each epoch.

    Args:
        images: uint8 ``[N, H, W, 3]`` or an array of image file paths.
        labels: int ``[N]``.
        transform: Callable on an RGB PIL image returning a numpy array; ``None`` returns the PIL image.
        seed: Base seed of the augmentation.
        classes: Class names.
    """

    def __init__(self, images, labels, transform=None, seed=0, classes=()):
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self.classes = tuple(classes)

    def set_epoch(self, epoch):
        """Draw the augmentation of epoch ``epoch`` from now on."""
        self.epoch = int(epoch)

    def __len__(self):
        return len(self.labels)

    def load(self, index):
        """The image at ``index`` as an RGB PIL image."""
        from PIL import Image

        item = self.images[index]
        if isinstance(item, str):
            return open_image(item, DatasetError)
        return Image.fromarray(np.asarray(item))

    def thumbnail(self, index, size=64):
        """The image at ``index`` as uint8 ``[size, size, 3]`` (for plots)."""
        return np.asarray(self.load(index).resize((size, size)))

    def __getitem__(self, index):
        img = self.load(index)
        if self.transform is not None:
            py_state, np_state = random.getstate(), np.random.get_state()
            s = _sample_seed(self.seed, self.epoch, index)
            random.seed(s)
            np.random.seed(s)
            try:
                img = self.transform(img)
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)
        return img, self.labels[index]


class CIFAR10(ImageDataset):
    """A CIFAR-10 split held in memory (:class:`ImageDataset` with CIFAR-10's class names).

    Args:
        images: uint8 ``[N, 32, 32, 3]``.
        labels: int ``[N]``.
        transform: Callable on an RGB PIL image returning a numpy array (see
            :mod:`paddle_vits.data.train_transforms`); ``None`` returns the PIL image.
        seed: Base seed of the augmentation.
        classes: Class names.
    """

    def __init__(self, images, labels, transform=None, seed=0, classes=CIFAR10_CLASSES):
        super().__init__(images, labels, transform, seed, classes)

    @classmethod
    def from_archive(cls, path, split="train", transform=None, seed=0):
        """The ``"train"`` or ``"test"`` split of ``cifar-10-python.tar.gz`` at ``path``."""
        if split not in ("train", "test"):
            raise DatasetError(f"split must be 'train' or 'test', got {split!r}")
        data = read_cifar10(path)
        return cls(*data[split], transform, seed, data["classes"])
