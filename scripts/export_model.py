"""Export a model for deployment: ``paddle.jit.save`` (Paddle Inference), optionally ONNX.

    python scripts/export_model.py --model wavevit_s --weights wavevit_s.pth.tar --out export/wavevit_s
    python scripts/export_model.py --model wavevit_s --out export/wavevit_s_rand --onnx

Writes ``OUT/model.json`` + ``OUT/model.pdiparams`` (load with
``paddle.jit.load(OUT/model)`` or Paddle Inference) and, with ``--onnx``,
``OUT/model.onnx`` (needs ``pip install paddle2onnx``). Models with PyLayers
(Wave-ViT's DWT/IDWT) are switched to their plain-op path first
(``model.set_export_mode(True)``), which gives identical numbers. The script
checks that the exported program reproduces the eager model on a random batch.
"""
import argparse
import os

import numpy as np


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="registered model name or alias (see paddle_vits.list_models())")
    p.add_argument("--weights", default=None, help=".pdparams or official .pth/.safetensors (default: random init)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--num-classes", type=int, default=None,
                   help="head size (default: read from the weights, else 1000)")
    p.add_argument("--img-size", type=int, default=None, help="input side (default: the model's eval size)")
    p.add_argument("--onnx", action="store_true", help="also write OUT/model.onnx with paddle2onnx")
    p.add_argument("--opset", type=int, default=13, help="ONNX opset")
    p.add_argument("--onnx-optimizer", choices=("onnxoptimizer", "polygraphy", "none"), default="onnxoptimizer",
                   help="paddle2onnx's graph clean-up (polygraphy pip-installs its own dependencies on first use)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--device", choices=("cpu", "gpu"), default=None, help="default: gpu when Paddle has one")
    return p.parse_args()


def main():
    args = parse_args()
    import paddle

    from paddle_vits import create_model, get_model_info
    from paddle_vits.convert import infer_num_classes, read_checkpoint
    from paddle_vits.utils import compat, set_num_threads
    from paddle_vits.utils.device import select_device

    if compat.export_unsupported():
        raise SystemExit(f"error: {compat.export_unsupported()}")
    set_num_threads(args.threads)
    select_device(args.device)
    info = get_model_info(args.model)
    num_classes = args.num_classes
    if num_classes is None:
        num_classes = infer_num_classes(read_checkpoint(args.weights), info) if args.weights else 1000
    size = args.img_size or info.img_size
    kwargs = {"img_size": size} if args.img_size else {}
    model = create_model(info.name, pretrained=args.weights or False, num_classes=num_classes, **kwargs)
    model.eval()
    if hasattr(model, "set_export_mode"):
        model.set_export_mode(True)

    os.makedirs(args.out, exist_ok=True)
    prefix = os.path.join(args.out, "model")
    spec = [paddle.static.InputSpec([None, 3, size, size], "float32", name="image")]
    static = paddle.jit.to_static(model, input_spec=spec, full_graph=True)
    paddle.jit.save(static, prefix)
    print(f"saved {compat.program_file(prefix)} / {prefix}.pdiparams ({info.name}, {num_classes} classes, "
          f"input 3x{size}x{size})")

    x = paddle.randn([2, 3, size, size])
    with paddle.no_grad():
        ref = model(x).numpy()
        out = paddle.jit.load(prefix)(x).numpy()
    print(f"jit.load check: max abs difference to the eager model {np.abs(out - ref).max():.3g}")

    if args.onnx:
        try:
            import paddle2onnx
        except ImportError:
            raise SystemExit(f"error: --onnx needs paddle2onnx: {compat.PADDLE2ONNX_MISSING}") from None
        onnx_path = prefix + ".onnx"
        paddle2onnx.export(compat.program_file(prefix), prefix + ".pdiparams", save_file=onnx_path,
                           opset_version=args.opset, enable_onnx_checker=True,
                           enable_optimize=args.onnx_optimizer != "none",
                           optimize_tool=args.onnx_optimizer if args.onnx_optimizer != "none" else "onnxoptimizer")
        print(f"saved {onnx_path}")
        try:
            import onnxruntime as ort
        except ImportError:
            print("onnxruntime not installed: ONNX output not checked (pip install onnxruntime)")
            return
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # errors only
        sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
        onnx_out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        print(f"onnxruntime check: max abs difference to the eager model {np.abs(onnx_out - ref).max():.3g}")


if __name__ == "__main__":
    main()
