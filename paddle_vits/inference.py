"""Serve an exported model (:mod:`paddle_vits.export`) with Paddle Inference or onnxruntime.

:class:`Predictor` loads ``model.json``/``model.pdmodel`` + ``model.pdiparams`` with
``paddle.inference.Config``/``create_predictor`` (CPU with oneDNN and a thread count; GPU; TensorRT
FP16 where the GPU build has it) or ``model.onnx`` with onnxruntime, and turns images into logits
through the folder's ``preprocess.json`` (resize, center crop, interpolation, mean/std).
"""
import os

import numpy as np

from .data.transforms import EvalTransform, open_image
from .export import load_preprocess
from .utils.cli import UserError

__all__ = ["BACKENDS", "Predictor", "paddle_predictor", "softmax", "topk"]

BACKENDS = ("paddle-inference", "onnxruntime")


def softmax(logits):
    """Row-wise softmax of ``[B, K]`` logits (float64)."""
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def topk(logits, k):
    """``(indices, probabilities)`` ``[B, k]``: the ``k`` best classes of each row, best first."""
    k = min(k, logits.shape[1])
    probs = softmax(logits)
    idx = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(probs, idx, axis=1)


def paddle_predictor(prefix, device="cpu", threads=None, mkldnn=True, trt_fp16=False, int8=False, delete=()):
    """A Paddle Inference predictor for the program ``prefix`` (``prefix.json``/``.pdmodel`` +
    ``prefix.pdiparams``), as ``float32 [B, C, H, W] -> [B, num_classes]`` function.

    The one place the predictor is configured (:class:`Predictor`, ``scripts/predict.py`` and the
    export check of :func:`paddle_vits.export.export` use it): IR optimisation on (the default),
    CPU with oneDNN (``mkldnn``) and ``threads`` math threads, or GPU, with TensorRT FP16 where the
    build has it. ``int8`` turns on oneDNN's int8 kernels (CPU; ``scripts/quantize.py``); ``delete``
    names IR passes to leave out.

    Raises:
        UserError: no program at ``prefix``, an impossible device setting, or Paddle Inference
            cannot build the predictor.
    """
    import paddle.inference as pi

    from .utils import compat

    program = compat.program_file(prefix)
    if not os.path.exists(program) or not os.path.exists(prefix + ".pdiparams"):
        raise UserError(f"{os.path.dirname(prefix)!r} has no Paddle program (model.json/.pdmodel + model.pdiparams)",
                        "export it with scripts/export_model.py")
    try:
        predictor = _create_predictor(pi, program, prefix, device, threads, mkldnn, trt_fp16, int8, delete)
    except (RuntimeError, ValueError) as e:
        # Paddle Inference 3.3's oneDNN matmul_add_act_fuse_pass mis-flattens 3-D inputs of programs with a
        # fixed batch (CrossFormer exported with dynamic_batch=False: "input's second dimension is 6272"); a
        # program that fails to build is built once more without it.
        try:
            predictor = _create_predictor(pi, program, prefix, device, threads, mkldnn, trt_fp16, int8,
                                          (*delete, "matmul_add_act_fuse_pass"))
        except (RuntimeError, ValueError):
            last = " ".join(line.strip() for line in str(e).strip().splitlines()[-3:])
            raise UserError(f"Paddle Inference cannot build a predictor for {os.path.dirname(prefix)!r}: {last}",
                            "use --backend onnxruntime (the export's ONNX file)") from None
    inp = predictor.get_input_handle(predictor.get_input_names()[0])
    out = predictor.get_output_handle(predictor.get_output_names()[0])

    def run(x):
        inp.reshape(list(x.shape))
        inp.copy_from_cpu(np.ascontiguousarray(x, dtype=np.float32))
        predictor.run()
        return out.copy_to_cpu()

    return run


def _create_predictor(pi, program, prefix, device, threads, mkldnn, trt_fp16, int8, delete):
    """``paddle.inference.create_predictor`` as :func:`paddle_predictor` configures it, without the ``delete``d passes."""
    import paddle

    config = pi.Config(program, prefix + ".pdiparams")
    config.disable_glog_info()
    if device == "gpu":
        if not paddle.is_compiled_with_cuda():
            raise UserError("--device gpu needs the GPU build of Paddle", "pip install paddlepaddle-gpu, or "
                            "use --device cpu")
        config.enable_use_gpu(256, 0)
        if trt_fp16:
            if not paddle.is_compiled_with_tensorrt():
                raise UserError("TensorRT FP16 needs a Paddle build with TensorRT", "drop --trt-fp16")
            config.enable_tensorrt_engine(workspace_size=1 << 30, max_batch_size=64, min_subgraph_size=3,
                                          precision_mode=pi.PrecisionType.Half, use_static=False,
                                          use_calib_mode=False)
    else:
        if trt_fp16:
            raise UserError("TensorRT FP16 runs on the GPU only", "add --device gpu, or drop --trt-fp16")
        config.disable_gpu()
        if mkldnn:
            config.enable_mkldnn()
            if int8:
                config.enable_mkldnn_int8()
        config.set_cpu_math_library_num_threads(threads or os.cpu_count() or 1)
    for name in delete:
        config.delete_pass(name)
    return pi.create_predictor(config)


class Predictor:
    """An exported model, ready to predict.

    Args:
        model_dir: An export folder (``model.*`` and ``preprocess.json``).
        backend: ``"paddle-inference"`` or ``"onnxruntime"`` (needs ``model.onnx``).
        device: ``"cpu"`` or ``"gpu"`` (Paddle Inference: a CUDA build; onnxruntime: the CUDA provider).
        threads: CPU threads (default: all cores).
        mkldnn: Use oneDNN on the CPU (Paddle Inference).
        trt_fp16: TensorRT FP16 on the GPU (Paddle Inference built with TensorRT); an error elsewhere.

    Attributes:
        preprocess: The folder's ``preprocess.json``.
        transform: PIL image -> ``float32 [C, H, W]``, the recorded eval transform.
    """

    def __init__(self, model_dir, backend="paddle-inference", device="cpu", threads=None, mkldnn=True,
                 trt_fp16=False):
        if backend not in BACKENDS:
            raise UserError(f"unknown backend {backend!r}", f"use one of {', '.join(BACKENDS)}")
        self.model_dir = os.fspath(model_dir)
        self.preprocess = load_preprocess(self.model_dir)
        _, size, _ = self.preprocess["input_size"]
        self.transform = EvalTransform(size, self.preprocess["crop_pct"], self.preprocess["interpolation"],
                                       self.preprocess["mean"], self.preprocess["std"])
        self.backend = backend
        threads = threads or os.cpu_count() or 1
        if backend == "onnxruntime":
            self._run = self._onnx(device, threads)
        else:
            self._run = self._paddle(device, threads, mkldnn, trt_fp16)

    def _paddle(self, device, threads, mkldnn, trt_fp16):
        return paddle_predictor(os.path.join(self.model_dir, "model"), device, threads, mkldnn, trt_fp16)

    def _onnx(self, device, threads):
        path = os.path.join(self.model_dir, "model.onnx")
        if not os.path.exists(path):
            raise UserError(f"{path} not found", "export with scripts/export_model.py --onnx")
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("--backend onnxruntime needs onnxruntime", "pip install onnxruntime") from None
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # errors only
        opts.intra_op_num_threads = threads
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "gpu" else ["CPUExecutionProvider"]
        if device == "gpu" and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise UserError("onnxruntime has no CUDA provider", "pip install onnxruntime-gpu, or use --device cpu")
        sess = ort.InferenceSession(path, opts, providers=providers)
        name = sess.get_inputs()[0].name
        return lambda x: sess.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]

    def __call__(self, batch):
        """``float32 [B, C, H, W]`` preprocessed images -> logits ``[B, num_classes]``."""
        return self._run(batch)

    def load(self, path):
        """One image file -> the preprocessed ``[C, H, W]`` array (``BadImageError`` naming the file)."""
        return self.transform(open_image(path))
