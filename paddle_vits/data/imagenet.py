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
from PIL import Image

__all__ = ["ImageNetDataError", "ImageNetVal", "collate_skip", "read_val_list", "scan_image_folder", "IMG_EXTENSIONS"]

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


class ImageNetDataError(ValueError):
    """The dataset directory, its list file or one of its images is missing or malformed."""


def read_val_list(path, root=None):
    """Parse a ``relative/path label`` list file.

    Args:
        path: The list file.
        root: Directory the paths are relative to (defaults to the list's directory).

    Returns:
        list of ``(absolute_path, label)``.

    Raises:
        ImageNetDataError: missing or empty file, or a malformed line (its number is given).
    """
    if not os.path.isfile(path):
        raise ImageNetDataError(f"val list not found: {path!r}")
    root = root if root is not None else os.path.dirname(os.path.abspath(path))
    samples = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
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


def scan_image_folder(root):
    """List ``root/<class>/<image>`` files; labels are sorted class-folder indices.

    Returns:
        (samples, classes): ``[(path, label), ...]`` and the sorted class names.
    """
    classes = sorted(d.name for d in os.scandir(root) if d.is_dir())
    if not classes:
        raise ImageNetDataError(
            f"{root!r} has no class folders: expected <root>/<wnid>/*.JPEG, "
            "or pass --val-list for an image directory with a 'path label' list")
    samples = []
    for label, cls in enumerate(classes):
        for dirpath, _, files in sorted(os.walk(os.path.join(root, cls), followlinks=True)):
            for fname in sorted(files):
                if fname.lower().endswith(IMG_EXTENSIONS):
                    samples.append((os.path.join(dirpath, fname), label))
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
            self.samples = self.samples[: int(limit)]

    def __len__(self):
        return len(self.samples)

    def load(self, index):
        """The image at ``index`` as an RGB PIL image (raises on an unreadable file)."""
        path = self.samples[index][0]
        try:
            with Image.open(path) as img:
                return img.convert("RGB")
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageNetDataError(f"cannot read image {path!r}: {e}") from e

    def __getitem__(self, index):
        label = self.samples[index][1]
        try:
            img = self.load(index)
        except ImageNetDataError:
            if self.on_bad_image == "skip":
                return None
            raise
        if self.transform is not None:
            img = self.transform(img)
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
