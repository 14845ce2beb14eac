"""paddle_vits.export: every family exports and passes the check under ``paddle.jit.load``, Paddle
Inference (as :mod:`paddle_vits.inference` serves it) and onnxruntime.

One variant per family at its test size by default; as ``slow``, every architecture of the registry (a variant
that only repeats another at a higher resolution builds the same program at the test size, so it is checked to be
that, not exported again) and CrossFormer at 224.
"""
import json
import os
import re

import numpy as np
import paddle
import pytest

from paddle_vits import create_model, get_model_info, list_models
from paddle_vits.export import PREPROCESS_FILE, ExportCheckError, check_input_batch, export
from paddle_vits.utils import compat

pytestmark = pytest.mark.skipif(bool(compat.export_unsupported()), reason=str(compat.export_unsupported()))
ONE_PER_FAMILY = ["cait_xxs_24", "crossvit_tiny_224", "wavevit_s", "crossformer_t"]
CHECKS = ["jit.load check", "Paddle Inference check", "onnxruntime check"]
RESOLUTION = re.compile(r"_(384|408|448)$")


def resolution_twin(name):
    """The registered variant that ``name`` repeats at another resolution (``cait_xxs_24`` for
    ``cait_xxs_24_384``), or None: at the test size both build the same program (checked below)."""
    for twin in (RESOLUTION.sub("", name), RESOLUTION.sub("_224", name)):
        if twin != name and twin in list_models():
            return twin
    return None


SWEEP = [n for n in list_models() if resolution_twin(n) is None]
CASES = [pytest.param(n, None, marks=[] if n in ONE_PER_FAMILY else [pytest.mark.slow], id=n) for n in SWEEP]
# CrossFormer at its eval size: no padded groups (the test size, 32, pads), the official classifier's path
CASES.append(pytest.param("crossformer_t", 224, marks=[pytest.mark.slow], id="crossformer_t-224"))


def test_one_fast_case_per_family():
    fast = [p.values[0] for p in CASES if not p.marks]
    assert sorted(fast) == sorted(ONE_PER_FAMILY)
    assert {get_model_info(n).name.split("_")[0] for n in fast} == {"cait", "crossvit", "wavevit", "crossformer"}


@pytest.mark.parametrize("name", [n for n in list_models() if resolution_twin(n)])
def test_a_resolution_twin_is_the_same_program_at_the_test_size(name):
    def shapes(n):
        info = get_model_info(n)
        with paddle.LazyGuard():  # no initialisation: only the parameters' names and shapes are compared
            model = create_model(n, num_classes=10, **info.test_kwargs)
        return info.test_kwargs, [(k, p.shape) for k, p in model.named_parameters()]

    assert shapes(name) == shapes(resolution_twin(name))


@pytest.mark.parametrize("name,size", CASES)
def test_every_family_exports_and_passes_the_check(name, size, tmp_path):
    pytest.importorskip("paddle2onnx")
    ort = pytest.importorskip("onnxruntime")
    from paddle_vits.inference import paddle_predictor

    info = get_model_info(name)
    kwargs = dict(info.test_kwargs, **({"img_size": size} if size else {}))
    size = kwargs.get("img_size", info.img_size)
    model = create_model(name, num_classes=10, **kwargs)
    out = tmp_path / "exp"
    result = export(model, out, formats=("paddle", "onnx"), img_size=size, threads=1, log=None)
    assert [m.split(":")[0] for m in result["checks"]] == CHECKS
    assert {os.path.basename(f) for f in result["files"]} == {os.path.basename(compat.program_file(str(out / "model"))),
                                                              "model.pdiparams", "model.onnx", PREPROCESS_FILE}
    assert not [n for n in os.listdir(out) if n.startswith(".")]  # the temporary folder is gone
    prep = json.loads((out / PREPROCESS_FILE).read_text())
    assert prep["model"] == info.name and prep["num_classes"] == 10 and prep["input_size"] == [3, size, size]
    assert prep["mean"] == list(info.mean) and prep["interpolation"] == info.interpolation
    assert prep["resize"] == int(size / info.crop_pct)
    if info.name.startswith("crossformer"):
        # paddle2onnx 2.1 fills an ONNX Pad's value from uninitialised memory: the export mode pads by concatenation
        onnx = pytest.importorskip("onnx")
        assert "Pad" not in {node.op_type for node in onnx.load(str(out / "model.onnx")).graph.node}
    if info.name not in ONE_PER_FAMILY and info.name != "crossformer_b":
        return  # the sweep: export() checked all three backends; the batch-of-3 re-run is per family (CI time)
    # the dynamic batch: a batch of 3 (the check used 2) through the three ways of running the export
    x = check_input_batch(size, batch=3, seed=1)
    with paddle.no_grad():
        ref = model(paddle.to_tensor(x)).numpy()
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"image": x})[0], ref, atol=1e-4, rtol=1e-4)
    loaded = paddle.jit.load(str(out / "model"))
    np.testing.assert_allclose(loaded(paddle.to_tensor(x)).numpy(), ref, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(paddle_predictor(str(out / "model"), threads=1)(x), ref, atol=1e-4, rtol=1e-4)


def test_a_fixed_batch_export_passes_the_check(tmp_path):
    # Paddle Inference 3.3 cannot build CrossFormer's fixed-batch program with matmul_add_act_fuse_pass (3-D
    # inputs flattened wrongly): the predictor is built without it, and the check must pass
    info = get_model_info("crossformer_t")
    model = create_model(info.name, num_classes=10, **info.test_kwargs)
    result = export(model, tmp_path / "exp", formats=("paddle",), img_size=info.test_kwargs["img_size"],
                    dynamic_batch=False, threads=1, log=None)
    assert [m.split(":")[0] for m in result["checks"]] == CHECKS[:2]


class _Drifts(paddle.nn.Layer):
    """Python-side state changes between calls: the traced program differs from later eager calls."""

    def __init__(self):
        super().__init__()
        self.num_classes, self.in_chans, self.img_size, self.calls = 4, 3, (8, 8), 0
        self.head = paddle.nn.Linear(3, 4)

    def forward(self, x):
        self.calls += 1
        return self.head(x.mean(axis=[2, 3])) * float(self.calls)


def test_check_raises_and_keeps_the_previous_export(tmp_path):
    out = tmp_path / "exp"
    out.mkdir()
    (out / "model.json").write_text("previous export")
    with pytest.raises(ExportCheckError, match="disagrees with the eager model") as caught:
        export(_Drifts(), out, formats=("paddle",), log=None)
    assert [m.split(":")[0] for _, m in caught.value.checks] == ["jit.load check", "Paddle Inference check"]
    assert [ok for ok, _ in caught.value.checks] == [False, False]
    assert sorted(os.listdir(out)) == ["model.json"] and (out / "model.json").read_text() == "previous export"


def test_bad_formats_and_out_dir(tmp_path):
    from paddle_vits.utils.cli import UserError

    with pytest.raises(UserError, match="unknown export formats"):
        export(_Drifts(), tmp_path / "e", formats=("tflite",))
    (tmp_path / "f").write_text("")
    with pytest.raises(UserError, match="is a file"):
        export(_Drifts(), tmp_path / "f", formats=("paddle",))
