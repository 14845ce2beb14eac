"""CrossViT-specific behaviour: per-branch resizing, cross-attention fusion, conversion of
IBM- and timm-named checkpoints, and parity with timm (optional).

The generic API, parameter counts and recorded-fixture parity are covered by
``test_models.py`` and ``test_parity_fixtures.py``.
"""
import os

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from _parity import load_fixture, seeded_input, seeded_state_dict
from paddle_vits import create_model, get_model_info
from paddle_vits.convert import CheckpointError, convert_state_dict
from paddle_vits.models.crossvit import _CrossAttentionBlock, _MultiScaleBlock, checkpoint_filter_fn

SMALL = dict(img_size=120)  # branches at 120 (patch 12) and 112 (patch 16)


def _small(name="crossvit_9_dagger_224", **kwargs):
    model = create_model(name, num_classes=10, **dict(SMALL, **kwargs))
    model.eval()
    return model


def _manual_forward(model, branch_inputs):
    """The model's forward with each branch fed a pre-sized image (no resizing inside)."""
    xs = []
    for i, x in enumerate(branch_inputs):
        t = model.patch_embed[i](x)
        cls = model.cls_token[i].expand([x.shape[0], -1, -1])
        xs.append(paddle.concat([cls, t], axis=1) + model.pos_embed[i])
    for block in model.blocks:
        xs = block(xs)
    xs = [norm(t) for t, norm in zip(xs, model.norm)]
    return paddle.stack([head(t[:, 0]) for head, t in zip(model.head, xs)]).mean(axis=0)


# ---------------------------------------------------------------- resizing


def test_branch_sizes_follow_the_release():
    m240 = create_model("crossvit_15_dagger_224", num_classes=0)
    m408 = create_model("crossvit_15_dagger_408", num_classes=0)
    assert m240.branch_img_size == (240, 224)
    assert m408.branch_img_size == (408, 384)
    assert [p.shape[1] for p in m240.pos_embed] == [1 + 20 * 20, 1 + 14 * 14]
    assert [p.shape[1] for p in m408.pos_embed] == [1 + 34 * 34, 1 + 24 * 24]


@pytest.mark.parametrize("size", [96, 120, 150])
def test_each_branch_resizes_its_input_bicubic(size):
    model = _small()
    x = paddle.to_tensor(seeded_input((2, 3, size, size), size))
    with paddle.no_grad():
        out = model(x)
        branch_inputs = [
            x if size == s else F.interpolate(x, size=[s, s], mode="bicubic", align_corners=False)
            for s in (120, 112)
        ]
        ref = _manual_forward(model, branch_inputs)
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=0, atol=1e-6)


def test_input_resizing_changes_the_result():
    # Guard for the test above: feeding the wrong branch sizes gives other logits.
    model = _small()
    x = paddle.to_tensor(seeded_input((1, 3, 96, 96), 1))
    with paddle.no_grad():
        out = model(x)
        nearest = [F.interpolate(x, size=[s, s], mode="nearest") for s in (120, 112)]
        other = _manual_forward(model, nearest)
    assert float((out - other).abs().max()) > 1e-3


def test_non_square_input_is_resized_per_branch():
    model = _small("crossvit_9_224")
    x = paddle.to_tensor(seeded_input((1, 3, 100, 130), 2))
    with paddle.no_grad():
        out = model(x)
        ref = _manual_forward(model, [F.interpolate(x, size=[s, s], mode="bicubic") for s in (120, 112)])
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=0, atol=1e-6)


def test_bad_img_size_and_input_give_clear_errors():
    with pytest.raises(ValueError, match=r"not multiples of the patch sizes.*such as 120 or"):
        create_model("crossvit_9_224", img_size=100)
    model = _small()
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        model(paddle.zeros([3, 120, 120]))


# ---------------------------------------------------------------- fusion


def _fusion_block(depths=(0, 0)):
    paddle.seed(1)
    block = _MultiScaleBlock(dims=(16, 32), depths=depths, num_heads=(2, 4), mlp_ratios=(2.0, 2.0),
                             drop_path=[0.0] * max(1, max(depths)))
    # Non-trivial norms so that nothing cancels by accident.
    for name, p in block.named_parameters():
        if p.ndim == 1:
            p.set_value(paddle.to_tensor(np.random.default_rng(len(name)).normal(0.5, 0.3, p.shape).astype("float32")))
    block.eval()
    return block


def _tokens(seed):
    rng = np.random.default_rng(seed)
    # Branch 0: class token + 3x3 patches of width 16; branch 1: class token + 2x2 patches of width 32.
    return [paddle.to_tensor(rng.standard_normal((2, 1 + 9, 16)).astype("float32")),
            paddle.to_tensor(rng.standard_normal((2, 1 + 4, 32)).astype("float32"))]


def test_multiscale_block_shapes_and_layers():
    block = _fusion_block(depths=(1, 3))
    assert [len(b) for b in block.blocks] == [1, 3]
    # projs map to the other branch's width, fusion works there, revert_projs map back.
    assert [tuple(p[2].weight.shape) for p in block.projs] == [(16, 32), (32, 16)]
    assert [f.attn.num_heads for f in block.fusion] == [4, 2]
    assert [tuple(f.attn.wq.weight.shape) for f in block.fusion] == [(32, 32), (16, 16)]
    assert [tuple(p[2].weight.shape) for p in block.revert_projs] == [(32, 16), (16, 32)]
    xs = _tokens(0)
    with paddle.no_grad():
        outs = block(xs)
    assert [tuple(o.shape) for o in outs] == [(2, 10, 16), (2, 5, 32)]


def test_fusion_only_moves_class_tokens():
    # Without transformer blocks the stage is pure fusion: branch i's patch tokens pass
    # unchanged, and its new class token depends on its own class token (the only query)
    # and on the other branch's patch tokens, never on its own patch tokens or the
    # other branch's class token.
    block = _fusion_block()
    xs = _tokens(0)
    with paddle.no_grad():
        base = block(xs)
        for i in range(2):
            np.testing.assert_array_equal(base[i][:, 1:].numpy(), xs[i][:, 1:].numpy())
        for i in range(2):
            j = 1 - i

            def changed(branch, sl):
                ys = [t.clone() for t in xs]
                ys[branch][:, sl] = ys[branch][:, sl] + 3.0 * paddle.randn(ys[branch][:, sl].shape)
                return float((block(ys)[i][:, 0] - base[i][:, 0]).abs().max())

            assert changed(i, slice(1, None)) == 0.0  # own patch tokens: not attended
            assert changed(j, slice(0, 1)) == 0.0  # other branch's class token: not a key
            assert changed(i, slice(0, 1)) > 1e-3  # own class token: the query (and residual)
            assert changed(j, slice(1, None)) > 1e-3  # other branch's patch tokens: keys/values


def test_cross_attention_has_a_single_query_and_matches_the_explicit_maths():
    paddle.seed(2)
    block = _CrossAttentionBlock(dim=32, num_heads=4)
    block.eval()
    x = paddle.to_tensor(np.random.default_rng(3).standard_normal((2, 7, 32)).astype("float32"))
    maps = []
    block.attn.fused_attn = False
    handle = block.attn.attn_drop.register_forward_post_hook(lambda layer, inp, out: maps.append(out))
    with paddle.no_grad():
        explicit = block(x)
    handle.remove()
    block.attn.fused_attn = True
    with paddle.no_grad():
        fused = block(x)
    assert tuple(explicit.shape) == (2, 1, 32)
    assert tuple(maps[0].shape) == (2, 4, 1, 7)  # one query (the class token) over all 7 tokens
    np.testing.assert_allclose(maps[0].sum(-1).numpy(), 1.0, rtol=0, atol=1e-5)
    np.testing.assert_allclose(fused.numpy(), explicit.numpy(), rtol=0, atol=1e-5)
    # Written out: cls + proj(softmax(q(cls) k^T / sqrt(d)) v), on normalised tokens.
    a = block.attn
    n = block.norm1(x)
    q = a.wq(n[:, :1]).reshape([2, 1, 4, 8]).transpose([0, 2, 1, 3])  # [B, 1, C] -> [B, H, 1, D]
    k = a.wk(n).reshape([2, 7, 4, 8]).transpose([0, 2, 1, 3])  # [B, N, C] -> [B, H, N, D]
    v = a.wv(n).reshape([2, 7, 4, 8]).transpose([0, 2, 1, 3])  # [B, N, C] -> [B, H, N, D]
    att = F.softmax(q @ k.transpose([0, 1, 3, 2]) / np.sqrt(8.0), axis=-1)  # [B, H, 1, N]
    ref = x[:, :1] + a.proj((att @ v).transpose([0, 2, 1, 3]).reshape([2, 1, 32]))  # [B, H, 1, D] -> [B, 1, C]
    np.testing.assert_allclose(fused.numpy(), ref.numpy(), rtol=0, atol=1e-5)


# ---------------------------------------------------------------- conversion


def _fixture(name):
    return load_fixture(os.path.join(os.path.dirname(__file__), "fixtures", name + ".npz"))


def _to_ibm(sd):
    out = {}
    for k, v in sd.items():
        for name in ("pos_embed", "cls_token"):
            if k.startswith(name + "_"):
                k = f"{name}.{k[len(name) + 1:]}"
        out[k] = v
    return out


def test_ibm_and_timm_names_convert_to_the_same_weights():
    meta, inp, ref = _fixture("crossvit_9_dagger_small")
    timm_sd = seeded_state_dict(meta["keys"], meta["seed"])
    assert "pos_embed_0" in timm_sd and "cls_token_1" in timm_sd  # the fixture is timm-named
    ibm_sd = _to_ibm(timm_sd)
    assert "pos_embed.0" in ibm_sd and "pos_embed_0" not in ibm_sd
    model = create_model(meta["model"], num_classes=ref.shape[-1], **meta["kwargs"])
    from_timm, _ = convert_state_dict(timm_sd, model, meta["model"])
    from_ibm, _ = convert_state_dict(ibm_sd, model, meta["model"])
    ddp = {"module." + k: v for k, v in ibm_sd.items()}
    from_ddp, _ = convert_state_dict(ddp, model, meta["model"])
    assert sorted(from_timm) == sorted(from_ibm) == sorted(from_ddp) == sorted(model.state_dict())
    for k in from_timm:
        np.testing.assert_array_equal(from_timm[k], from_ibm[k])
        np.testing.assert_array_equal(from_timm[k], from_ddp[k])
    np.testing.assert_array_equal(from_ibm["pos_embed.1"], timm_sd["pos_embed_1"])
    # nn.Linear weights are transposed, convolutions are not.
    np.testing.assert_array_equal(from_ibm["blocks.0.fusion.0.attn.wq.weight"],
                                  timm_sd["blocks.0.fusion.0.attn.wq.weight"].T)
    np.testing.assert_array_equal(from_ibm["patch_embed.0.proj.0.weight"], timm_sd["patch_embed.0.proj.0.weight"])
    model.set_state_dict(from_ibm)
    model.eval()
    with paddle.no_grad():
        out = model(paddle.to_tensor(inp)).numpy()
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-4)


def test_filter_leaves_other_names_alone():
    sd = {"pos_embed_0": 1, "cls_token.1": 2, "blocks.0.projs.0.2.weight": 3, "module.head.0.bias": 4}
    assert checkpoint_filter_fn(sd, None) == {"pos_embed.0": 1, "cls_token.1": 2, "blocks.0.projs.0.2.weight": 3,
                                              "head.0.bias": 4}


def test_checkpoint_of_another_variant_is_refused():
    meta, _, _ = _fixture("crossvit_9_dagger_small")
    sd = seeded_state_dict(meta["keys"], meta["seed"])
    plain = create_model("crossvit_9_224", num_classes=10, **SMALL)  # single-conv patch embedding
    with pytest.raises(CheckpointError, match="does not fit"):
        convert_state_dict(sd, plain, "crossvit_9_224")
    bigger = create_model("crossvit_9_dagger_224", num_classes=10)  # 240 input: other pos_embed sizes
    with pytest.raises(CheckpointError, match="shape mismatches.*pos_embed"):
        convert_state_dict(sd, bigger, "crossvit_9_dagger_224")


def test_registry_eval_settings_and_names():
    for name in ("crossvit_9_224", "crossvit_15_dagger_224", "crossvit_18_dagger_240", "crossvit_tiny_240"):
        info = get_model_info(name)
        assert (info.input_size, info.crop_pct, info.interpolation) == ((3, 240, 240), 0.875, "bicubic")
        assert info.classifier == ("head.0", "head.1")
    for name in ("crossvit_15_dagger_408", "crossvit_18_dagger_384"):
        info = get_model_info(name)
        assert (info.input_size, info.crop_pct) == ((3, 408, 408), 1.0)
    assert get_model_info("crossvit_18_dagger_384").name == "crossvit_18_dagger_408"
    assert get_model_info("crossvit_9_dagger_240").name == "crossvit_9_dagger_224"


def test_num_features_is_both_class_tokens():
    model = create_model("crossvit_9_224", num_classes=0, **SMALL)
    model.eval()
    assert model.num_features == 128 + 256
    x = paddle.to_tensor(seeded_input((2, 3, 120, 120), 4))
    with paddle.no_grad():
        feats = model(x)
        tokens = model.forward_features(x)
    assert [tuple(t.shape) for t in tokens] == [(2, 1 + 100, 128), (2, 1 + 49, 256)]
    np.testing.assert_array_equal(feats[:, :128].numpy(), tokens[0][:, 0].numpy())
    np.testing.assert_array_equal(feats[:, 128:].numpy(), tokens[1][:, 0].numpy())


# ---------------------------------------------------------------- parity with timm (optional)


def _timm_parity(name, kwargs, num_classes, sizes, seed=5):
    torch = pytest.importorskip("torch")
    pytest.importorskip("timm")
    from fixtures.make_crossvit_fixtures import official_keys, timm_model

    ref_model = timm_model(name, num_classes=num_classes, **kwargs)
    keys = official_keys(ref_model)
    sd = seeded_state_dict(keys, seed)
    ref_model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    model = create_model(name, num_classes=num_classes, **kwargs)
    converted, skipped = convert_state_dict(sd, model, name)
    assert not skipped
    model.set_state_dict(converted)
    model.eval()
    errs = {}
    for size in sizes:
        x = seeded_input((2, 3, size, size), seed + size)
        with torch.no_grad():
            ref = ref_model(torch.from_numpy(x)).numpy()
        with paddle.no_grad():
            out = model(paddle.to_tensor(x)).numpy()
        errs[size] = float(np.abs(out - ref).max())
    assert max(errs.values()) <= 1e-4, errs


def test_timm_parity_small():
    _timm_parity("crossvit_15_dagger_224", SMALL, 10, sizes=(120, 96, 144))


def test_timm_parity_full_size():
    _timm_parity("crossvit_9_dagger_224", {}, 1000, sizes=(240, 224))
