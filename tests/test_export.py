"""paddle_vits.export: every family exports to Paddle Inference and ONNX and passes the check.

One variant per family at its test size by default; the whole registry as ``slow``.
"""
import json
import os

import numpy as np
import paddle
import pytest

from paddle_vits import create_model, get_model_info, list_models
from paddle_vits.export import PREPROCESS_FILE, ExportCheckError, check_input_batch, export
from paddle_vits.utils import compat

pytestmark = pytest.mark.skipif(bool(compat.export_unsupported()), reason=str(compat.export_unsupported()))
ONE_PER_FAMILY = ["cait_xxs_24", "crossvit_tiny_240", "wavevit_s", "crossformer_t"]
# CrossFormer-B/L: onnxruntime sometimes disagrees with eager (max abs 2.18 / 0.96 in one CI run, agrees in
# others): not deterministic, open in issue 14.
ONNX_DISAGREES = {"crossformer_b", "crossformer_l"}
CASES = [pytest.param(n, marks=([] if n in ONE_PER_FAMILY else [pytest.mark.slow])
                      + ([pytest.mark.xfail(reason="onnxruntime sometimes disagrees with eager (issue 14)", strict=False)]
                         if n in ONNX_DISAGREES else []), id=n)
         for n in list_models()]


@pytest.mark.parametrize("name", CASES)
def test_every_family_exports_and_passes_the_check(name, tmp_path):
    pytest.importorskip("paddle2onnx")
    ort = pytest.importorskip("onnxruntime")
    info = get_model_info(name)
    size = info.test_kwargs.get("img_size", info.img_size)
    model = create_model(name, num_classes=10, **info.test_kwargs)
    out = tmp_path / "exp"
    result = export(model, out, formats=("paddle", "onnx"), img_size=size, log=None)
    assert [m.split(":")[0] for m in result["checks"]] == ["jit.load check", "onnxruntime check"]
    assert {os.path.basename(f) for f in result["files"]} == {os.path.basename(compat.program_file(str(out / "model"))),
                                                              "model.pdiparams", "model.onnx", PREPROCESS_FILE}
    assert not [n for n in os.listdir(out) if n.startswith(".")]  # the temporary folder is gone
    prep = json.loads((out / PREPROCESS_FILE).read_text())
    assert prep["model"] == info.name and prep["num_classes"] == 10 and prep["input_size"] == [3, size, size]
    assert prep["mean"] == list(info.mean) and prep["interpolation"] == info.interpolation
    assert prep["resize"] == int(size / info.crop_pct)
    # the dynamic batch: a batch of 3 (the check used 2) through both exported files
    x = check_input_batch(size, batch=3, seed=1)
    with paddle.no_grad():
        ref = model(paddle.to_tensor(x)).numpy()
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"image": x})[0], ref, atol=1e-4, rtol=1e-4)
    loaded = paddle.jit.load(str(out / "model"))
    np.testing.assert_allclose(loaded(paddle.to_tensor(x)).numpy(), ref, atol=1e-4, rtol=1e-4)


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
    assert [ok for ok, _ in caught.value.checks] == [False]
    assert sorted(os.listdir(out)) == ["model.json"] and (out / "model.json").read_text() == "previous export"


def test_bad_formats_and_out_dir(tmp_path):
    from paddle_vits.utils.cli import UserError

    with pytest.raises(UserError, match="unknown export formats"):
        export(_Drifts(), tmp_path / "e", formats=("tflite",))
    (tmp_path / "f").write_text("")
    with pytest.raises(UserError, match="is a file"):
        export(_Drifts(), tmp_path / "f", formats=("paddle",))
