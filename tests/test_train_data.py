"""Training datasets chosen by --data: image folders, PaddleClas lists, CIFAR-100; their layout errors."""
import io
import os
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from paddle_vits.data.cifar import CifarError
from paddle_vits.data.datasets import DatasetError, ImageDataset, dataset_kind, read_dataset
from paddle_vits.data.train_transforms import RandAugment, RandomErasing, imagenet_train_transform

COLOURS = {"blue": (20, 40, 220), "red": (220, 30, 30)}


def _square(rgb, rng, size=40):
    """A noisy square of colour ``rgb`` on a grey background."""
    img = np.full((size, size, 3), 128.0) + rng.normal(0, 12, (size, size, 3))
    a, b = size // 5, size - size // 5
    img[a:b, a:b] = np.asarray(rgb) + rng.normal(0, 12, (b - a, b - a, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def make_folder(root, n_train=24, n_val=8, seed=0):
    """``root/{train,val}/{blue,red}/*``: PNG and JPEG files, some grayscale-with-alpha and palette images."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for cls, rgb in COLOURS.items():
            d = os.path.join(root, split, cls)
            os.makedirs(d, exist_ok=True)
            for i in range(n):
                img = _square(rgb, rng)
                if i % 6 == 1:
                    img.convert("RGBA").save(os.path.join(d, f"{i}.png"))
                elif i % 6 == 2:
                    img.convert("P").save(os.path.join(d, f"{i}.png"))
                else:
                    img.save(os.path.join(d, f"{i}.jpg"), quality=90)
    return str(root)


def make_lists(folder, out_dir):
    """PaddleClas lists for the images of :func:`make_folder` (paths relative to ``folder``)."""
    os.makedirs(out_dir, exist_ok=True)
    for split in ("train", "val"):
        lines = []
        for label, cls in enumerate(sorted(COLOURS)):
            for name in sorted(os.listdir(os.path.join(folder, split, cls))):
                lines.append(f"{split}/{cls}/{name} {label}\n")
        with open(os.path.join(out_dir, f"{split}_list.txt"), "w", encoding="utf-8") as f:
            f.write("\ufeff" + "".join(lines))  # a BOM, as Windows editors write
    return str(out_dir)


def write_cifar100_tar(path, n_train=30, n_test=10, seed=0):
    """``cifar-100-python.tar.gz`` in the real format: ``train``/``test`` with fine and coarse labels, ``meta``."""
    rng = np.random.default_rng(seed)

    def batch(n):
        fine = rng.integers(0, 100, n)
        return {b"filenames": [b"x.png"] * n, b"batch_label": b"synthetic", b"fine_labels": fine.tolist(),
                b"coarse_labels": (fine // 5).tolist(), b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}

    entries = {"train": batch(n_train), "test": batch(n_test),
               "meta": {b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                        b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]}}
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in entries.items():
            raw = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return str(path), entries


def test_image_folder(tmp_path):
    root = make_folder(tmp_path / "ds")
    data = read_dataset(root)
    assert data["kind"] == "folder" and data["classes"] == ("blue", "red")
    (items, labels), (val_items, _) = data["train"], data["test"]
    assert len(items) == 48 and len(val_items) == 16
    assert np.bincount(labels).tolist() == [24, 24]
    ds = ImageDataset(items, labels, transform=None)
    for i in (0, 1, 2):  # JPEG, RGBA PNG, palette PNG: all decoded to RGB
        assert ds.load(i).mode == "RGB"
    x, y = ImageDataset(items, labels, transform=imagenet_train_transform(32), seed=3)[5]
    assert x.shape == (3, 32, 32) and x.dtype == np.float32 and y == labels[5]


def test_file_lists_with_data_root(tmp_path):
    folder = make_folder(tmp_path / "ds")
    lists = make_lists(folder, tmp_path / "lists")
    with pytest.raises(DatasetError, match=r"entry 1 names .*does not exist.*--data-root"):
        read_dataset(lists)  # paths are relative to the folder, not to the lists' directory
    data = read_dataset(lists, data_root=folder)
    assert data["kind"] == "list" and data["classes"] == ("0", "1")
    assert sorted(data["train"][0]) == sorted(read_dataset(folder)["train"][0])
    (tmp_path / "lists" / "classes.txt").write_text("blue\nred\n")
    assert read_dataset(lists, data_root=folder)["classes"] == ("blue", "red")
    with open(tmp_path / "lists" / "val_list.txt", "a") as f:
        f.write("val/red/0.jpg notanumber\n")
    with pytest.raises(DatasetError, match=r"val_list.txt:17: label 'notanumber' is not an integer"):
        read_dataset(lists, data_root=folder)


def test_cifar100_fine_labels(tmp_path):
    path, entries = write_cifar100_tar(tmp_path / "cifar-100-python.tar.gz")
    data = read_dataset(path)
    assert data["kind"] == "cifar100" and len(data["classes"]) == 100 and data["classes"][7] == "fine7"
    images, labels = data["train"]
    assert labels.tolist() == entries["train"][b"fine_labels"]
    # [N, 3072] channel-planar -> [N, 32, 32, 3]
    np.testing.assert_array_equal(images, entries["train"][b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def test_cifar100_without_meta(tmp_path):
    path = tmp_path / "cifar-100-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-100-python/train")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(CifarError, match="lacks test, meta"):
        read_dataset(str(path))


@pytest.mark.parametrize("layout, msg", [
    ("empty", r"neither layout \(it holds nothing\).*expected cifar-10-python"),
    ("train_only", r"neither layout \(it holds train\)"),
    ("no_images", r"no images .* under the class folders"),
    ("class_mismatch", r"different class folders \(only in train: green; only in val: none\)"),
    ("text_file", r"a file that is not a CIFAR archive"),
    ("missing", r"does not exist"),
])
def test_wrong_layouts_say_what_was_found_and_expected(tmp_path, layout, msg):
    root = tmp_path / "ds"
    if layout == "empty":
        root.mkdir()
    elif layout == "train_only":
        (root / "train" / "a").mkdir(parents=True)
    elif layout == "no_images":
        for s in ("train", "val"):
            (root / s / "a").mkdir(parents=True)
            (root / s / "a" / "notes.txt").write_text("x")
    elif layout == "class_mismatch":
        make_folder(root, 2, 2)
        (root / "train" / "green").mkdir()
        Image.new("RGB", (8, 8), (0, 255, 0)).save(root / "train" / "green" / "0.png")
    elif layout == "text_file":
        root = tmp_path / "data.txt"
        root.write_text("hello")
    with pytest.raises(DatasetError, match=msg):
        read_dataset(str(root))


def test_data_root_only_for_lists(tmp_path):
    root = make_folder(tmp_path / "ds", 2, 2)
    assert dataset_kind(root) == "folder"
    with pytest.raises(DatasetError, match="--data-root is for file lists"):
        read_dataset(root, data_root=root)


def test_bad_image_in_a_folder_names_the_file(tmp_path):
    root = make_folder(tmp_path / "ds", 2, 2)
    bad = tmp_path / "ds" / "train" / "red" / "zz.jpg"
    bad.write_bytes(b"not a jpeg")
    data = read_dataset(root)
    ds = ImageDataset(*data["train"])
    with pytest.raises(DatasetError, match="zz.jpg"):
        ds[list(data["train"][0]).index(str(bad))]


def test_augmentation_ops_keep_the_image_and_are_seeded():
    import random

    img = _square(COLOURS["red"], np.random.default_rng(0))
    random.seed(1)
    a = [np.asarray(RandAugment(2, 9)(img)) for _ in range(5)]
    random.seed(1)
    b = [np.asarray(RandAugment(2, 9)(img)) for _ in range(5)]
    assert all(x.shape == img.size[::-1] + (3,) and np.array_equal(x, y) for x, y in zip(a, b))
    assert any(not np.array_equal(x, np.asarray(img)) for x in a)  # some op changed the image
    x = np.zeros((3, 32, 32), np.float32)
    np.random.seed(0)
    erased = RandomErasing(prob=1.0)(x)
    frac = (erased != 0).any(0).mean()
    assert 0.02 <= frac <= 0.34 and not (x != 0).any()  # the input is not modified in place


def test_resume_on_a_changed_folder_says_what_differs(tmp_path):
    from paddle_vits.train import TrainConfig, TrainingError, train

    root = make_folder(tmp_path / "ds", 10, 4)
    opts = dict(workers=0, progress=False, visualdl=False)
    train(TrainConfig(model="cait_xxs_24", model_kwargs={"depth": 1}, data=root, output=str(tmp_path / "run"),
                      img_size=32, batch_size=10, epochs=2, max_steps=1, **opts))
    assert (tmp_path / "run" / "classes.txt").read_text() == "blue\nred\n"
    _square(COLOURS["red"], np.random.default_rng(1)).save(tmp_path / "ds" / "train" / "red" / "extra.png")
    with pytest.raises(TrainingError, match=r"does not match the checkpoint \(train_images 20 -> 21"):
        train(TrainConfig(resume=str(tmp_path / "run"), **opts))
    os.remove(tmp_path / "ds" / "train" / "red" / "extra.png")
    os.rename(tmp_path / "ds" / "train" / "red" / "3.jpg", tmp_path / "ds" / "train" / "red" / "3b.jpg")
    with pytest.raises(TrainingError, match=r"files_crc32"):
        train(TrainConfig(resume=str(tmp_path / "run"), **opts))
