"""Export a model for deployment (Paddle Inference program, ONNX) and check the export.

:func:`export` writes into ``out_dir``:

* ``model.json`` (``model.pdmodel`` on Paddle 2.6) + ``model.pdiparams``: the ``paddle.jit.save``
  program, for ``paddle.jit.load`` or Paddle Inference (``paddle.inference.Config``);
* ``model.onnx`` (``"onnx"`` in ``formats``, needs ``paddle2onnx``);
* ``preprocess.json``: what a server needs to feed the model (:func:`preprocess_config`): input size,
  crop fraction, interpolation, mean/std, class count, model name, the files written.

The files go to a temporary folder inside ``out_dir`` and are moved into place only after the
check passed: a failed or interrupted export leaves a previous export as it was. The check runs
every exported program on a fixed input (seeded; two images) through each way of serving it
(``paddle.jit.load``, Paddle Inference as :mod:`paddle_vits.inference` configures it, onnxruntime)
and raises :class:`ExportCheckError`
unless ``|exported - eager| <= atol + rtol * |eager|`` everywhere (default 1e-4 each).
"""
import json
import os
import shutil
import tempfile

import numpy as np

from .utils.cli import UserError
from .utils.io import atomic_write_text

__all__ = ["ExportCheckError", "FORMATS", "PREPROCESS_FILE", "agreement", "check_input_batch", "export",
           "preprocess_config"]

FORMATS = ("paddle", "onnx")
PREPROCESS_FILE = "preprocess.json"


class ExportCheckError(UserError):
    """An exported program disagrees with the eager model beyond the tolerance (nothing was written).

    Attributes:
        checks: ``(ok, message)`` per check run, the failing ones included.
    """

    def __init__(self, what, fix=None, checks=()):
        super().__init__(what, fix)
        self.checks = list(checks)


def agreement(name, out, ref, atol, rtol):
    """``(ok, message)``: whether ``out`` matches ``ref`` within ``atol + rtol * |ref|``."""
    if out.shape != ref.shape:
        return False, f"{name}: output shape {out.shape} vs eager {ref.shape}"
    diff = np.abs(out.astype(np.float64) - ref)
    excess = diff - (atol + rtol * np.abs(ref))
    ok = bool(np.isfinite(out).all() and (excess <= 0).all())
    return ok, f"{name}: max abs difference to the eager model {diff.max():.3g} (tolerance {atol:g} + {rtol:g}*|eager|)"


def check_input_batch(size, in_chans=3, batch=2, seed=0):
    """The fixed check input: ``batch`` standard-normal images ``[batch, in_chans, size, size]`` (float32)."""
    return np.random.default_rng(seed).standard_normal((batch, in_chans, size, size)).astype(np.float32)


def preprocess_config(model, img_size=None, files=()):
    """What a server needs to feed the exported model (written as ``preprocess.json``).

    Takes the registry's eval settings (``model.model_info``, set by ``create_model``) and the export
    size: ``input_size`` ``[C, H, W]``, ``resize`` (the short side before the center crop, ``int(size /
    crop_pct)``), ``crop_pct``, ``interpolation``, ``mean``/``std`` (RGB, 0-1 scale), ``num_classes``,
    ``model``.
    """
    info = getattr(model, "model_info", None)
    size = int(img_size or (model.img_size[0] if hasattr(model, "img_size") else info.img_size))
    from .constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    from .data.transforms import eval_resize_size

    crop_pct = info.crop_pct if info else 1.0
    return dict(
        model=info.name if info else type(model).__name__,
        num_classes=int(getattr(model, "num_classes", 0)),
        input_size=[int(getattr(model, "in_chans", 3)), size, size],
        crop_pct=crop_pct,
        resize=eval_resize_size(size, crop_pct),
        interpolation=info.interpolation if info else "bicubic",
        mean=list(info.mean if info else IMAGENET_DEFAULT_MEAN),
        std=list(info.std if info else IMAGENET_DEFAULT_STD),
        input_name="image",
        layout="NCHW, RGB, float32",
        files=list(files),
    )


def _export_onnx(prefix, opset, optimizer):
    from .utils import compat

    try:
        import paddle2onnx
    except ImportError:
        raise UserError(f"ONNX export needs paddle2onnx: {compat.PADDLE2ONNX_MISSING}") from None
    paddle2onnx.export(compat.program_file(prefix), prefix + ".pdiparams", save_file=prefix + ".onnx",
                       opset_version=opset, enable_onnx_checker=True, enable_optimize=optimizer != "none",
                       optimize_tool=optimizer if optimizer != "none" else "onnxoptimizer")


def _run_onnx(path, x):
    """ONNX outputs under onnxruntime (CPU), or None when onnxruntime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _check_paddle_inference(prefix, x, ref, atol, rtol, threads):
    """``(ok, message)`` of the program under Paddle Inference, configured as the predictor that serves it
    (:func:`paddle_vits.inference.paddle_predictor`: CPU, oneDNN, IR optimisation); a predictor that cannot
    be built or run fails the check."""
    from .inference import paddle_predictor  # here: inference imports this module

    name = "Paddle Inference check"
    try:
        out = paddle_predictor(prefix, threads=threads)(x)
    except UserError as e:
        return False, f"{name}: {e}"
    except RuntimeError as e:  # Paddle Inference's run-time errors carry the C++ message only
        return False, f"{name}: the predictor fails at run time: {str(e).strip().splitlines()[-1]}"
    return agreement(name, out, ref, atol, rtol)


def export(model, out_dir, formats=FORMATS, img_size=None, dynamic_batch=True, check=True, atol=1e-4, rtol=1e-4,
           opset=13, onnx_optimizer="onnxoptimizer", threads=None, log=print):
    """Export ``model`` (a classifier, any family) to ``out_dir`` and check it.

    Args:
        model: The model (put in eval mode; Wave-ViT is switched to its plain-op DWT,
            ``set_export_mode(True)``, which gives identical numbers).
        out_dir: Destination folder (created; files of a previous export are replaced).
        formats: Any of ``"paddle"`` (always written: the ONNX file is converted from it) and ``"onnx"``.
        img_size: Input side (default: the model's ``img_size``).
        dynamic_batch: A ``None`` batch dimension in the program (else fixed at the check batch, 2).
        check: Run the exported program(s) on :func:`check_input_batch` and compare with the eager
            model: the program reloaded with ``paddle.jit.load``, the program under Paddle Inference
            (configured as :class:`paddle_vits.inference.Predictor` serves it: CPU, oneDNN, IR
            optimisation) and the ONNX file under onnxruntime (skipped with a log line without it).
        atol, rtol: Tolerance of the check: ``|exported - eager| <= atol + rtol * |eager|``.
        opset: ONNX opset.
        onnx_optimizer: paddle2onnx's graph clean-up (``"onnxoptimizer"``, ``"polygraphy"``, ``"none"``).
        threads: CPU threads of the Paddle Inference check (default: all cores).
        log: Where the check lines go (``print``; ``None`` for silence).

    Returns:
        ``dict``: ``files`` (paths written), ``checks`` (one line per check), ``preprocess``.

    Raises:
        ExportCheckError: a check failed (nothing written; a previous export is kept).
        UserError: export impossible here (Paddle 2.6, paddle2onnx missing, bad arguments).
    """
    import paddle

    from .utils import compat

    formats = tuple(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise UserError(f"unknown export formats {unknown or formats!r}", f"use some of {FORMATS}")
    if compat.export_unsupported():
        raise UserError(compat.export_unsupported())
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UserError(f"the export folder {os.fspath(out_dir)!r} is a file", "give a directory")
    log = log or (lambda *a, **k: None)
    model.eval()
    if hasattr(model, "set_export_mode"):
        model.set_export_mode(True)
    prep = preprocess_config(model, img_size)
    size = prep["input_size"][1]
    x_np = check_input_batch(size, prep["input_size"][0])
    os.makedirs(out_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export.tmp-", dir=out_dir)
    try:
        prefix = os.path.join(tmp, "model")
        batch = None if dynamic_batch else x_np.shape[0]
        spec = [paddle.static.InputSpec([batch, prep["input_size"][0], size, size], "float32", name="image")]
        static = paddle.jit.to_static(model, input_spec=spec, full_graph=True)
        paddle.jit.save(static, prefix)
        checks = []
        x = paddle.to_tensor(x_np)
        if check:
            with paddle.no_grad():
                ref = model(x).numpy().astype(np.float64)
                out = paddle.jit.load(prefix)(x).numpy()
            checks.append(agreement("jit.load check", out, ref, atol, rtol))
            checks.append(_check_paddle_inference(prefix, x_np, ref, atol, rtol, threads))
        if "onnx" in formats:
            _export_onnx(prefix, opset, onnx_optimizer)
            if check:
                onnx_out = _run_onnx(prefix + ".onnx", x_np)
                if onnx_out is None:
                    log("onnxruntime not installed: ONNX output not checked (pip install onnxruntime)")
                else:
                    checks.append(agreement("onnxruntime check", onnx_out, ref, atol, rtol))
        failed = [m for ok, m in checks if not ok]
        if failed:
            raise ExportCheckError(f"{'; '.join(failed)}: the export disagrees with the eager model; nothing "
                                   f"written to {os.fspath(out_dir)} (a previous export there is kept)",
                                   checks=checks)
        for _, message in checks:
            log(message)
        names = sorted(os.listdir(tmp)) + [PREPROCESS_FILE]
        prep["files"] = names
        atomic_write_text(os.path.join(tmp, PREPROCESS_FILE), json.dumps(prep, indent=2) + "\n")
        written = []
        for name in names:
            os.replace(os.path.join(tmp, name), os.path.join(out_dir, name))
            written.append(os.path.join(os.fspath(out_dir), name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dict(files=written, checks=[m for _, m in checks], preprocess=prep)


def load_preprocess(model_dir):
    """The ``preprocess.json`` of an export folder, as a dict; :class:`UserError` when missing or malformed."""
    path = os.path.join(os.fspath(model_dir), PREPROCESS_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            prep = json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path} not found: {os.fspath(model_dir)!r} is not an export folder",
                        "export the model with scripts/export_model.py --out DIR first") from None
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {path}: {e}", "re-export the model") from None
    missing = [k for k in ("input_size", "resize", "interpolation", "mean", "std") if k not in prep]
    if missing:
        raise UserError(f"{path} lacks {', '.join(missing)}", "re-export the model with this version")
    return prep
