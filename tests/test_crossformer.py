"""CrossFormer: cross-scale embedding, SDA/LDA grouping, dynamic position bias, sizes, conversion.

Logit parity with the official code is in ``test_parity_fixtures.py`` (fixtures recorded by
``tests/fixtures/make_crossformer_fixtures.py``).
"""
import os

import numpy as np
import paddle
import pytest

from _parity import load_fixture, seeded_state_dict
from paddle_vits import create_model
from paddle_vits.models.crossformer import (
    CrossScaleEmbed,
    GroupAttention,
    PatchMerging,
    _relative_tables,
    checkpoint_filter_fn,
    group_plan,
    group_tokens,
    ungroup_tokens,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def _shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_first_cel_splits_channels_per_kernel_size():
    cel = CrossScaleEmbed(3, 64, (4, 8, 16, 32))
    assert [tuple(p.weight.shape) for p in cel.projs] == [(32, 3, 4, 4), (16, 3, 8, 8), (8, 3, 16, 16), (8, 3, 32, 32)]
    x, hw = cel(paddle.randn([2, 3, 32, 64]))
    assert hw == (8, 16) and x.shape == [2, 8 * 16, 64]


def test_merging_cel_concatenates_its_scales_in_order():
    merge = PatchMerging(64, (2, 4))
    assert [tuple(r.weight.shape) for r in merge.reductions] == [(64, 64, 2, 2), (64, 64, 4, 4)]
    x = paddle.randn([2, 8 * 8, 64])
    out, hw = merge(x, (8, 8))
    assert hw == (4, 4) and out.shape == [2, 16, 128]
    y = merge.norm(x).reshape([2, 8, 8, 64]).transpose([0, 3, 1, 2])  # [B, L, C] -> [B, C, H, W]
    for i, red in enumerate(merge.reductions):
        part = red(y).flatten(2).transpose([0, 2, 1])  # [B, C, h, w] -> [B, h*w, C]
        np.testing.assert_allclose(out[:, :, 64 * i:64 * (i + 1)].numpy(), part.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("lda", [False, True])
@pytest.mark.parametrize("hw,group_hw", [((8, 8), (2, 2)), ((6, 12), (3, 4)), ((7, 7), (7, 7))])
def test_group_then_ungroup_is_identity(lda, hw, group_hw):
    x = np.random.default_rng(0).standard_normal((2, *hw, 3)).astype(np.float32)
    grouped = group_tokens(paddle.to_tensor(x), group_hw, lda)
    assert grouped.shape == [2 * hw[0] * hw[1] // (group_hw[0] * group_hw[1]), group_hw[0] * group_hw[1], 3]
    np.testing.assert_array_equal(ungroup_tokens(grouped, hw, group_hw, lda).numpy(), x)


def test_lda_groups_take_tokens_interval_apart_and_sda_groups_are_windows():
    H, W = 8, 12
    pos = np.arange(H * W).reshape(1, H, W, 1)  # token id = row * W + col
    lda = group_tokens(pos, (2, 3), lda=True)[..., 0]  # interval 4 in both directions
    assert lda.shape == (16, 6)
    for g, ids in enumerate(lda):
        a, b = divmod(g, 4)  # group (a, b) = offset within each interval
        expected = [(i * 4 + a) * W + (j * 4 + b) for i in range(2) for j in range(3)]
        assert ids.tolist() == expected
    sda = group_tokens(pos, (4, 4), lda=False)[..., 0]
    assert sda[0].tolist() == [r * W + c for r in range(4) for c in range(4)]
    assert sda[1].tolist() == [r * W + c for r in range(4) for c in range(4, 8)]


def test_relative_index_points_at_the_pair_offset():
    coords, index = _relative_tables(3, 4)
    assert coords.shape == (5 * 7, 2) and index.shape == (12, 12)
    pos = [(i, j) for i in range(3) for j in range(4)]
    for p in range(12):
        for q in range(12):
            assert tuple(coords[index[p, q]]) == (pos[p][0] - pos[q][0], pos[p][1] - pos[q][1])


def test_dynamic_position_bias_shape_and_translation_invariance():
    attn = GroupAttention(64, 4)
    bias = attn.pos.bias((7, 5)).numpy()
    assert bias.shape == (4, 35, 35) and np.isfinite(bias).all()
    # token 0 = (0, 0), token 6 = (1, 1); token 7 = (1, 2), token 13 = (2, 3): the same offset
    np.testing.assert_array_equal(bias[:, 6, 0], bias[:, 13, 7])
    assert not np.allclose(bias[:, 6, 0], bias[:, 0, 6])


def test_position_bias_cache_is_reused_only_while_the_parameters_are_unchanged():
    pos = GroupAttention(64, 4).pos
    pos.eval()
    with paddle.no_grad():
        first = pos.bias((7, 7))
        assert pos.bias((7, 7)) is first  # eval, no gradient: the cached table
        assert pos.bias((7, 5)).shape == [4, 35, 35]  # another group size: its own entry
        pos.set_state_dict({k: v * 2.0 + 0.1 for k, v in pos.state_dict().items()})  # new weights after a forward
        loaded = pos.bias((7, 7))
        np.testing.assert_array_equal(loaded.numpy(), pos._bias((7, 7)).numpy())
        assert not np.allclose(loaded.numpy(), first.numpy())
        pos.pos3[2].bias.scale_(3.0)  # an in-place edit
        np.testing.assert_array_equal(pos.bias((7, 7)).numpy(), pos._bias((7, 7)).numpy())
    assert not pos.bias((7, 7)).stop_gradient  # gradients on: computed, differentiable
    pos.train()
    with paddle.no_grad():
        assert pos.bias((7, 7)) is not pos.bias((7, 7))  # training mode never caches


def test_fused_and_explicit_attention_agree_with_padding_mask():
    paddle.seed(0)
    model = create_model("crossformer_t", img_size=64, num_classes=10)  # stage 1: 16x16 padded to 21x21
    model.eval()
    x = paddle.randn([2, 3, 64, 64])
    with paddle.no_grad():
        fused = model(x).numpy()
        for layer in model.sublayers():
            if isinstance(layer, GroupAttention):
                layer.fused_attn = False
        explicit = model(x).numpy()
    np.testing.assert_allclose(explicit, fused, rtol=1e-4, atol=1e-5)


def test_export_mode_matches_eager_outputs_and_gradients():
    paddle.seed(0)
    model = create_model("crossformer_t", img_size=64, num_classes=10)  # stage 1 padded: both export paths
    model.eval()
    x = paddle.randn([2, 3, 64, 64])
    results = []
    for export in (False, True):
        model.set_export_mode(export)
        flags = [m.export_mode for m in model.sublayers() if hasattr(m, "export_mode")]
        assert len(flags) == 2 * 16 and all(f == export for f in flags)  # 16 blocks x (block, position bias)
        model.clear_gradients()
        out = model(x)
        out.sum().backward()
        grads = [model.layers[0].blocks[0].attn.pos.pos1[0].weight.grad.numpy().copy(),
                 model.layers[0].blocks[0].norm1.weight.grad.numpy().copy()]
        results.append((out.numpy(), grads))
    # plain-op LayerNorm: float32 rounding; the concatenated padding is exact
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-5, atol=1e-6)
    for export_grad, eager_grad in zip(results[1][1], results[0][1]):
        np.testing.assert_allclose(export_grad, eager_grad, rtol=1e-4, atol=1e-6)


def test_position_bias_gets_gradients_with_fused_attention_on():
    model = create_model("crossformer_t", img_size=32, num_classes=10)
    assert all(layer.fused_attn for layer in model.sublayers() if isinstance(layer, GroupAttention))
    model(paddle.randn([1, 3, 32, 32])).sum().backward()
    grad = model.layers[0].blocks[0].attn.pos.pos3[2].weight.grad
    assert grad is not None and float(grad.abs().sum()) > 0


def test_group_plan_follows_the_official_rules():
    assert group_plan((56, 56), 7, None, True) == (True, (56, 56), (7, 7))  # LDA, I = 8
    assert group_plan((7, 7), 7, None, True) == (False, (7, 7), (7, 7))  # map == G: SDA
    assert group_plan((2, 2), 7, None, True) == (False, (2, 2), (2, 2))  # group shrinks to the map
    assert group_plan((4, 8), 7, None, False) == (False, (4, 8), (4, 4))  # shorter side
    assert group_plan((16, 16), 7, None, False) == (False, (21, 21), (7, 7))  # padded (backbone rule)
    assert group_plan((16, 16), 7, 8, True) == (True, (16, 16), (2, 2))  # explicit interval
    assert group_plan((12, 12), 7, 5, True) == (True, (15, 15), (3, 3))


@pytest.mark.parametrize("size", [32, 64])
def test_small_inputs_run_with_the_default_groups(size):
    model = create_model("crossformer_t", img_size=size, num_classes=10)
    model.eval()
    out = model(paddle.randn([1, 3, size, size]))
    assert out.shape == [1, 10] and np.isfinite(out.numpy()).all()


def test_impossible_sizes_fail_clearly():
    model = create_model("crossformer_t", img_size=32, num_classes=10)
    with pytest.raises(ValueError, match=r"multiples of 32.*48x48.*64x64"):
        model(paddle.randn([1, 3, 48, 48]))
    with pytest.raises(ValueError, match="100x100"):
        create_model("crossformer_t", img_size=100)
    with pytest.raises(ValueError, match="one value per stage"):
        create_model("crossformer_t", group_size=[7, 7])


def test_per_stage_group_size_and_interval_keep_weight_shapes():
    base = create_model("crossformer_t", img_size=64)
    custom = create_model("crossformer_t", img_size=64, group_size=[4, 4, 2, 2], interval=[4, 2, 2, 1])
    assert _shapes(custom) == _shapes(base)
    assert [blk.group_size for blk in custom.layers[2].blocks] == [2] * 8
    assert [blk.lda for blk in custom.layers[2].blocks] == [False, True] * 4
    custom.eval()
    assert custom(paddle.randn([1, 3, 64, 64])).shape == [1, 1000]


def test_filter_drops_only_the_recomputed_buffers():
    meta, _, _ = load_fixture(os.path.join(FIXTURES, "crossformer_small.npz"))
    sd = seeded_state_dict(meta["keys"], meta["seed"])
    model = create_model(meta["model"], num_classes=10, **meta["kwargs"])
    kept = checkpoint_filter_fn(sd, model)
    dropped = set(sd) - set(kept)
    assert dropped and all(k.endswith(("attn.biases", "attn.relative_position_index")) for k in dropped)
    assert set(kept) == set(model.state_dict())


class _CfgNode(dict):
    """Stand-in for the yacs ``CfgNode`` that some official checkpoints pickle under ``config``."""


def test_official_checkpoint_with_buffers_loads_and_reproduces_logits(tmp_path):
    torch = pytest.importorskip("torch")
    from paddle_vits.convert import load_pretrained

    meta, inp, ref = load_fixture(os.path.join(FIXTURES, "crossformer_small.npz"))
    sd = {k: torch.from_numpy(v) for k, v in seeded_state_dict(meta["keys"], meta["seed"]).items()}
    path = tmp_path / "crossformer_official.pth"
    torch.save({"model": sd, "epoch": 299, "max_accuracy": 82.5, "config": _CfgNode(MODEL="cross-scale")}, path)
    model = create_model(meta["model"], num_classes=10, **meta["kwargs"])
    assert load_pretrained(model, path) == []
    model.eval()
    with paddle.no_grad():
        out = model(paddle.to_tensor(inp)).numpy()
    assert np.abs(out - ref).max() <= 1e-4
