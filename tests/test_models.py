"""Behaviour every registered model must have. Parametrized over the registry:
a new variant is tested here without new test code.

Each variant may register ``test_kwargs`` (e.g. a smaller ``img_size``) that
keep the forward/backward tests fast; parameter counts are always checked at
the registered (paper) configuration. Variants over 60M parameters run their
forward/backward tests as ``slow``.
"""
import numpy as np
import paddle
import pytest

import paddle_vits
from paddle_vits import create_model, get_model_info, list_models

BIG = 60_000_000


def _params(name):
    marks = []
    info = get_model_info(name)
    if info.num_params and info.num_params > BIG:
        marks.append(pytest.mark.slow)
    return pytest.param(name, marks=marks, id=name)


ALL = list_models()
FWD = [_params(n) for n in ALL]


def _build(name, **kwargs):
    info = get_model_info(name)
    kw = dict(info.extra.get("test_kwargs", {}))
    kw.update(kwargs)
    model = create_model(name, **kw)
    size = kw.get("img_size", info.img_size)
    return model, size


def _count(model):
    # Trainable only: Paddle keeps BatchNorm running statistics as (non-trainable) parameters.
    return int(sum(int(np.prod(p.shape)) for p in model.parameters() if p.trainable))


def test_registry_is_populated():
    assert len(ALL) >= 10
    assert ALL == sorted(ALL)


@pytest.mark.parametrize("name", ALL)
def test_registry_entry(name):
    info = get_model_info(name)
    assert len(info.input_size) == 3 and info.input_size[0] == 3
    assert 0.5 < info.crop_pct <= 1.0
    assert info.interpolation in ("bicubic", "bilinear", "nearest")
    assert len(info.mean) == 3 and len(info.std) == 3
    assert info.top1 is not None and 50 < info.top1 < 100
    assert info.num_params is not None
    for alias in info.aliases:
        assert get_model_info(alias) is info


@pytest.mark.parametrize("name", ALL)
def test_param_count_matches_official(name):
    info = get_model_info(name)
    with paddle.LazyGuard():
        model = create_model(name)
    assert _count(model) == info.num_params


@pytest.mark.parametrize("name", FWD)
def test_forward_eval(name):
    model, size = _build(name)
    model.eval()
    x = paddle.randn([2, 3, size, size])
    with paddle.no_grad():
        out = model(x)
    assert tuple(out.shape) == (2, 1000)
    assert bool(paddle.isfinite(out).all())
    # Deterministic in eval mode.
    with paddle.no_grad():
        out2 = model(x)
    np.testing.assert_allclose(out.numpy(), out2.numpy(), rtol=0, atol=0)


@pytest.mark.parametrize("name", FWD)
def test_backward_reaches_every_parameter(name):
    model, size = _build(name, num_classes=10)
    model.train()
    x = paddle.randn([2, 3, size, size])
    loss = paddle.nn.functional.cross_entropy(model(x), paddle.to_tensor([1, 7]))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if not p.stop_gradient and p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"
    zero = [n for n, p in model.named_parameters() if p.grad is not None and not bool(paddle.isfinite(p.grad).all())]
    assert not zero, f"non-finite gradient for {zero[:5]}"


@pytest.mark.parametrize("name", FWD)
def test_features_and_classifier_api(name):
    model, size = _build(name, num_classes=0)
    model.eval()
    x = paddle.randn([2, 3, size, size])
    with paddle.no_grad():
        feats = model(x)
        assert tuple(feats.shape) == (2, model.num_features)
        assert model.num_classes == 0
        model.reset_classifier(7)
        assert model.num_classes == 7
        logits = model(x)
        assert tuple(logits.shape) == (2, 7)
        pre = model.forward_head(model.forward_features(x), pre_logits=True)
        np.testing.assert_allclose(pre.numpy(), feats.numpy(), rtol=1e-5, atol=1e-5)
    names = {n for n, _ in model.named_parameters()}
    nwd = model.no_weight_decay()
    assert isinstance(nwd, (set, frozenset))
    for key in nwd:
        assert key in names, f"no_weight_decay names {key!r}, which is not a parameter"


def test_unknown_model_suggests_close_names():
    with pytest.raises(ValueError, match=r"Unknown model 'cait_xxs_2'.*Did you mean"):
        create_model("cait_xxs_2")


def test_list_models_pattern_and_aliases():
    assert all(n.startswith("cait_") for n in list_models("cait_*"))
    with_alias = list_models(include_aliases=True)
    assert set(ALL) < set(with_alias)
    assert paddle_vits.is_model(with_alias[-1])


def test_pretrained_must_be_a_flag_tag_or_path():
    with pytest.raises(TypeError, match="path"):
        create_model(ALL[0], pretrained=1)
