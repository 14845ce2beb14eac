"""Wave-ViT specifics: token-labeling output, image sizes, export path, official checkpoints.

Parity with the official implementation is checked by ``test_parity_fixtures.py``
on ``fixtures/wavevit_*.npz`` (see ``fixtures/make_wavevit_fixtures.py``).
"""
import argparse
import os

import numpy as np
import paddle
import pytest

from _parity import load_fixture, seeded_state_dict
from paddle_vits import create_model
from paddle_vits.convert import convert_state_dict
from paddle_vits.layers import DWT2D, IDWT2D, interleave_permutation
from paddle_vits.layers.wavelets import dwt_filters, idwt_filters
from paddle_vits.models.wavevit import WaveViT, checkpoint_filter_fn
from paddle_vits.utils import compat

TINY = dict(stem_hidden_dim=8, embed_dims=(16, 32, 48, 64), num_heads=(2, 2, 4, 4), mlp_ratios=(2, 2, 2, 2),
            depths=(1, 1, 1, 1), sr_ratios=(2, 1, 1, 1))
SMALL_FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "wavevit_small.npz")


def _tiny(**kwargs):
    kw = dict(TINY, img_size=64, num_classes=10)
    kw.update(kwargs)
    return create_model("wavevit_s", **kw)


def _official_state_dict(meta):
    """Seeded weights of the small fixture plus what an official file also holds:
    float16 DWT/IDWT filter buffers and BatchNorm ``num_batches_tracked``."""
    sd = seeded_state_dict(meta["keys"], meta["seed"])
    for name in [k for k in sd if k.endswith(".reduce.0.weight")]:
        prefix = name[: -len("reduce.0.weight")]
        for s, band in enumerate(("w_ll", "w_lh", "w_hl", "w_hh")):
            sd[f"{prefix}dwt.{band}"] = dwt_filters()[s][None, None].astype(np.float16)
        sd[f"{prefix}idwt.filters"] = idwt_filters()[:, None].astype(np.float16)
    return sd


def test_token_label_output_formula():
    model = _tiny()
    model.eval()
    x = paddle.randn([2, 3, 64, 64])
    with paddle.no_grad():
        tokens = model.forward_features(x)
        out = model(x)
        cls_logits, aux_logits = model.forward_token_label(x)
    assert tuple(tokens.shape) == (2, 1 + 2 * 2, 64)  # class token + 2x2 stage-4 tokens
    assert tuple(aux_logits.shape) == (2, 4, 10)
    expected = model.head(tokens[:, 0]).numpy() + 0.5 * model.aux_head(tokens[:, 1:]).numpy().max(axis=1)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cls_logits.numpy() + 0.5 * aux_logits.numpy().max(axis=1), out.numpy(), atol=1e-5)
    assert np.abs(out.numpy() - cls_logits.numpy()).max() > 1e-3  # the aux term matters


def test_without_token_label_head():
    with_aux, plain = _tiny(), _tiny(token_label=False)
    assert not hasattr(plain, "aux_head")
    n_with = sum(int(p.size) for p in with_aux.parameters() if p.trainable)
    n_plain = sum(int(p.size) for p in plain.parameters() if p.trainable)
    assert n_with - n_plain == 64 * 10 + 10
    plain.eval()
    x = paddle.randn([2, 3, 64, 64])
    with paddle.no_grad():
        np.testing.assert_allclose(plain(x).numpy(), plain.head(plain.forward_features(x)[:, 0]).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="token_label=True"):
        plain.forward_token_label(x)


def test_reset_classifier_resets_both_heads():
    model = _tiny()
    model.reset_classifier(3)
    assert model.head.weight.shape == [64, 3] and model.aux_head.weight.shape == [64, 3]
    model.reset_classifier(0)
    model.eval()
    with paddle.no_grad():
        feats = model(paddle.randn([1, 3, 64, 64]))
    assert tuple(feats.shape) == (1, 64)


@pytest.mark.parametrize("size", [32, 64, 96])
def test_sizes_that_work(size):
    model = _tiny(img_size=size)
    model.eval()
    with paddle.no_grad():
        out = model(paddle.randn([1, 3, size, size]))
    assert tuple(out.shape) == (1, 10)


@pytest.mark.parametrize("size", [40, 56, 100])
def test_sizes_that_fail_clearly(size):
    with pytest.raises(ValueError, match=f"input of side {size}.*multiple of 32"):
        _tiny(img_size=size)
    model = _tiny()
    with pytest.raises(ValueError, match=f"input of side {size}"):
        model(paddle.randn([1, 3, size, size]))


def test_export_mode_gives_identical_outputs_and_gradients():
    model = _tiny()
    x = paddle.randn([2, 3, 64, 64])
    results = []
    for export in (False, True):
        model.set_export_mode(export)
        flags = [m.use_pylayer for m in model.sublayers() if isinstance(m, (DWT2D, IDWT2D))]
        assert len(flags) == 4 and all(f == (not export) for f in flags)  # 2 wavelet blocks x (DWT, IDWT)
        model.clear_gradients()
        model.eval()
        out = model(x)
        out.sum().backward()
        grad = model.block1[0].attn.reduce[0].weight.grad.numpy().copy()
        results.append((out.numpy(), grad))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


@pytest.mark.skipif(compat.export_unsupported() is not None, reason=str(compat.export_unsupported()))
def test_jit_save_and_load(tmp_path):
    model = _tiny()
    model.eval()
    model.set_export_mode(True)
    spec = [paddle.static.InputSpec([None, 3, 64, 64], "float32")]
    path = str(tmp_path / "wavevit")
    paddle.jit.save(paddle.jit.to_static(model, input_spec=spec, full_graph=True), path)
    with open(compat.program_file(path), "rb") as f:
        assert b"pylayer" not in f.read().lower()
    x = paddle.randn([2, 3, 64, 64])
    with paddle.no_grad():
        np.testing.assert_allclose(paddle.jit.load(path)(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(compat.export_unsupported() is not None, reason=str(compat.export_unsupported()))
def test_onnx_export_matches(tmp_path):
    paddle2onnx = pytest.importorskip("paddle2onnx", reason=compat.PADDLE2ONNX_MISSING)
    ort = pytest.importorskip("onnxruntime")
    model = _tiny()
    model.eval()
    model.set_export_mode(True)
    prefix = str(tmp_path / "wavevit")
    spec = [paddle.static.InputSpec([None, 3, 64, 64], "float32")]
    paddle.jit.save(paddle.jit.to_static(model, input_spec=spec, full_graph=True), prefix)
    paddle2onnx.export(compat.program_file(prefix), prefix + ".pdiparams", save_file=prefix + ".onnx", opset_version=13,
                       optimize_tool="onnxoptimizer")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(prefix + ".onnx", opts, providers=["CPUExecutionProvider"])
    x = np.random.randn(2, 3, 64, 64).astype(np.float32)
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with paddle.no_grad():
        np.testing.assert_allclose(got, model(paddle.to_tensor(x)).numpy(), rtol=1e-4, atol=1e-4)


def test_fused_and_explicit_attention_agree():
    model = _tiny()
    model.eval()
    x = paddle.randn([2, 3, 64, 64])
    with paddle.no_grad():
        fused = model(x).numpy()
        for m in model.sublayers():
            if hasattr(m, "fused_attn"):
                m.fused_attn = False
        explicit = model(x).numpy()
    np.testing.assert_allclose(fused, explicit, rtol=1e-5, atol=1e-5)


def test_checkpoint_filter_drops_fixed_filters_and_permutes_sub_bands():
    meta, inp, ref = load_fixture(SMALL_FIXTURE)
    sd = _official_state_dict(meta)
    model = create_model(meta["model"], num_classes=ref.shape[-1], **meta["kwargs"])
    out = checkpoint_filter_fn(dict(sd), model)
    dropped = set(sd) - set(out)
    assert dropped and all(".dwt." in k or ".idwt." in k for k in dropped)
    assert len(dropped) == 5 * len(model.block1) + 5 * len(model.block2)  # 4 DWT + 1 IDWT buffers per block
    perm = interleave_permutation(4)  # stage 1: dim 16 -> 4 reduced channels
    a = "block1.0.attn."
    np.testing.assert_array_equal(out[a + "filter.0.weight"], sd[a + "filter.0.weight"][perm][:, perm])
    np.testing.assert_array_equal(out[a + "filter.1.running_var"], sd[a + "filter.1.running_var"][perm])
    np.testing.assert_array_equal(out[a + "kv_embed.weight"], sd[a + "kv_embed.weight"][:, perm])
    perm2 = interleave_permutation(8)  # stage 2 (sr_ratio 1, no kv_embed): the sub-bands feed kv directly
    np.testing.assert_array_equal(out["block2.0.attn.kv.1.weight"], sd["block2.0.attn.kv.1.weight"][:, perm2])
    np.testing.assert_array_equal(out["block2.0.attn.kv.0.bias"], sd["block2.0.attn.kv.0.bias"][perm2])
    converted, skipped = convert_state_dict(sd, model, meta["model"])
    assert not skipped
    assert "block1.0.attn.reduce.1._mean" in converted
    model.set_state_dict(converted)
    model.eval()
    with paddle.no_grad():
        got = model(paddle.to_tensor(inp)).numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)


def test_official_checkpoint_into_model_without_aux_head():
    meta, inp, ref = load_fixture(SMALL_FIXTURE)
    sd = _official_state_dict(meta)
    model = create_model(meta["model"], num_classes=ref.shape[-1], token_label=False, **meta["kwargs"])
    converted, skipped = convert_state_dict(sd, model, meta["model"])
    assert not skipped and not any(k.startswith("aux_head") for k in converted)
    model.set_state_dict(converted)
    np.testing.assert_array_equal(model.head.bias.numpy(), sd["head.bias"])


def test_checkpoint_of_another_config_fails_clearly():
    meta, _, ref = load_fixture(SMALL_FIXTURE)
    sd = _official_state_dict(meta)
    model = create_model("wavevit_s", img_size=64, num_classes=ref.shape[-1])
    with pytest.raises(ValueError, match="does not fit"):
        convert_state_dict(sd, model, "wavevit_s")


@pytest.mark.torch
def test_official_pth_with_namespace_converts(tmp_path):
    """A release-style file: {'state_dict', 'epoch', 'arch', 'args': Namespace}, float16 filter buffers."""
    torch = pytest.importorskip("torch")
    meta, inp, ref = load_fixture(SMALL_FIXTURE)
    sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in _official_state_dict(meta).items()}
    for k in [k for k in sd if k.endswith("running_var")]:
        sd[k[: -len("running_var")] + "num_batches_tracked"] = torch.tensor(123)
    path = tmp_path / "wavevit_small.pth.tar"
    args = argparse.Namespace(model="wavevit_s", token_label=True, lr=1e-3)
    torch.save({"state_dict": sd, "epoch": 299, "arch": "wavevit_s", "args": args}, path)
    with pytest.raises(Exception):
        torch.load(path, weights_only=True)  # what the restricted reader exists for
    model = create_model(meta["model"], pretrained=str(path), num_classes=ref.shape[-1], **meta["kwargs"])
    model.eval()
    with paddle.no_grad():
        got = model(paddle.to_tensor(inp)).numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)


def test_model_class_rejects_bad_widths():
    with pytest.raises(ValueError, match="divisible"):
        WaveViT(img_size=64, **dict(TINY, num_heads=(3, 2, 4, 4)))
