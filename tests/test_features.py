"""Backbones for dense tasks: ``forward_intermediates`` and ``create_model(features_only=True)``.

Parametrized over the registry (built with each variant's ``test_kwargs``; variants over 60M
parameters run as ``slow``): shapes and strides of every output, ``feature_info`` agrees with the
outputs, gradients reach the backbone, the maps equal the classification model's own activations
(forward hooks on the same weights), and classification weights load into the backbone.
"""
import warnings

import numpy as np
import paddle
import pytest

from paddle_vits import create_model, get_model_info, list_models
from paddle_vits.features import FeatureBackbone
from paddle_vits.utils.io import atomic_save

BIG = 60_000_000
ALL = list_models()


def _param(name):
    info = get_model_info(name)
    marks = [pytest.mark.slow] if info.num_params and info.num_params > BIG else []
    return pytest.param(name, marks=marks, id=name)


PARAMS = [_param(n) for n in ALL]
# One small variant per family (the checkpoint round trip).
ONE_PER_FAMILY = ["cait_xxs_24", "crossvit_tiny_240", "wavevit_s", "crossformer_t"]


def _size(info):
    return info.test_kwargs.get("img_size", info.img_size)


def _expected_hw(model, info, size, entry):
    """Spatial size of one output, from the family's geometry (not from the model's own outputs)."""
    if info.family == "crossvit":
        side = model.branch_img_size[entry["branch"]] // entry["reduction"]
        return side, side
    return size // entry["reduction"], size // entry["reduction"]


@pytest.mark.parametrize("name", PARAMS)
def test_backbone_shapes_strides_and_gradients(name):
    info = get_model_info(name)
    size = _size(info)
    backbone = create_model(name, features_only=True, **info.test_kwargs)
    assert isinstance(backbone, FeatureBackbone)
    x = paddle.randn([2, 3, size, size])
    outs = backbone(x)
    assert isinstance(outs, list) and len(outs) == len(backbone.feature_info) > 0
    expected_strides = {"crossformer": [4, 8, 16, 32], "wavevit": [4, 8, 16, 32], "cait": [16],
                        "crossvit": [12, 16]}[info.family]
    assert backbone.feature_info.reduction() == expected_strides
    for out, entry in zip(outs, backbone.feature_info):
        assert out.shape == [2, entry["num_chs"], *_expected_hw(backbone.model, info, size, entry)]
    assert backbone.feature_info.channels() == [o.shape[1] for o in outs]
    # gradients reach the first layer (patch embedding / stem) through every output
    sum(o.mean() for o in outs).backward()
    grads = [p for p in backbone.parameters() if not p.stop_gradient]
    assert all(p.grad is not None for p in grads), [p.name for p in grads if p.grad is None]
    first = next(iter(backbone.model.named_parameters()))
    assert float(first[1].grad.abs().sum()) > 0, first[0]
    # the head(s) and the class-token stage are gone
    gone = {"cait": ("head", "blocks_token_only", "cls_token"), "crossvit": ("head",),
            "wavevit": ("head", "aux_head", "post_network"), "crossformer": ("head",)}[info.family]
    names = [k for k, _ in backbone.named_parameters()]
    assert not [k for k in names if k.startswith(tuple(f"model.{g}" for g in gone))]


def _module(model, path):
    layer = model
    for part in path.split("."):
        layer = layer[int(part)] if part.isdigit() else getattr(layer, part)
    return layer


def _hooked_activations(model, x, info):
    """The classification model's own outputs of the layers that ``feature_info`` names (hooks)."""
    captured = {}
    handles = []
    modules = sorted({entry["module"] for entry in model.feature_info})
    for path in modules:
        layer = _module(model, path)
        if info.family == "crossformer":
            # a stage's map is its last block's output (the stage itself returns the merged map)
            layer = layer.blocks[len(layer.blocks) - 1]
        elif info.family == "wavevit":
            layer = layer[len(layer) - 1]

        def hook(_layer, _inputs, output, path=path):
            captured[path] = output

        handles.append(layer.register_forward_post_hook(hook))
    model(x)
    for h in handles:
        h.remove()
    return captured


@pytest.mark.parametrize("name", PARAMS)
def test_intermediates_equal_classifier_activations(name):
    info = get_model_info(name)
    size = _size(info)
    model = create_model(name, **info.test_kwargs)
    model.eval()
    x = paddle.randn([1, 3, size, size])
    with paddle.no_grad():
        captured = _hooked_activations(model, x, info)
        final, maps = model.forward_intermediates(x, output_fmt="NLC")
        features = model.forward_features(x)
        logits = model(x)
    # the final features are forward_features' (so the head gives the same logits)
    for a, b in zip(final if isinstance(final, list) else [final], features if isinstance(features, list)
                    else [features]):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(model.forward_head(final).numpy(), logits.numpy())
    assert len(maps) == len(model.feature_info)
    for out, entry in zip(maps, model.feature_info):
        ref = captured[entry["module"]]
        if info.family == "crossvit":
            ref = ref[entry["branch"]][:, 1:]  # drop the class token
        np.testing.assert_array_equal(out.numpy(), ref.numpy(), err_msg=entry["module"])


@pytest.mark.parametrize("family", ["cait", "crossvit", "wavevit", "crossformer"])
def test_forward_intermediates_arguments(family):
    name = [n for n in ONE_PER_FAMILY if get_model_info(n).family == family][0]
    info = get_model_info(name)
    size = _size(info)
    model = create_model(name, **info.test_kwargs)
    model.eval()
    x = paddle.randn([1, 3, size, size])
    per_index = 2 if family == "crossvit" else 1
    n = len(model.feature_info) // per_index
    with paddle.no_grad():
        everything = model.forward_intermediates(x, intermediates_only=True)
        last2 = model.forward_intermediates(x, indices=2, intermediates_only=True)
        picked = model.forward_intermediates(x, indices=[0, -1], intermediates_only=True)
        normed = model.forward_intermediates(x, indices=[-1], norm=True, intermediates_only=True)
        nlc = model.forward_intermediates(x, indices=[-1], output_fmt="NLC", intermediates_only=True)
    assert len(everything) == n * per_index
    for a, b in zip(last2, everything[-2 * per_index:]):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(picked, everything[:per_index] + everything[-per_index:]):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.allclose(normed[-1].numpy(), everything[-1].numpy())
    B, C, H, W = everything[-1].shape
    np.testing.assert_array_equal(nlc[-1].numpy(), everything[-1].numpy().reshape(B, C, H * W).transpose(0, 2, 1))
    for bad in (dict(indices=n + 1), dict(indices=[n]), dict(indices=[]), dict(output_fmt="NHWC")):
        with pytest.raises(ValueError):
            model.forward_intermediates(x, **bad)


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_classification_checkpoint_loads_into_backbone(name, tmp_path):
    info = get_model_info(name)
    size = _size(info)
    clf = create_model(name, num_classes=7, **info.test_kwargs)
    clf.eval()
    path = tmp_path / f"{name}.pdparams"
    atomic_save({k: v.numpy() for k, v in clf.state_dict().items()}, str(path))
    x = paddle.randn([1, 3, size, size])
    with paddle.no_grad():
        ref = clf.forward_intermediates(x, norm=info.family == "wavevit", intermediates_only=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backbone = create_model(name, features_only=True, pretrained=str(path), out_indices=None, **info.test_kwargs)
    notes = [str(w.message) for w in caught if "features_only" in str(w.message)]
    assert len(notes) == 1 and "head" in notes[0] and "dropped" in notes[0], notes
    backbone.eval()
    with paddle.no_grad():
        outs = backbone(x)
    expected = ref if info.family in ("wavevit", "crossformer") else ref[-len(outs):]
    assert len(outs) == len(expected)
    for a, b in zip(outs, expected):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-6)


def test_out_indices_and_argument_errors():
    backbone = create_model("crossformer_t", features_only=True, out_indices=(1, 2), img_size=64)
    outs = backbone(paddle.randn([1, 3, 64, 64]))
    assert [o.shape for o in outs] == [[1, 128, 8, 8], [1, 256, 4, 4]]
    assert backbone.feature_info.reduction() == [8, 16]
    assert "layers.3" in backbone.dropped  # stages after the last output are not computed
    with pytest.raises(ValueError, match="features_only"):
        create_model("crossformer_t", out_indices=(1, 2), img_size=64)
    with pytest.raises(ValueError, match="out of range"):
        create_model("crossformer_t", features_only=True, out_indices=(4,), img_size=64)
    # CrossFormer takes other multiples of 32 (the padded groups)
    outs = backbone(paddle.randn([1, 3, 96, 160]))
    assert [o.shape[2:] for o in outs] == [[12, 20], [6, 10]]
