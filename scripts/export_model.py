"""Export a model for deployment: ``paddle.jit.save`` (Paddle Inference), optionally ONNX.

    python scripts/export_model.py --model wavevit_s --weights wavevit_s.pth.tar --out export/wavevit_s
    python scripts/export_model.py --model wavevit_s --out export/wavevit_s_rand --onnx

Writes ``OUT/model.json`` + ``OUT/model.pdiparams`` (load with
``paddle.jit.load(OUT/model)`` or Paddle Inference) and, with ``--onnx``,
``OUT/model.onnx`` (needs ``pip install paddle2onnx``), and ``OUT/preprocess.json``
(input size, crop, interpolation, mean/std, classes: what ``scripts/predict.py`` feeds the
model). The work is :func:`paddle_vits.export.export`. Models with PyLayers
(Wave-ViT's DWT/IDWT) are switched to their plain-op path first
(``model.set_export_mode(True)``), which gives identical numbers.

The export is checked before it is kept: the program reloaded with
``paddle.jit.load``, the program under Paddle Inference (configured as
``scripts/predict.py`` runs it: CPU, oneDNN, IR optimisation, ``--threads``) and the
ONNX model under onnxruntime (when installed) must reproduce the eager model's
logits on a fixed random batch within
``|exported - eager| <= --atol + --rtol * |eager|`` (default 1e-4 each). The files
are written to a temporary folder inside ``OUT`` and moved into place only after
that check: a failed or interrupted export leaves a previous export in ``OUT`` as it
was, and a disagreement exits 1 with one ``error:`` line naming the failed checks
and their differences. Expected failures print ``error: <what> (<fix>)``
and exit 2.
"""
import argparse
import os
import sys

from paddle_vits.utils.argtypes import float_range, int_at_least
from paddle_vits.utils.cli import UserError, add_common_args, add_runtime_args, add_weights_args, run

EXIT_MISMATCH = 1


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="registered model name or alias (see paddle_vits.list_models())")
    p.add_argument("--weights", default=None, help=".pdparams or official .pth/.safetensors, or 'pretrained' / a "
                   "release tag (downloaded and cached; default: random init)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--num-classes", type=int_at_least(1), default=None,
                   help="head size (default: read from the weights, else 1000)")
    p.add_argument("--img-size", type=int_at_least(1), default=None, help="input side (default: the model's eval size)")
    p.add_argument("--onnx", action="store_true", help="also write OUT/model.onnx with paddle2onnx")
    p.add_argument("--opset", type=int_at_least(7, 21), default=13, help="ONNX opset")
    p.add_argument("--onnx-optimizer", choices=("onnxoptimizer", "polygraphy", "none"), default="onnxoptimizer",
                   help="paddle2onnx's graph clean-up (polygraphy pip-installs its own dependencies on first use)")
    p.add_argument("--atol", type=float_range(0.0), default=1e-4, help="absolute tolerance of the export check")
    p.add_argument("--rtol", type=float_range(0.0), default=1e-4, help="relative tolerance of the export check")
    add_runtime_args(p)
    add_weights_args(p)
    add_common_args(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UserError(f"--out {args.out!r} is a file", "--out is a directory that will hold model.json etc.")
    from paddle_vits.utils import compat

    if args.onnx:
        try:
            import paddle2onnx  # noqa: F401  (fail before building the model)
        except ImportError:
            raise UserError(f"--onnx needs paddle2onnx: {compat.PADDLE2ONNX_MISSING}") from None

    from paddle_vits import create_model, get_model_info
    from paddle_vits.convert import infer_num_classes, load_pretrained, read_checkpoint
    from paddle_vits.export import ExportCheckError, export
    from paddle_vits.hub import weights_file
    from paddle_vits.utils import set_num_threads
    from paddle_vits.utils.device import select_device

    if compat.export_unsupported():
        raise UserError(compat.export_unsupported())
    set_num_threads(args.threads)
    select_device(args.device)
    try:
        info = get_model_info(args.model)
    except (KeyError, ValueError) as e:
        raise UserError(str(e).strip("'\""), "see scripts/list_models.py") from None
    state_dict = weights = None
    if args.weights:
        weights = weights_file(info.name, args.weights)  # a path, 'pretrained' or a release tag
        state_dict = read_checkpoint(weights, unsafe=args.unsafe_pickle, allow_nonfinite=args.allow_nonfinite)
    num_classes = args.num_classes
    if num_classes is None:
        num_classes = infer_num_classes(state_dict, info) if weights else 1000
    size = args.img_size or info.img_size
    kwargs = {"img_size": size} if args.img_size else {}
    try:
        model = create_model(info.name, num_classes=num_classes, **kwargs)
    except (TypeError, ValueError) as e:
        if isinstance(e, UserError):
            raise
        raise UserError(f"cannot build {info.name} with these options: {e}", "check --img-size/--num-classes") \
            from None
    if weights:
        load_pretrained(model, weights, model_name=info.name, state_dict=state_dict)
    formats = ("paddle", "onnx") if args.onnx else ("paddle",)
    try:
        result = export(model, args.out, formats=formats, img_size=size, atol=args.atol, rtol=args.rtol,
                        opset=args.opset, onnx_optimizer=args.onnx_optimizer, threads=args.threads)
    except ExportCheckError as e:
        for ok, message in e.checks:
            if ok:
                print(message)
        print(f"error: {e}", file=sys.stderr)  # the failed checks, and that nothing was written
        return EXIT_MISMATCH
    written = result["files"]
    print(f"saved {', '.join(written)} ({info.name}, {num_classes} classes, input 3x{size}x{size})")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
