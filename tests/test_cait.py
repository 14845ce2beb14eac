"""CaiT-specific behaviour: LayerScale, the class-attention stage, names and aliases,
loading official/timm checkpoints, clear errors, and parity with timm (optional).

The generic API, parameter counts and recorded-fixture parity are covered by
``test_models.py`` and ``test_parity_fixtures.py``.
"""
import os

import numpy as np
import paddle
import pytest

from _parity import load_fixture, seeded_input, seeded_state_dict
from paddle_vits import create_model, get_model_info, list_models
from paddle_vits.convert import CheckpointError, convert_state_dict
from paddle_vits.models.cait import checkpoint_filter_fn

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
SMALL = dict(img_size=32, embed_dim=48, depth=2, num_heads=4)  # the cait_small fixture's config

TIMM_ALIASES = {
    "cait_xxs_24": "cait_xxs24_224",
    "cait_xxs_36": "cait_xxs36_224",
    "cait_s_24": "cait_s24_224",
    "cait_xxs_24_384": "cait_xxs24_384",
    "cait_xxs_36_384": "cait_xxs36_384",
    "cait_xs_24_384": "cait_xs24_384",
    "cait_s_24_384": "cait_s24_384",
    "cait_s_36_384": "cait_s36_384",
    "cait_m_36_384": "cait_m36_384",
    "cait_m_48_448": "cait_m48_448",
}


def _small(num_classes=10, **kwargs):
    model = create_model("cait_xxs_24", num_classes=num_classes, **dict(SMALL, **kwargs))
    model.eval()
    return model


def _randomise(model, seed=3):
    """Random values in every parameter (LayerScale included), so every block matters."""
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.set_value((0.2 * rng.standard_normal(p.shape)).astype("float32"))


def _small_fixture():
    meta, x, ref = load_fixture(os.path.join(FIXTURES, "cait_small.npz"))
    assert meta["kwargs"] == SMALL
    return meta, x, ref


# ---------------------------------------------------------------- architecture


def test_mix_heads_is_the_linear_layer_over_the_head_axis():
    from paddle_vits.models.cait import mix_heads

    paddle.seed(0)
    proj = paddle.nn.Linear(4, 4)
    attn = paddle.randn([2, 4, 5, 6])
    ref = proj(attn.transpose([0, 2, 3, 1])).transpose([0, 3, 1, 2])  # [B, N, M, H] -> [B, H, N, M]
    np.testing.assert_allclose(mix_heads(attn, proj.weight, proj.bias).numpy(), ref.numpy(), rtol=1e-6, atol=1e-6)


def test_layer_scale_init_values_follow_the_release():
    def gammas(model):
        blocks = list(model.blocks) + list(model.blocks_token_only)
        return np.concatenate([np.concatenate([b.gamma_1.numpy(), b.gamma_2.numpy()]) for b in blocks])

    shallow = create_model("cait_xxs_24", img_size=32, embed_dim=32, depth=1, num_heads=4)
    deep = create_model("cait_s_36_384", img_size=32, embed_dim=32, depth=1, num_heads=4)
    custom = create_model("cait_xxs_24", img_size=32, embed_dim=32, depth=1, num_heads=4, init_values=0.25)
    assert gammas(shallow).shape == (2 * 3 * 32,)  # 1 self-attention + 2 class-attention blocks
    np.testing.assert_array_equal(gammas(shallow), np.full(2 * 3 * 32, 1e-5, np.float32))
    np.testing.assert_array_equal(gammas(deep), np.full(2 * 3 * 32, 1e-6, np.float32))
    np.testing.assert_array_equal(gammas(custom), np.full(2 * 3 * 32, 0.25, np.float32))
    # Each residual branch is scaled by its gamma: with gamma = 0 a block is the identity.
    block = custom.blocks[0]
    block.eval()
    x = paddle.to_tensor(seeded_input((2, 4, 32), 1))
    block.gamma_1.set_value(paddle.zeros([32]))
    block.gamma_2.set_value(paddle.zeros([32]))
    np.testing.assert_array_equal(block(x).numpy(), x.numpy())


def test_stage_layout_and_position_embedding_without_class_slot():
    model = create_model("cait_xxs_24", img_size=64)
    assert len(model.blocks) == 24 and len(model.blocks_token_only) == 2
    assert tuple(model.pos_embed.shape) == (1, (64 // 16) ** 2, 192)  # patch tokens only
    assert tuple(model.cls_token.shape) == (1, 1, 192)
    assert model.blocks[0].mlp.fc1.weight.shape == [192, 768]
    assert type(model.blocks[0].attn).__name__ == "TalkingHeadAttention"
    assert type(model.blocks_token_only[0].attn).__name__ == "ClassAttention"
    assert model.no_weight_decay() <= {n for n, _ in model.named_parameters()}
    clstk = create_model("cait_xxs_24", **dict(SMALL, depth_token_only=1, mlp_ratio_clstk=2.0))
    assert len(clstk.blocks_token_only) == 1
    assert clstk.blocks_token_only[0].mlp.fc1.weight.shape == [48, 96]


def test_class_attention_stage_only_updates_the_class_token():
    model = _small()
    _randomise(model)
    x = paddle.to_tensor(seeded_input((2, 3, 32, 32), 2))
    with paddle.no_grad():
        patches = model.forward_patch_tokens(x)
        tokens = model.forward_features(x)
        # The patch tokens leave the class-attention stage as they entered it.
        np.testing.assert_allclose(tokens[:, 1:].numpy(), model.norm(patches).numpy(), atol=1e-6)
        # Each class-attention block returns one token and leaves its inputs alone.
        cls = model.cls_token.expand([2, -1, -1])
        before = patches.numpy().copy()
        out = model.blocks_token_only[0](patches, cls)
        assert tuple(out.shape) == (2, 1, 48)
        np.testing.assert_array_equal(patches.numpy(), before)
        # The class token does not feed back into the patch tokens ... (a random change:
        # a constant shift would vanish in the LayerNorms)
        shift = np.random.default_rng(5).standard_normal(model.cls_token.shape).astype("float32")
        model.cls_token.set_value(model.cls_token + paddle.to_tensor(shift))
        tokens2 = model.forward_features(x)
    np.testing.assert_array_equal(tokens2[:, 1:].numpy(), tokens[:, 1:].numpy())
    assert np.abs(tokens2[:, 0].numpy() - tokens[:, 0].numpy()).max() > 1e-3
    # ... but it reads them: changing one image changes only that image's class token.
    with paddle.no_grad():
        x2 = x.clone()
        x2[1] = x2[1] * 0.5
        tokens3 = model.forward_features(x2)
    np.testing.assert_array_equal(tokens3[0].numpy(), tokens2[0].numpy())
    assert np.abs(tokens3[1, 0].numpy() - tokens2[1, 0].numpy()).max() > 1e-3


def test_fused_and_explicit_class_attention_agree_in_the_model():
    model = _small()
    _randomise(model)
    x = paddle.to_tensor(seeded_input((2, 3, 32, 32), 4))
    with paddle.no_grad():
        fused = model(x).numpy()
        for block in model.blocks_token_only:
            assert block.attn.fused_attn  # the default
            block.attn.fused_attn = False
        explicit = model(x).numpy()
    np.testing.assert_allclose(fused, explicit, atol=1e-5)


def test_wrong_image_size_gives_a_clear_error():
    model = _small()
    with pytest.raises(ValueError, match=r"48x48.*img_size=48"):
        model(paddle.zeros([1, 3, 48, 48]))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        model(paddle.zeros([3, 32, 32]))
    with pytest.raises(ValueError, match="not divisible by patch_size=16"):
        create_model("cait_xxs_24", img_size=100)


# ---------------------------------------------------------------- names


def test_registry_names_aliases_and_eval_settings():
    assert list_models("cait*") == sorted(TIMM_ALIASES)
    for name, alias in TIMM_ALIASES.items():
        info = get_model_info(alias)
        assert info.name == name and info.aliases == (alias,)
        assert info.crop_pct == 1.0 and info.interpolation == "bicubic"
        assert info.mean == (0.485, 0.456, 0.406) and info.std == (0.229, 0.224, 0.225)
        assert info.input_size == (3, int(alias[-3:]), int(alias[-3:]))
    model = create_model("cait_xxs24_224", **SMALL)
    assert model.model_name == "cait_xxs_24"


def test_aliases_are_timm_names():
    timm = pytest.importorskip("timm")
    assert set(TIMM_ALIASES.values()) == set(timm.list_models("cait*"))


# ---------------------------------------------------------------- checkpoints


def test_filter_strips_the_release_module_prefix_only():
    sd = {"module.blocks.0.gamma_1": 1, "head.weight": 2, "blocks.0.attn.qkv.weight": 3}
    assert checkpoint_filter_fn(sd, None) == {"blocks.0.gamma_1": 1, "head.weight": 2, "blocks.0.attn.qkv.weight": 3}


def _logits(model, x):
    model.eval()
    with paddle.no_grad():
        return model(paddle.to_tensor(x)).numpy()


def test_pretrained_official_pth(tmp_path):
    torch = pytest.importorskip("torch")
    meta, x, ref = _small_fixture()
    sd = seeded_state_dict(meta["keys"], meta["seed"])
    path = tmp_path / "XXS_small.pth"
    # The official release's layout: {"model": {"module.<name>": tensor}}.
    torch.save({"model": {"module." + k: torch.from_numpy(v) for k, v in sd.items()}, "epoch": 399}, str(path))
    model = create_model("cait_xxs24_224", pretrained=str(path), num_classes=10, **SMALL)
    np.testing.assert_allclose(_logits(model, x), ref, atol=1e-4)


def test_pretrained_timm_safetensors_without_torch(tmp_path):
    from safetensors.numpy import save_file

    meta, x, ref = _small_fixture()
    sd = seeded_state_dict(meta["keys"], meta["seed"])
    path = tmp_path / "model.safetensors"
    save_file(sd, str(path))
    model = create_model("cait_xxs_24", pretrained=str(path), num_classes=10, **SMALL)
    np.testing.assert_allclose(_logits(model, x), ref, atol=1e-4)


def test_pretrained_with_other_num_classes_reinitialises_only_the_head(tmp_path):
    from safetensors.numpy import save_file

    meta, x, _ = _small_fixture()
    sd = seeded_state_dict(meta["keys"], meta["seed"])
    path = tmp_path / "model.safetensors"
    save_file(sd, str(path))
    with pytest.warns(UserWarning, match="re-initialised head.weight, head.bias|re-initialised head.bias, head.weight"):
        model = create_model("cait_xxs_24", pretrained=str(path), num_classes=3, **SMALL)
    assert model.head.weight.shape == [48, 3]
    assert np.abs(model.head.weight.numpy()).max() < 0.1  # trunc_normal(0.02), not the checkpoint's
    np.testing.assert_array_equal(model.blocks[1].gamma_2.numpy(), sd["blocks.1.gamma_2"])
    np.testing.assert_array_equal(model.blocks_token_only[0].attn.q.weight.numpy(),
                                  sd["blocks_token_only.0.attn.q.weight"].T)
    # The features are the checkpoint's: equal to those of the 10-class model.
    full = create_model("cait_xxs_24", pretrained=str(path), num_classes=10, **SMALL)
    model.eval()
    full.eval()
    inp = paddle.to_tensor(x)
    with paddle.no_grad():
        np.testing.assert_allclose(model.forward_head(model.forward_features(inp), pre_logits=True).numpy(),
                                   full.forward_head(full.forward_features(inp), pre_logits=True).numpy(),
                                   atol=1e-6)
    # Without asking for a new head, the mismatch is refused.
    with pytest.raises(CheckpointError, match="classifier"):
        convert_state_dict(sd, create_model("cait_xxs_24", num_classes=3, **SMALL), "cait_xxs_24")
    # Nor does create_model drop a fine-tuned head when num_classes is left at its default.
    with pytest.raises(CheckpointError, match="classifier"):
        create_model("cait_xxs_24", pretrained=str(path), **SMALL)


def test_checkpoint_of_another_size_or_variant_is_refused():
    meta, _, _ = _small_fixture()
    sd = seeded_state_dict(meta["keys"], meta["seed"])
    with pytest.raises(CheckpointError, match="pos_embed"):
        convert_state_dict(sd, create_model("cait_xxs_24", num_classes=10, **dict(SMALL, img_size=48)),
                           "cait_xxs_24")
    with pytest.raises(CheckpointError, match="missing"):
        convert_state_dict(sd, create_model("cait_xxs_24", num_classes=10, **dict(SMALL, depth=3)), "cait_xxs_24")


# ---------------------------------------------------------------- parity with timm (optional)


def _timm_parity(name, kwargs, num_classes, size, init_values=0.3, seed=11):
    """timm's model with its own random init (LayerScale raised so every block matters), converted."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("timm")
    from fixtures.make_cait_fixtures import timm_model

    torch.manual_seed(seed)
    ref_model = timm_model(name, num_classes=num_classes, init_values=init_values, **kwargs)
    sd = {k: v.numpy() for k, v in ref_model.state_dict().items()}
    model = create_model(name, num_classes=num_classes, **kwargs)
    converted, skipped = convert_state_dict(sd, model, name)
    assert not skipped
    model.set_state_dict(converted)
    x = seeded_input((2, 3, size, size), seed)
    with torch.no_grad():
        ref = ref_model(torch.from_numpy(x)).numpy()
    err = float(np.abs(_logits(model, x) - ref).max())
    assert err <= 1e-4, err


def test_timm_parity_small():
    _timm_parity("cait_xxs_24", SMALL, 10, 32)
    _timm_parity("cait_xxs_24", dict(SMALL, depth_token_only=1, mlp_ratio_clstk=2.0, mlp_ratio=3.0), 7, 32)


@pytest.mark.slow
def test_timm_parity_full_size():
    _timm_parity("cait_xxs_24", {}, 1000, 224, init_values=0.1)
