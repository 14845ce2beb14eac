"""Checkpoint reading and strict conversion (``paddle_vits.convert``).

Files are written in the real formats: PyTorch zip checkpoints with ``torch.save``
(tests skip when torch is absent) or, torch-free, a hand-built zip with a hostile
pickle; ``.safetensors`` with the safetensors numpy API.
"""
import argparse
import os
import pickle
import zipfile

import numpy as np
import paddle
import pytest

from paddle_vits.convert import CheckpointError, convert_state_dict, read_checkpoint


class Tiny(paddle.nn.Layer):
    """A square Linear (must be transposed), a 2-D non-Linear parameter (must not), a head."""

    def __init__(self, num_classes=5):
        super().__init__()
        self.pos_embed = self.create_parameter([4, 4])
        self.fc = paddle.nn.Linear(4, 4)
        self.norm = paddle.nn.LayerNorm(4)
        self.head = paddle.nn.Linear(4, num_classes)

    def forward(self, x):
        return self.head(self.norm(self.fc(x + self.pos_embed)))


def _official_state_dict(num_classes=5, seed=0):
    """PyTorch-layout weights of :class:`Tiny` (Linear weights ``[out, in]``)."""
    rng = np.random.RandomState(seed)
    f = lambda *s: rng.randn(*s).astype(np.float32)  # noqa: E731
    return {"pos_embed": f(4, 4), "fc.weight": f(4, 4), "fc.bias": f(4), "norm.weight": f(4),
            "norm.bias": f(4), "head.weight": f(num_classes, 4), "head.bias": f(num_classes)}


class _Evil:
    """Pickles as a call to ``os.system``: a reader that executes pickled code would create ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ---- reading --------------------------------------------------------------------------------


@pytest.mark.parametrize("wrap", ["bare", "model", "state_dict", "module_prefix", "with_namespace"])
def test_read_torch_zip_without_torch_load(tmp_path, wrap):
    torch = pytest.importorskip("torch")
    sd = _official_state_dict()
    tsd = {k: torch.from_numpy(v) for k, v in sd.items()}
    obj = {
        "bare": tsd,
        "model": {"model": tsd, "epoch": 3},
        "state_dict": {"state_dict": tsd, "optimizer": {"lr": 0.1}},
        "module_prefix": {"model": {"module." + k: v for k, v in tsd.items()}},
        "with_namespace": {"model": tsd, "args": argparse.Namespace(lr=0.1, model="tiny"), "epoch": 299},
    }[wrap]
    path = tmp_path / "ckpt.pth"
    torch.save(obj, str(path))
    out = read_checkpoint(path)
    assert sorted(out) == sorted(sd)
    for k, v in sd.items():
        assert out[k].dtype == np.float32
        np.testing.assert_array_equal(out[k], v)


def test_read_torch_zip_dtypes_views_and_shared_storage(tmp_path):
    torch = pytest.importorskip("torch")
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    sd = {
        "transposed": base.t(),  # non-contiguous view
        "slice": base[1:3, 2:5],  # offset into a shared storage
        "half": torch.linspace(-2, 2, 7).half(),
        "bf16": torch.tensor([1.5, -0.25, 3.0], dtype=torch.bfloat16),
        "long": torch.tensor([3, -1, 7]),
        "flag": torch.tensor([True, False]),
        "scalar": torch.tensor(2.5),
        "param": torch.nn.Parameter(torch.ones(2, 2)),
    }
    path = tmp_path / "d.pt"
    torch.save(sd, str(path))
    out = read_checkpoint(path)
    for k, v in sd.items():
        ref = v.detach().float().numpy() if v.dtype == torch.bfloat16 else v.detach().numpy()
        assert out[k].shape == ref.shape, k
        np.testing.assert_array_equal(out[k], ref, err_msg=k)
    assert out["half"].dtype == np.float16 and out["long"].dtype == np.int64 and out["flag"].dtype == np.bool_


def test_read_real_module_state_dict(tmp_path):
    # A real ``state_dict()`` is an OrderedDict carrying ``_metadata`` (pickled as object state).
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    torch.save({"model": net.state_dict(), "args": argparse.Namespace(epochs=300)}, str(tmp_path / "net.pth"))
    out = read_checkpoint(tmp_path / "net.pth")
    ref = {k: v.numpy() for k, v in net.state_dict().items()}
    assert sorted(out) == sorted(ref)
    for k, v in ref.items():
        np.testing.assert_array_equal(out[k], v)


def test_hostile_pickle_is_never_executed_torch(tmp_path):
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.ones(2)}, "payload": _Evil(marker)}, str(path))
    out = read_checkpoint(path)
    assert list(out) == ["w"]
    assert not marker.exists()


def test_hostile_pickle_is_never_executed_without_torch(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"payload": _Evil(marker)}, protocol=2))
        z.writestr("archive/byteorder", "little")
    with pytest.raises(CheckpointError, match=r"asks for (posix|os)\.system.*refused"):
        read_checkpoint(path)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"note": "plain"}, protocol=2))
    with pytest.raises(CheckpointError, match="no tensors"):
        read_checkpoint(path)
    assert not marker.exists()


def test_read_safetensors(tmp_path):
    from safetensors.numpy import save_file

    sd = _official_state_dict()
    save_file(sd, str(tmp_path / "m.safetensors"))
    out = read_checkpoint(tmp_path / "m.safetensors")
    assert sorted(out) == sorted(sd)
    np.testing.assert_array_equal(out["fc.weight"], sd["fc.weight"])


def test_read_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "missing.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        read_checkpoint(tmp_path / "empty.pth")
    from safetensors.numpy import save_file

    save_file(_official_state_dict(), str(tmp_path / "full.safetensors"))
    data = (tmp_path / "full.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checkpoint(tmp_path / "cut.safetensors")
    (tmp_path / "text.pth").write_text("this is not a checkpoint")
    with pytest.raises(CheckpointError):
        read_checkpoint(tmp_path / "text.pth")


def test_read_truncated_torch_zip(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({k: torch.from_numpy(v) for k, v in _official_state_dict().items()}, str(tmp_path / "ok.pth"))
    data = (tmp_path / "ok.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checkpoint(tmp_path / "cut.pth")


# ---- conversion -----------------------------------------------------------------------------


def test_linear_transposed_by_module_type_not_by_shape():
    sd = _official_state_dict()
    model = Tiny()
    converted, skipped = convert_state_dict(sd, model)
    assert skipped == []
    np.testing.assert_array_equal(converted["fc.weight"], sd["fc.weight"].T)  # square Linear: transposed
    np.testing.assert_array_equal(converted["pos_embed"], sd["pos_embed"])  # square non-Linear: as is
    np.testing.assert_array_equal(converted["head.weight"], sd["head.weight"].T)
    model.set_state_dict(converted)
    # Same function as PyTorch's y = x W^T + b.
    x = np.random.RandomState(1).randn(2, 4, 4).astype(np.float32)
    h = (x + sd["pos_embed"]) @ sd["fc.weight"].T + sd["fc.bias"]
    h = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-5) * sd["norm.weight"] + sd["norm.bias"]
    ref = h @ sd["head.weight"].T + sd["head.bias"]
    model.eval()
    np.testing.assert_allclose(model(paddle.to_tensor(x)).numpy(), ref, rtol=1e-5, atol=1e-5)


def test_checkpoint_of_another_model_fails_clearly():
    sd = _official_state_dict()
    sd["blocks.0.attn.qkv.weight"] = np.zeros((12, 4), np.float32)
    del sd["fc.bias"]
    with pytest.raises(CheckpointError, match=r"does not fit.*missing.*fc.bias.*blocks.0.attn.qkv.weight"):
        convert_state_dict(sd, Tiny())
    sd = _official_state_dict()
    sd["fc.weight"] = np.zeros((4, 8), np.float32)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        convert_state_dict(sd, Tiny())


def test_head_of_another_size_needs_reinit():
    sd = _official_state_dict(num_classes=5)
    model = Tiny(num_classes=3)
    with pytest.raises(CheckpointError, match="classifier does not fit.*num_classes"):
        convert_state_dict(sd, model)
    converted, skipped = convert_state_dict(sd, model, reinit_head=True)
    assert skipped == ["head.bias", "head.weight"]
    assert "head.weight" not in converted
    np.testing.assert_array_equal(converted["fc.weight"], sd["fc.weight"].T)


def test_timm_cait_checkpoint_end_to_end(tmp_path):
    """A timm CaiT training checkpoint (wrapped, with an argparse.Namespace) -> .pdparams -> same logits."""
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    import paddle_vits
    from paddle_vits.convert import convert_checkpoint

    torch.manual_seed(0)
    ref = timm.create_model("cait_xxs24_224", img_size=32, num_classes=7).eval()
    with torch.no_grad():  # non-trivial LayerScale so every block matters
        for name, p in ref.named_parameters():
            if name.endswith(("gamma_1", "gamma_2")):
                p.uniform_(0.5, 1.0)
    torch.save({"model": ref.state_dict(), "args": argparse.Namespace(model="cait_xxs24_224"), "epoch": 1},
               str(tmp_path / "ckpt.pth"))
    report = convert_checkpoint("cait_xxs24_224", tmp_path / "ckpt.pth", tmp_path / "c.pdparams", img_size=32)
    assert report["num_classes"] == 7 and report["skipped"] == []
    model = paddle_vits.create_model("cait_xxs_24", pretrained=str(tmp_path / "c.pdparams"), num_classes=7,
                                     img_size=32)
    model.eval()
    x = np.random.RandomState(0).randn(2, 3, 32, 32).astype(np.float32)
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model(paddle.to_tensor(x)).numpy(), want, rtol=0, atol=1e-4)


def test_a_model_built_from_its_class_converts_official_names():
    """The checkpoint filter belongs to the model (no registry lookup): timm's CrossViT names convert
    for a model that ``create_model`` never saw."""
    from paddle_vits.models.crossvit import CrossViT

    model = CrossViT(img_size=120, embed_dim=(16, 32), depth=((1, 1),), num_heads=(2, 2), mlp_ratio=(2.0, 2.0),
                     num_classes=3)
    assert not hasattr(model, "model_name")
    linear = {f"{n}.weight" for n, layer in model.named_sublayers() if isinstance(layer, paddle.nn.Linear)}
    official = {}
    for k, v in model.state_dict().items():
        v = v.numpy().T if k in linear else v.numpy()
        for name in ("pos_embed", "cls_token"):
            k = k.replace(f"{name}.", f"{name}_") if k.startswith(f"{name}.") else k
        official[k] = np.ascontiguousarray(v)
    assert "pos_embed_0" in official and "pos_embed.0" not in official
    converted, skipped = convert_state_dict(official, model)
    assert skipped == [] and set(converted) == set(model.state_dict())
    np.testing.assert_array_equal(converted["pos_embed.1"], model.pos_embed[1].numpy())
    np.testing.assert_array_equal(converted["head.0.weight"], model.head[0].weight.numpy())
