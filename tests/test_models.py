"""Behaviour every registered model must have (``docs/model_contract.md``).
Parametrized over the registry: a new variant is tested here without new test code.

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
from paddle_vits.models.contract import InputShapeError
from paddle_vits.utils import compat

BIG = 60_000_000
# The variants each family file registers (a lost registration fails here).
FAMILY_SIZES = {"cait": 10, "crossvit": 11, "wavevit": 6, "crossformer": 4}


def _params(name):
    marks = []
    info = get_model_info(name)
    if info.num_params and info.num_params > BIG:
        marks.append(pytest.mark.slow)
    return pytest.param(name, marks=marks, id=name)


ALL = list_models()
FWD = [_params(n) for n in ALL]


def _smallest_per_family():
    best = {}
    for n in ALL:
        info = get_model_info(n)
        if info.family not in best or info.num_params < get_model_info(best[info.family]).num_params:
            best[info.family] = n
    return set(best.values())


# Tracing is the slowest check: the smallest variant of each family here (on every supported Paddle); the
# whole registry's round trip is the jit.load check of tests/test_export.py's sweep (Paddle >= 3).
STATIC = sorted(_smallest_per_family())


def _build(name, **kwargs):
    info = get_model_info(name)
    kw = dict(info.test_kwargs)
    kw.update(kwargs)
    model = create_model(name, **kw)
    size = kw.get("img_size", info.img_size)
    return model, size


def _count(model):
    # Trainable only: Paddle keeps BatchNorm running statistics as (non-trainable) parameters.
    return int(sum(int(np.prod(p.shape)) for p in model.parameters() if p.trainable))


def test_every_family_registers_its_variants():
    families = {}
    for name in ALL:
        families.setdefault(get_model_info(name).family, []).append(name)
    assert {f: len(n) for f, n in families.items()} == FAMILY_SIZES
    for family, names in families.items():
        assert all(n.startswith(family) for n in names), names


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
    non_finite = [n for n, p in model.named_parameters()
                  if p.grad is not None and not bool(paddle.isfinite(p.grad).all())]
    assert not non_finite, f"non-finite gradient for {non_finite[:5]}"


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
    head = model.get_classifier()
    heads = list(head) if isinstance(head, paddle.nn.LayerList) else [head]
    for h in heads:
        assert isinstance(h, paddle.nn.Linear) and tuple(h.weight.shape) == (h.weight.shape[0], 7)
        assert float(h.bias.abs().max()) == 0.0  # the one head init: TN(0, 0.02) weights, zero bias
        assert 0.005 < float(h.weight.std()) < 0.03
    model.reset_classifier(0)
    assert model.num_classes == 0
    head = model.get_classifier()
    assert all(isinstance(h, paddle.nn.Identity) for h in (list(head) if isinstance(head, paddle.nn.LayerList)
                                                              else [head]))
    with paddle.no_grad():
        np.testing.assert_allclose(model(x).numpy(), feats.numpy(), rtol=1e-5, atol=1e-5)


def _lazy(name, **kwargs):
    info = get_model_info(name)
    with paddle.LazyGuard():
        return create_model(name, **dict(info.test_kwargs, **kwargs))


def _expected_no_weight_decay(model, family):
    if family == "cait":
        return {"pos_embed", "cls_token"}
    if family == "crossvit":
        return {f"{n}.{i}" for n in ("pos_embed", "cls_token") for i in range(model.num_branches)}
    return set()  # Wave-ViT and CrossFormer have no position embedding or class token


@pytest.mark.parametrize("name", ALL)
def test_no_weight_decay_is_exactly_the_tokens_and_embeddings(name):
    model = _lazy(name)
    nwd = model.no_weight_decay()
    assert isinstance(nwd, (set, frozenset))
    assert nwd == _expected_no_weight_decay(model, get_model_info(name).family)
    params = dict(model.named_parameters())
    assert all(k in params and "weight" not in k for k in nwd)


@pytest.mark.parametrize("name", ALL)
def test_registry_classifier_names_the_head_parameters(name):
    info = get_model_info(name)
    keys = list(_lazy(name).state_dict())
    for prefix in info.classifier:
        assert f"{prefix}.weight" in keys and f"{prefix}.bias" in keys, (prefix, keys[-6:])
    headless = list(_lazy(name, num_classes=0).state_dict())
    assert set(keys) - set(headless) == {k for k in keys if k.split(".")[0] in {p.split(".")[0] for p in
                                                                                 info.classifier}}


ANY_SIZE = {"crossvit"}  # resizes its input per branch; every other family has a size rule


@pytest.mark.parametrize("name", ALL)
def test_wrong_input_gives_the_contract_message(name):
    info = get_model_info(name)
    model = _lazy(name)  # the check runs before any parameter is touched
    size = model.img_size[0]
    cls = type(model).__name__
    cases = [([3, size, size], "4 dimensions"), ([1, 1, size, size], "expected 3 channels")]
    if info.family not in ANY_SIZE:
        cases.append(([1, 3, size + 1, size + 1], ""))
    for shape, problem in cases:
        with pytest.raises(InputShapeError, match=rf"^{cls} cannot take an input of shape "
                                                  rf"\[{', '.join(map(str, shape))}\]: .*{problem}"):
            model(paddle.zeros(shape))


@pytest.mark.parametrize("name", STATIC)
def test_to_static_round_trip_reproduces_eager(name, tmp_path):
    if get_model_info(name).family == "wavevit" and compat.export_unsupported():
        pytest.skip(f"Paddle 2.6 cannot trace Wave-ViT: {compat.export_unsupported()}")
    model, size = _build(name, num_classes=5)
    model.eval()
    if hasattr(model, "set_export_mode"):
        model.set_export_mode(True)
    x = paddle.randn([2, 3, size, size])
    with paddle.no_grad():
        ref = model(x).numpy()
    spec = [paddle.static.InputSpec([None, 3, size, size], "float32")]
    paddle.jit.save(paddle.jit.to_static(model, input_spec=spec, full_graph=True), str(tmp_path / "m"))
    out = paddle.jit.load(str(tmp_path / "m"))(x).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_unknown_model_suggests_close_names():
    with pytest.raises(ValueError, match=r"Unknown model 'cait_xxs_2'.*Did you mean"):
        create_model("cait_xxs_2")


def test_list_models_pattern_and_aliases():
    cait = {n for n in ALL if get_model_info(n).family == "cait"}
    assert set(list_models("cait_*")) == cait and len(cait) == FAMILY_SIZES["cait"]
    aliases = {a for n in ALL for a in get_model_info(n).aliases}
    assert aliases and set(list_models(include_aliases=True)) == set(ALL) | aliases
    assert set(list_models("cait_*", include_aliases=True)) == cait | {a for a in aliases if a.startswith("cait_")}
    assert paddle_vits.is_model("cait_xxs24_224") and paddle_vits.is_model("cait_xxs_24")
    assert not paddle_vits.is_model("cait_xxs_2")


def test_register_model_rejects_unknown_keywords():
    with pytest.raises(TypeError, match="top_1"):
        paddle_vits.register_model(top_1=80.0)


def test_pretrained_must_be_a_flag_tag_or_path():
    with pytest.raises(TypeError, match="path"):
        create_model(ALL[0], pretrained=1)


@pytest.mark.parametrize("kwargs, argument", [
    (dict(name=None), "model name"),
    (dict(name="cait_xxs_24", num_classes=-1), r"num_classes must be an int >= 0"),
    (dict(name="cait_xxs_24", num_classes=2.5), r"num_classes must be an int >= 0"),
    (dict(name="cait_xxs_24", img_size=-32), r"img_size must be a positive int"),
    (dict(name="cait_xxs_24", img_size="224"), r"img_size must be a positive int"),
    (dict(name="cait_xxs_24", drop_path_rate=1.5), r"drop_path_rate must be a probability in \[0, 1\)"),
    (dict(name="cait_xxs_24", drop_rate=-0.1), r"drop_rate must be a probability in \[0, 1\)"),
    (dict(name="cait_xxs_24", pretrained=""), "pretrained must be a path"),
    (dict(name="cait_xxs_24", num_classes="checkpoint"), "needs a checkpoint"),
])
def test_create_model_rejects_bad_arguments_by_name(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        create_model(**kwargs)


def test_checkpoint_class_count_is_read_with_the_weights(tmp_path, monkeypatch):
    from paddle_vits import convert, factory

    name = "cait_xxs_24"
    kwargs = dict(get_model_info(name).test_kwargs, depth=1)
    src = create_model(name, num_classes=6, **kwargs)
    path = tmp_path / "w.pdparams"
    paddle.save(src.state_dict(), str(path))
    reads = []
    read = convert.read_checkpoint
    monkeypatch.setattr(factory, "read_checkpoint", lambda *a, **k: reads.append(a) or read(*a, **k))
    monkeypatch.setattr(convert.core, "read_checkpoint", lambda *a, **k: reads.append(a) or read(*a, **k))
    model = create_model(name, pretrained=str(path), num_classes="checkpoint", **kwargs)
    assert model.num_classes == 6 and len(reads) == 1
    np.testing.assert_array_equal(model.head.weight.numpy(), src.head.weight.numpy())
