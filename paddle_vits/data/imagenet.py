"""ImageNet validation set in either of its two common layouts.

* List layout (PaddleClas / AI Studio, the source notebook): an image root and a
  ``val_list.txt`` whose lines are ``relative/path/to/image.JPEG <label>``,
  paths relative to the root.
* Folder layout (torchvision ``ImageFolder``): ``val/<wnid>/*.JPEG``; the label
  of a class folder is its index among the sorted folder names (the standard
  ImageNet class order when the 1000 wnids are present).

Items are ``(float32 [C, H, W] numpy array, int64 label)``: numpy, not Paddle
tensors, so the set is safe in ``DataLoader`` worker processes.
"""
import os

import numpy as np

from ..utils.cli import UserError
from .transforms import BadImageError, open_image

__all__ = ["ImageNetDataError", "ImageNetVal", "collate_skip", "read_val_list", "scan_image_folder", "IMG_EXTENSIONS"]

_SKIP_FIX = "replace or remove the file, or pass --on-bad-image skip to skip and count such images"
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


class ImageNetDataError(UserError, ValueError):
    """The dataset directory, its list file or one of its images is missing or malformed."""


def read_val_list(path, root=None):
    """Parse a ``relative/path label`` list file (UTF-8; a byte-order mark is ignored).

    Args:
        path: The list file.
        root: Directory the paths are relative to (defaults to the list's directory).

    Returns:
        list of ``(absolute_path, label)``.

    Raises:
        ImageNetDataError: missing or empty file, a line that is not UTF-8, or a
            malformed line (the file and line number are given).
    """
    if os.path.isdir(path):
        raise ImageNetDataError(f"val list {path!r} is a directory, not a file of 'relative/path label' lines")
    if not os.path.isfile(path):
        raise ImageNetDataError(f"val list not found: {path!r}")
    root = root if root is not None else os.path.dirname(os.path.abspath(path))
    with open(path, "rb") as f:
        raw = f.read()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    samples = []
    for lineno, line in enumerate(raw.splitlines(), 1):
        try:
            line = line.decode("utf-8").strip()
        except UnicodeDecodeError as e:
            raise ImageNetDataError(
                f"{path}:{lineno}: not UTF-8 (byte {line[e.start:e.start + 1]!r} at column {e.start + 1}); "
                "save the list as UTF-8") from None
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2:
            raise ImageNetDataError(
                f"{path}:{lineno}: expected 'relative/path label', got {line!r}")
        rel, label = parts
        try:
            label = int(label)
        except ValueError:
            raise ImageNetDataError(
                f"{path}:{lineno}: label {label!r} is not an integer (line {line!r})") from None
        if label < 0:
            raise ImageNetDataError(f"{path}:{lineno}: negative label {label}")
        samples.append((os.path.join(root, rel), label))
    if not samples:
        raise ImageNetDataError(f"val list {path!r} has no entries")
    return samples


def _walk_once(top):
    """``os.walk(top, followlinks=True)`` that enters each real directory once (no symlink loops)."""
    seen = set()
    stack = [top]
    while stack:
        d = stack.pop()
        try:
            st = os.stat(d)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as e:
            raise ImageNetDataError(f"cannot list {d!r}: {e.strerror or e}") from None
        files = [e for e in entries if not e.is_dir()]
        yield d, files
        stack.extend(e.path for e in reversed(entries) if e.is_dir())


def scan_image_folder(root):
    """List ``root/<class>/<image>`` files; labels are sorted class-folder indices.

    Symlinks are followed, but each real directory is entered once and each real
    file (device, inode) is listed once: a symlink loop or a linked duplicate
    folder adds no image.

    Returns:
        (samples, classes): ``[(path, label), ...]`` and the sorted class names.
    """
    classes = sorted(d.name for d in os.scandir(root) if d.is_dir())
    if not classes:
        raise ImageNetDataError(
            f"{root!r} has no class folders: expected <root>/<wnid>/*.JPEG, "
            "or pass --val-list for an image directory with a 'path label' list")
    samples = []
    seen_files = set()
    for label, cls in enumerate(classes):
        for dirpath, files in sorted(_walk_once(os.path.join(root, cls)), key=lambda d: d[0]):
            for entry in files:
                if not entry.name.lower().endswith(IMG_EXTENSIONS):
                    continue
                try:
                    st = entry.stat()
                except OSError:  # a dangling symlink: reported when the image is read
                    st = None
                key = (st.st_dev, st.st_ino) if st is not None else entry.path
                if key in seen_files:
                    continue
                seen_files.add(key)
                samples.append((entry.path, label))
    if not samples:
        raise ImageNetDataError(f"no images ({', '.join(IMG_EXTENSIONS)}) under the class folders of {root!r}")
    return samples, classes


class ImageNetVal:
    """ImageNet-val (or any set in the same layouts) for evaluation.

    Layout detection: with ``val_list`` given, paths in it are relative to
    ``root``. Otherwise ``root/val_list.txt`` is used when present, then
    ``root/val/<wnid>/``, then ``root/<wnid>/``.

    Args:
        root: Dataset directory.
        transform: Callable on a PIL image, e.g. :class:`paddle_vits.data.transforms.EvalTransform`.
        val_list: Optional list file of ``relative/path label`` lines.
        on_bad_image: ``"fail"`` raises :class:`ImageNetDataError` on an unreadable
            image; ``"skip"`` returns ``None`` for it (drop it with
            :func:`collate_skip`) and counts it.
        limit: Keep only the first ``limit`` samples (quick checks).
    """

    def __init__(self, root, transform=None, val_list=None, on_bad_image="fail", limit=None):
        if on_bad_image not in ("fail", "skip"):
            raise ValueError(f"on_bad_image must be 'fail' or 'skip', got {on_bad_image!r}")
        root = os.fspath(root)
        if not os.path.isdir(root):
            raise ImageNetDataError(f"data directory not found: {root!r}")
        self.root = root
        self.transform = transform
        self.on_bad_image = on_bad_image
        self.classes = None
        if val_list is None and os.path.isfile(os.path.join(root, "val_list.txt")):
            val_list = os.path.join(root, "val_list.txt")
        if val_list is not None:
            self.layout = "list"
            self.samples = read_val_list(os.fspath(val_list), root)
        else:
            self.layout = "folder"
            folder = os.path.join(root, "val") if os.path.isdir(os.path.join(root, "val")) else root
            self.samples, self.classes = scan_image_folder(folder)
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise ValueError(f"limit must be an integer >= 1 (or None for all images), got {limit!r}")
            self.samples = self.samples[:limit]

    def __len__(self):
        return len(self.samples)

    def load(self, index):
        """The image at ``index`` as an RGB PIL image (:class:`ImageNetDataError` on a bad one)."""
        return open_image(self.samples[index][0], ImageNetDataError)

    def __getitem__(self, index):
        path, label = self.samples[index]
        try:
            img = self.load(index)
            if self.transform is not None:
                img = self.transform(img)
        except (ImageNetDataError, BadImageError, MemoryError) as e:
            if self.on_bad_image == "skip":
                return None
            if isinstance(e, ImageNetDataError):
                raise ImageNetDataError(e.what, _SKIP_FIX) from None
            raise ImageNetDataError(f"bad image {path!r}: {e or 'out of memory'}", _SKIP_FIX) from None
        return img, np.int64(label)


def collate_skip(batch):
    """Stack ``(image, label)`` items, dropping skipped (``None``) ones.

    Returns:
        ``(images [B, C, H, W] float32, labels [B] int64, n_skipped)``; ``images``
        is ``None`` when every item of the batch was skipped.
    """
    kept = [b for b in batch if b is not None]
    skipped = len(batch) - len(kept)
    if not kept:
        return None, None, skipped
    images = np.stack([np.asarray(b[0], dtype=np.float32) for b in kept])
    labels = np.asarray([b[1] for b in kept], dtype=np.int64)
    return images, labels, skipped
