"""Explanations: shapes, finiteness, and the right region on images where the answer is known."""
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import paddle
import paddle.nn as nn
import pytest

import paddle_vits
from paddle_vits import explain
from paddle_vits.layers import Attention
from paddle_vits.models.cait import ClassAttention

pytest.importorskip("lime")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ENV = dict(os.environ, PYTHONPATH=ROOT)  # the scripts import this checkout's paddle_vits
MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def _image_with_square(size=32, corner="top_left", seed=0):
    """Dark noise with a bright square filling one quadrant."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, size=(size, size, 3)).astype(np.uint8)
    h = size // 2
    rows = slice(0, h) if corner.startswith("top") else slice(h, size)
    cols = slice(0, h) if corner.endswith("left") else slice(h, size)
    img[rows, cols] = 230
    return img, (rows, cols)


class _QuadrantModel(nn.Layer):
    """Two-class model whose class-0 logit is the mean brightness of the top-left quadrant."""

    def forward(self, x):
        h, w = x.shape[2] // 2, x.shape[3] // 2
        score = x[:, :, :h, :w].mean(axis=[1, 2, 3]) * 4.0  # [B, 3, H, W] -> [B]
        return paddle.stack([score, paddle.zeros_like(score)], axis=1)  # [B, 2]


class _TinyClassAttention(nn.Layer):
    """A class token attending (one ClassAttention layer) to 8x8 patch tokens.

    Weights are set by hand: token feature 0 is the patch's mean intensity, the
    key projection copies it to every key dimension, and the class token's query
    is all ones, so the class token's attention logits grow with patch brightness.
    """

    def __init__(self, patch=8, dim=8):
        super().__init__()
        self.patch_embed = nn.Conv2D(3, dim, patch, stride=patch)
        self.cls_token = self.create_parameter([1, 1, dim])
        self.attn = ClassAttention(dim, num_heads=2, qkv_bias=True)
        self.head = nn.Linear(dim, 2)
        w = np.zeros([dim, 3, patch, patch], np.float32)
        w[0] = 1.0 / (3 * patch * patch)
        self.patch_embed.weight.set_value(w)
        self.patch_embed.bias.set_value(np.zeros([dim], np.float32))
        cls = np.zeros([1, 1, dim], np.float32)
        cls[..., 1] = 1.0
        self.cls_token.set_value(cls)
        q = np.zeros([dim, dim], np.float32)
        q[1, :] = 1.0  # query = ones for the class token
        k = np.zeros([dim, dim], np.float32)
        k[0, :] = 4.0  # key = 4 * brightness in every dimension
        self.attn.q.weight.set_value(q)
        self.attn.k.weight.set_value(k)
        for name in ("q", "k", "v"):
            getattr(self.attn, name).bias.set_value(np.zeros([dim], np.float32))
        self.model_info = SimpleNamespace(family="cait", mean=MEAN, std=STD)

    def forward(self, x):
        tokens = self.patch_embed(x).flatten(2).transpose([0, 2, 1])  # [B, C, h, w] -> [B, C, N] -> [B, N, C]
        x = paddle.concat([self.cls_token.expand([x.shape[0], -1, -1]), tokens], axis=1)  # [B, 1 + N, C]
        return self.head(self.attn(x)[:, 0])


class _GroupedBlock(nn.Layer):
    """Self-attention inside groups of 4x4 tokens on an 8x8 grid, CrossFormer style.

    ``lda=False``: groups are 4x4 windows (SDA); ``lda=True``: groups take every
    second token in each direction (LDA, interval 2).
    """

    def __init__(self, dim, lda):
        super().__init__()
        self.lda = lda
        self.norm1 = nn.Identity()
        self.attn = Attention(dim, num_heads=2, qkv_bias=True)

    def forward(self, x):
        B, L, C = x.shape
        y = self.norm1(x).reshape([B, 2, 4, 2, 4, C])  # [B, 64, C] -> [B, gh/ih, 4, gw/iw, 4, C]
        if self.lda:
            y = y.reshape([B, 4, 2, 4, 2, C]).transpose([0, 2, 4, 1, 3, 5])  # -> [B, 2, 2, 4, 4, C] strided
        else:
            y = y.transpose([0, 1, 3, 2, 4, 5])  # -> [B, 2, 2, 4, 4, C] windows
        y = self.attn(y.reshape([B * 4, 16, C]))  # [B * groups, 16, C]
        y = y.reshape([B, 2, 2, 4, 4, C])
        if self.lda:
            y = y.transpose([0, 3, 1, 4, 2, 5])  # -> [B, 4, 2, 4, 2, C]
        else:
            y = y.transpose([0, 1, 3, 2, 4, 5])  # -> [B, 2, 4, 2, 4, C]
        return x + y.reshape([B, L, C])  # [B, 8, 8, C] -> [B, 64, C]


class _TinyGrouped(nn.Layer):
    """Patch tokens (feature 0 = patch brightness), one grouped attention block, mean pool.

    Queries are constant, keys are 4 x brightness and values are brightness, so
    attention flows to bright tokens and the class-0 score grows with them.
    """

    def __init__(self, lda, dim=8):
        super().__init__()
        self.patch_embed = nn.Conv2D(3, dim, 4, stride=4)
        self.blocks = nn.LayerList([_GroupedBlock(dim, lda)])
        self.head = nn.Linear(dim, 2)
        w = np.zeros([dim, 3, 4, 4], np.float32)
        w[0] = 1.0 / 48
        self.patch_embed.weight.set_value(w)
        self.patch_embed.bias.set_value(np.zeros([dim], np.float32))
        attn = self.blocks[0].attn
        qkv = np.zeros([dim, 3 * dim], np.float32)
        qkv[0, dim:2 * dim] = 4.0
        qkv[0, 2 * dim:] = 1.0
        bias = np.zeros([3 * dim], np.float32)
        bias[:dim] = 1.0
        attn.qkv.weight.set_value(qkv)
        attn.qkv.bias.set_value(bias)
        attn.proj.weight.set_value(np.eye(dim, dtype=np.float32))
        attn.proj.bias.set_value(np.zeros([dim], np.float32))
        head = np.zeros([dim, 2], np.float32)
        head[:, 0] = 1.0
        self.head.weight.set_value(head)
        self.head.bias.set_value(np.zeros([2], np.float32))
        self.model_info = SimpleNamespace(family="crossformer", mean=MEAN, std=STD)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose([0, 2, 1])  # [B, C, 8, 8] -> [B, 64, C]
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(axis=1))


class _Branch(nn.Layer):
    """One ViT block: ``x + attn(x)``."""

    def __init__(self, dim):
        super().__init__()
        self.attn = Attention(dim, num_heads=2, qkv_bias=True)

    def forward(self, x):
        return x + self.attn(x)


class _Multi(nn.Layer):
    """CrossViT's multi-scale block layout: ``blocks.<branch>.<depth>`` (no fusion needed here)."""

    def __init__(self, dim, branches):
        super().__init__()
        self.blocks = nn.LayerList([nn.LayerList([_Branch(dim)]) for _ in range(branches)])

    def forward(self, xs):
        return [branch[0](x) for branch, x in zip(self.blocks, xs)]


class _TinyTwoBranch(nn.Layer):
    """Two branches (patches 4 and 8) of class token + patch tokens, named like CrossViT's layers.

    Feature 0 of a patch token is its brightness; queries are constant and keys are 4 x brightness, so
    every token (the class token included) attends to the bright patches.
    """

    def __init__(self, dim=8):
        super().__init__()
        self.patch_embed = nn.LayerList([nn.Conv2D(3, dim, p, stride=p) for p in (4, 8)])
        self.blocks = nn.LayerList([_Multi(dim, 2)])
        self.head = nn.Linear(dim, 2)
        for embed, p in zip(self.patch_embed, (4, 8)):
            w = np.zeros([dim, 3, p, p], np.float32)
            w[0] = 1.0 / (3 * p * p)
            embed.weight.set_value(w)
            embed.bias.set_value(np.zeros([dim], np.float32))
        for branch in self.blocks[0].blocks:
            attn = branch[0].attn
            qkv = np.zeros([dim, 3 * dim], np.float32)
            qkv[0, dim:2 * dim] = 4.0
            qkv[0, 2 * dim:] = 1.0
            bias = np.zeros([3 * dim], np.float32)
            bias[:dim] = 1.0
            attn.qkv.weight.set_value(qkv)
            attn.qkv.bias.set_value(bias)
        self.model_info = SimpleNamespace(family="crossvit", mean=MEAN, std=STD)

    def forward(self, x):
        xs = []
        for embed in self.patch_embed:
            tokens = embed(x).flatten(2).transpose([0, 2, 1])  # [B, C, h, w] -> [B, C, N] -> [B, N, C]
            xs.append(paddle.concat([paddle.zeros_like(tokens[:, :1]), tokens], axis=1))  # [B, 1 + N, C]
        for block in self.blocks:
            xs = block(xs)
        return paddle.stack([self.head(t[:, 0]) for t in xs]).mean(axis=0)  # 2 x [B, 2] -> [B, 2]


@pytest.mark.parametrize("corner", ["top_left", "bottom_right"])
def test_rollout_points_at_the_bright_quadrant_in_each_branch(corner):
    img, (rows, cols) = _image_with_square(32, corner)
    exp = explain.explain_attention(_TinyTwoBranch(), img)
    assert exp.method == "rollout" and set(exp.maps) == {"branch0", "branch1"}
    for branch, grid in (("branch0", 8), ("branch1", 4)):
        heat = exp.maps[branch]
        assert heat.shape == img.shape[:2] and np.isfinite(heat).all()
        token = exp.token_maps[branch]
        assert token.shape == (grid, grid)
        cell = 32 // grid
        quadrant = np.zeros((grid, grid), bool)
        quadrant[rows.start // cell:rows.stop // cell, cols.start // cell:cols.stop // cell] = True
        assert token[quadrant].min() > 10 * token[~quadrant].max()
        assert heat[rows, cols].mean() > 0.8


@pytest.mark.parametrize("lda", [False, True], ids=["sda", "lda"])
@pytest.mark.parametrize("corner", ["top_right", "bottom_left"])
def test_grad_attention_points_at_the_bright_quadrant(lda, corner):
    img, (rows, cols) = _image_with_square(32, corner)
    exp = explain.explain_attention(_TinyGrouped(lda), img, label=0)
    assert exp.method == "grad_attention"
    heat = exp.maps["grad_attention"]
    assert heat.shape == img.shape[:2] and np.isfinite(heat).all()
    token = exp.token_maps["grad_attention"]
    assert token.shape == (8, 8)
    quadrant = np.zeros((8, 8), bool)
    quadrant[rows.start // 4:rows.stop // 4, cols.start // 4:cols.stop // 4] = True
    assert token[quadrant].min() > 10 * token[~quadrant].max()
    assert heat[rows, cols].mean() > 0.8


@pytest.mark.parametrize("lda", [False, True], ids=["sda", "lda"])
def test_token_groups_recovers_the_grouping(lda):
    groups = explain.token_groups(_TinyGrouped(lda), 32)
    assert list(groups) == ["blocks.0.attn"]
    ids = groups["blocks.0.attn"]
    rows, cols = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    expected = (rows % 2) * 2 + cols % 2 if lda else (rows // 4) * 2 + cols // 4
    np.testing.assert_array_equal(ids, expected)


def test_eval_crop_and_errors(tmp_path):
    from PIL import Image

    path = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 80, 3), dtype=np.uint8)).save(path)
    out = explain.eval_crop(str(path), 32, crop_pct=0.875)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    # the same pixels as the evaluation pipeline
    from paddle_vits.data.transforms import EvalTransform

    with Image.open(path) as pil:
        expected = EvalTransform(32, 0.875, "bicubic", (0, 0, 0), (1, 1, 1))(pil)
    np.testing.assert_allclose(out.transpose(2, 0, 1) / 255.0, expected, atol=1e-6)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        explain.eval_crop(str(tmp_path / "missing.png"))
    with pytest.raises(ValueError, match="uint8"):
        explain.eval_crop(np.zeros((8, 8, 3), np.float32))


def test_lime_points_at_the_quadrant_the_model_reads():
    img, (rows, cols) = _image_with_square(32, "top_left")
    exp = explain.explain_lime(
        _QuadrantModel(), img, label=0, num_samples=200, batch_size=50,
        segmentation_fn=explain.grid_segmentation(4), mean=MEAN, std=STD,
    )
    assert exp.heatmap.shape == img.shape[:2]
    assert np.isfinite(exp.heatmap).all()
    inside = exp.heatmap[rows, cols]
    outside = np.ones(img.shape[:2], bool)
    outside[rows, cols] = False
    # every top-left cell supports class 0; cells the model never reads get ~0 weight
    assert inside.min() > 0
    assert np.abs(exp.heatmap[outside]).max() < 0.05 * inside.mean()
    assert exp.segments.shape == img.shape[:2] and exp.segments.max() == 15


def test_classifier_fn_returns_probabilities_and_keeps_train_mode():
    model = _TinyClassAttention()
    model.train()
    fn = explain.PaddleClassifierFn(model, batch_size=3)
    images = np.random.default_rng(0).integers(0, 256, size=(7, 32, 32, 3)).astype(np.float64)
    probs = fn(images)
    assert probs.shape == (7, 2) and probs.dtype == np.float64
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    assert model.training
    model.eval()
    with paddle.no_grad():
        logits = model(explain.to_batch(images, MEAN, STD)).numpy()
    np.testing.assert_allclose(probs, np.exp(logits) / np.exp(logits).sum(1, keepdims=True), rtol=1e-5)


def test_lime_errors():
    with pytest.raises(ValueError, match="uint8"):
        explain.explain_lime(_QuadrantModel(), np.zeros((8, 8, 3), np.float32), mean=MEAN, std=STD)
    with pytest.raises(ValueError, match="model_info"):
        explain.explain_lime(_QuadrantModel(), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="out of range"):
        explain.explain_lime(_QuadrantModel(), np.zeros((8, 8, 3), np.uint8), label=5, mean=MEAN, std=STD)


@pytest.mark.parametrize("corner", ["top_left", "bottom_right"])
def test_class_attention_points_at_the_bright_quadrant(corner):
    model = _TinyClassAttention()
    img, (rows, cols) = _image_with_square(32, corner)
    exp = explain.explain_attention(model, img)
    assert exp.method == "class_attention"
    heat = exp.maps["class_attention"]
    assert heat.shape == img.shape[:2] and np.isfinite(heat).all()
    token = exp.token_maps["class_attention"]
    assert token.shape == (4, 4)
    assert 0.99 < token.sum() <= 1.0 + 1e-6  # the patches' share of the class token's softmax
    quadrant = np.zeros((4, 4), bool)
    quadrant[rows.start // 8:rows.stop // 8, cols.start // 8:cols.stop // 8] = True
    assert token[quadrant].min() > 10 * token[~quadrant].max()
    assert heat[rows, cols].mean() > 0.8
    # hooks and the fused flag are restored afterwards
    assert model.attn.fused_attn is True
    assert not model.attn.attn_drop._forward_post_hooks


def test_attention_rollout_matches_numpy():
    rng = np.random.default_rng(0)
    maps = [rng.random((2, 3, 5, 5)).astype(np.float32) for _ in range(3)]
    maps = [m / m.sum(-1, keepdims=True) for m in maps]
    expected = None
    for m in maps:
        a = 0.5 * m.mean(1) + 0.5 * np.eye(5)
        a = a / a.sum(-1, keepdims=True)
        expected = a if expected is None else a @ expected
    got = explain.attention_rollout([paddle.to_tensor(m) for m in maps]).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def _smallest(family):
    names = [n for n in paddle_vits.list_models() if paddle_vits.get_model_info(n).family == family]
    assert names, f"no {family} model registered"
    return min(names, key=lambda n: paddle_vits.get_model_info(n).num_params or 0)


EXPECTED_MAPS = {
    "cait": {"class_attention"},
    "wavevit": {"class_attention"},
    "crossvit": {"branch0", "branch1"},
    "crossformer": {"grad_attention"},
}


@pytest.mark.parametrize("family", sorted(EXPECTED_MAPS))
def test_attention_maps_on_registered_models(family):
    name = _smallest(family)
    info = paddle_vits.get_model_info(name)
    kwargs = dict(info.test_kwargs)
    if family == "crossformer":
        kwargs["img_size"] = 64  # at the test size (32) the last stage is a single token
    model = paddle_vits.create_model(name, num_classes=10, **kwargs)
    size = kwargs.get("img_size", info.input_size[-1])
    img = (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)
    exp = explain.explain_attention(model, img)
    assert set(exp.maps) == EXPECTED_MAPS[family]
    for name, heat in exp.maps.items():
        assert heat.shape == (size, size)
        assert np.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1
        assert exp.token_maps[name].size > 1 and np.ptp(exp.token_maps[name]) > 0
    assert exp.probs.shape == (10,)


def test_unknown_family_is_a_clear_error():
    model = _TinyClassAttention()
    model.model_info = SimpleNamespace(family="resnet", mean=MEAN, std=STD)
    with pytest.raises(ValueError, match="no attention explanation for family 'resnet'"):
        explain.explain_attention(model, np.zeros((32, 32, 3), np.uint8))


def test_save_overlays_writes_png(tmp_path):
    from PIL import Image

    img, _ = _image_with_square(32)
    heat = np.linspace(-1, 1, 32 * 32).reshape(32, 32)
    path = explain.save_overlays(str(tmp_path / "sub" / "o.png"), img, {"a": heat, "b": heat}, title="t", signed=True)
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size[0] > png.size[1]
    with pytest.raises(ValueError, match="does not match"):
        explain.overlay(img, heat[:16])


@pytest.mark.parametrize("method", ["attention", "lime"])
def test_explain_script(tmp_path, method):
    name = _smallest("crossvit")
    info = paddle_vits.get_model_info(name)
    kwargs = dict(info.test_kwargs)
    model = paddle_vits.create_model(name, num_classes=10, **kwargs)
    weights = str(tmp_path / "w.pdparams")
    paddle.save(model.state_dict(), weights)
    from PIL import Image

    image = str(tmp_path / "img.png")
    Image.fromarray(_image_with_square(64)[0]).save(image)
    out = str(tmp_path / "out.png")
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "explain.py"), "--model", name, "--weights", weights,
           "--image", image, "--method", method, "--out", out, "--num-classes", "10", "--num-samples", "20",
           "--threads", "1"]
    if "img_size" in kwargs:
        cmd += ["--img-size", str(kwargs["img_size"])]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert os.path.getsize(out) > 0
    assert "top-" in proc.stdout


def test_explain_script_errors_are_clear(tmp_path):
    """Missing files and a checkpoint of another input size end in one `error:` line, not a traceback."""
    name = _smallest("cait")
    kwargs = dict(paddle_vits.get_model_info(name).test_kwargs)
    weights = str(tmp_path / "w.pdparams")
    paddle.save(paddle_vits.create_model(name, num_classes=10, **kwargs).state_dict(), weights)
    from PIL import Image

    image = str(tmp_path / "img.png")
    Image.fromarray(_image_with_square(64)[0]).save(image)
    script = [sys.executable, os.path.join(ROOT, "scripts", "explain.py"), "--model", name]
    cases = [
        (["--weights", str(tmp_path / "missing.pdparams"), "--image", image],
         "weights file not found: .*missing.pdparams.*a release tag"),
        (["--weights", weights, "--image", str(tmp_path / "missing.png")], "--image .* does not exist"),
        (["--weights", weights, "--image", image], "does not fit .*--img-size"),  # trained at test size, not 224
    ]
    for args, pattern in cases:
        proc = subprocess.run(script + args, capture_output=True, text=True, timeout=300, env=_ENV)
        assert proc.returncode != 0
        assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert re.search(pattern, proc.stderr, re.S), proc.stderr[-2000:]
