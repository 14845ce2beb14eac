"""Measure post-training int8 quantisation (``paddle.quantization.PTQ``) on the CPU: accuracy and speed.

    python scripts/quantize.py                                   # cait_xxs_24 and crossformer_t, random weights
    python scripts/quantize.py --models cait_xxs_24 --weights cait_xxs_24.pth --threads 2 --repeats 7
    python scripts/quantize.py --models crossformer_t --img-size 64 --finetune-steps 60   # a labelled set

For each model: PTQ with a ``QuantConfig`` that puts 8-bit ``AbsmaxObserver``s on the activations
and weights of every ``nn.Linear`` and ``nn.Conv2D`` that runs, calibrated on ``--calib-batches`` batches of
generated images (:class:`paddle_vits.dense.ShapesDataset`, seed 0), then ``PTQ.convert``. It prints

* accuracy: on ``--eval-images`` other generated images (seed 1), the int8 model's top-1 agreement
  with the fp32 model, the share of fp32 top-1 classes in the int8 top-5, and the logit error
  (``|int8 - fp32| / |fp32|``, L2 over the set); with ``--finetune-steps N`` the model is first
  trained N steps to name the shape in single-shape images (3 classes), and the accuracy of both
  models on the held-out labelled images is printed too;
* speed (median and min-max of ``--repeats`` timed calls of one ``--batch-size`` batch, fp32 and
  int8 interleaved): eager fp32 against eager fake-quant (the converted model: quantise-dequantise
  ops around fp32 kernels), and Paddle Inference with oneDNN: the fp32 program against the
  converted program with ``enable_mkldnn_int8()``. Each exported program is first checked against
  the eager models; one that does not build or disagrees is reported with its error, not timed.

Random weights are the default (no checkpoint download here); ``--weights`` loads one.
Nothing here is part of the library API: see docs/performance.md, "int8", for the findings.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

from paddle_vits.utils.argtypes import int_at_least
from paddle_vits.utils.cli import UserError, add_common_args, run

SHAPE_LABELS = 3  # circle, rectangle, triangle


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["cait_xxs_24", "crossformer_t"], help="registered model names")
    p.add_argument("--weights", default=None, help="weights for a single --models entry (path, 'pretrained', tag)")
    p.add_argument("--img-size", type=int_at_least(1), default=None, help="input side (default: the model's)")
    p.add_argument("--batch-size", type=int_at_least(1), default=4, help="batch of the timed calls and the "
                                                                          "exported programs")
    p.add_argument("--calib-batches", type=int_at_least(1), default=4, help="calibration batches")
    p.add_argument("--eval-images", type=int_at_least(1), default=32, help="held-out images for the accuracy")
    p.add_argument("--finetune-steps", type=int_at_least(0), default=0,
                   help="first train this many steps on labelled shapes (3 classes), batch --batch-size")
    p.add_argument("--lr", type=float, default=5e-4, help="learning rate of --finetune-steps (AdamW)")
    p.add_argument("--repeats", type=int_at_least(1), default=5, help="timed calls per variant")
    p.add_argument("--threads", type=int_at_least(1), default=None, help="CPU threads (default: all cores)")
    p.add_argument("--no-inference", action="store_true", help="skip the Paddle Inference export and timing")
    add_common_args(p)
    args = p.parse_args(argv)
    if args.weights and len(args.models) != 1:
        raise UserError("--weights needs exactly one --models entry", "run the script once per model")
    return args


def quant_config(model, sample):
    """8-bit abs-max observers on the activations and weights of every Linear and Conv2D that ``model`` calls.

    Layers whose weights the model reads directly (CaiT's talking-heads ``proj_l``/``proj_w``, mixed by one
    matmul) never run their forward, so their observers would see nothing and ``PTQ.convert`` would fail:
    one forward of ``sample`` with hooks finds the layers that run. It runs, like the calibration, with
    gradients on: without them CrossFormer reuses its cached position-bias table in CPU inference and its
    bias MLP's layers would not run.
    """
    import paddle
    import paddle.nn as nn
    from paddle.quantization import QuantConfig
    from paddle.quantization.observers import AbsmaxObserver

    called = []
    hooks = [m.register_forward_post_hook(lambda layer, inp, out: called.append(layer))
             for m in model.sublayers() if type(m) in (nn.Linear, nn.Conv2D)]
    model(sample)
    for h in hooks:
        h.remove()
    cfg = QuantConfig(activation=None, weight=None)
    cfg.add_layer_config(list(dict.fromkeys(called)), activation=AbsmaxObserver(quant_bits=8),
                         weight=AbsmaxObserver(quant_bits=8))
    return cfg


def shape_labels(dataset, indices):
    """Images of single-shape items and their labels (0 circle, 1 rectangle, 2 triangle)."""
    import numpy as np

    images, masks = dataset.batch(indices)
    return images, np.array([int(m.max()) - 1 for m in masks], np.int64)  # max_shapes=1: one class per mask


def finetune(model, args, size):
    """Train ``model`` (3 outputs) on single-shape images; prints the first and last loss."""
    import paddle
    import paddle.nn.functional as F

    from paddle_vits.dense import ShapesDataset

    data = ShapesDataset(args.finetune_steps * args.batch_size, size, seed=10, max_shapes=1)
    opt = paddle.optimizer.AdamW(args.lr, parameters=model.parameters(), weight_decay=0.05)
    model.train()
    losses = []
    for step in range(args.finetune_steps):
        images, labels = shape_labels(data, range(step * args.batch_size, (step + 1) * args.batch_size))
        loss = F.cross_entropy(model(paddle.to_tensor(images)), paddle.to_tensor(labels))
        loss.backward()
        opt.step()
        opt.clear_grad()
        losses.append(float(loss))
    model.eval()
    print(f"  fine-tuned {args.finetune_steps} steps: loss {losses[0]:.3f} -> {losses[-1]:.3f}")


def logits_of(model, images, batch_size):
    import numpy as np
    import paddle

    with paddle.no_grad():
        return np.concatenate([model(paddle.to_tensor(images[i:i + batch_size])).numpy()
                               for i in range(0, len(images), batch_size)])


def rel_err(out, ref):
    import numpy as np

    return float(np.linalg.norm(out.astype(np.float64) - ref) / np.linalg.norm(ref))


def timed(fns, repeats):
    """Interleaved timings: ``{name: [seconds, ...]}`` after one warm-up call of each."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def fmt(ts):
    return f"{statistics.median(ts) * 1e3:8.1f} ms ({min(ts) * 1e3:.0f}-{max(ts) * 1e3:.0f})"


def predictor(prefix, threads, int8):
    """A Paddle Inference runner (oneDNN, :func:`paddle_vits.inference.paddle_predictor`) and a note;
    retried without ``constant_folding_pass`` if that fails.

    Returns:
        ``(run, note)``; ``run`` is None when no predictor could be built (the note says why).
    """
    from paddle_vits.inference import paddle_predictor

    errors = []
    for deleted in ((), ("constant_folding_pass",)):
        try:
            run_batch = paddle_predictor(prefix, threads=threads, int8=int8, delete=deleted)
        except UserError as e:
            errors.append(str(e))
            continue
        return run_batch, "" if not deleted else f"built without constant_folding_pass (with it: {errors[0][:120]})"
    return None, f"no predictor: {errors[0][:150]}; without constant_folding_pass: {errors[1][:150]}"


def measure(name, args, threads):
    import numpy as np
    import paddle
    from paddle.quantization import PTQ

    from paddle_vits import create_model, get_model_info
    from paddle_vits.dense import ShapesDataset
    from paddle_vits.hub import weights_file

    try:
        info = get_model_info(name)
    except (KeyError, ValueError) as e:
        raise UserError(str(e).strip("'\""), "see scripts/list_models.py") from None
    size = args.img_size or info.img_size
    weights = weights_file(info.name, args.weights) if args.weights else False
    kwargs = {"num_classes": SHAPE_LABELS} if args.finetune_steps else {}
    paddle.seed(0)
    try:
        model = create_model(info.name, pretrained=weights, img_size=size, **kwargs)
    except (TypeError, ValueError) as e:
        if isinstance(e, UserError):
            raise
        raise UserError(f"cannot build {info.name}: {e}", "check --img-size") from None
    print(f"{info.name}: {size}x{size}, {sum(int(p.size) for p in model.parameters()) / 1e6:.1f}M parameters, "
          f"{'weights ' + str(weights) if weights else 'random weights'}")
    if args.finetune_steps:
        finetune(model, args, size)
    model.eval()
    B = args.batch_size
    shapes = 1 if args.finetune_steps else 3
    calib = ShapesDataset(args.calib_batches * B, size, seed=0, max_shapes=shapes)
    held = ShapesDataset(args.eval_images, size, seed=1, max_shapes=shapes)
    ptq = PTQ(quant_config(model, paddle.to_tensor(calib.batch(range(B))[0])))
    observed = ptq.quantize(model, inplace=False)
    for i in range(args.calib_batches):  # gradients on: every observed layer runs (see quant_config)
        observed(paddle.to_tensor(calib.batch(range(i * B, (i + 1) * B))[0]))
    qmodel = ptq.convert(observed, inplace=False, remain_weight=True)

    images, labels = shape_labels(held, range(len(held))) if args.finetune_steps else \
        (held.batch(range(len(held)))[0], None)
    ref = logits_of(model, images, B).astype(np.float64)
    q = logits_of(qmodel, images, B)
    top5 = np.argsort(-q, axis=1)[:, :5]
    print(f"  accuracy ({len(images)} held-out images): top-1 agreement int8/fp32 "
          f"{np.mean(q.argmax(1) == ref.argmax(1)):.3f}, fp32 top-1 in int8 top-5 "
          f"{np.mean([r in t for r, t in zip(ref.argmax(1), top5)]):.3f}, logit error {rel_err(q, ref):.4f} "
          f"(max |diff| {np.abs(q - ref).max():.4f}, fp32 logit std {ref.std():.4f})")
    if labels is not None:
        print(f"  labelled accuracy: fp32 {np.mean(ref.argmax(1) == labels):.3f}, "
              f"int8 {np.mean(q.argmax(1) == labels):.3f}")

    x_np = images[:B] if len(images) >= B else np.repeat(images[:1], B, axis=0)
    x = paddle.to_tensor(x_np)
    with paddle.no_grad():
        eager = timed({"fp32": lambda: model(x).numpy(), "int8": lambda: qmodel(x).numpy()}, args.repeats)
    print(f"  eager, batch {B}, {threads} threads: fp32 {fmt(eager['fp32'])}  fake-quant int8 {fmt(eager['int8'])}"
          f"  speed-up x{statistics.median(eager['fp32']) / statistics.median(eager['int8']):.2f}")
    if args.no_inference:
        return
    inference(model, qmodel, x, args, threads)


def inference(model, qmodel, x, args, threads):
    """Export both models (fixed batch), check the programs and time the ones that agree."""
    import paddle

    B = int(x.shape[0])
    with paddle.no_grad():
        ref, qref = model(x).numpy(), qmodel(x).numpy()
    runs = {}
    with tempfile.TemporaryDirectory(prefix="quantize-") as tmp:
        for tag, layer in (("fp32", model), ("int8", qmodel)):
            if hasattr(layer, "set_export_mode"):  # the plain-op forms export() traces (CrossFormer, Wave-ViT)
                layer.set_export_mode(True)
            prefix = os.path.join(tmp, tag, "model")
            spec = [paddle.static.InputSpec([B, *x.shape[1:]], "float32", name="image")]  # the quantised
            # program has no dynamic batch: PTQ's quant format creates its scales with the input's shape
            paddle.jit.save(paddle.jit.to_static(layer, input_spec=spec, full_graph=True), prefix)
            loaded = paddle.jit.load(prefix)
            with paddle.no_grad():
                jit_err = rel_err(loaded(x).numpy(), qref if tag == "int8" else ref)
            run_batch, note = predictor(prefix, threads, int8=tag == "int8")
            line = f"  Paddle Inference {tag}: jit.load error vs eager {jit_err:.2e}"
            if run_batch is None:
                print(f"{line}; {note}")
                continue
            out = run_batch(x.numpy())
            line += f"; predictor error vs eager fp32 {rel_err(out, ref):.2e}"
            if tag == "int8":
                line += f", vs eager fake-quant {rel_err(out, qref):.2e}"
            print(line + (f" ({note})" if note else ""))
            runs[tag] = lambda run_batch=run_batch: run_batch(x.numpy())
        if len(runs) == 2:
            times = timed(runs, args.repeats)
            print(f"  Paddle Inference oneDNN, batch {B}, {threads} threads: fp32 {fmt(times['fp32'])}  "
                  f"int8 {fmt(times['int8'])}  speed-up "
                  f"x{statistics.median(times['fp32']) / statistics.median(times['int8']):.2f}")


def main(argv=None):
    args = parse_args(argv)
    import paddle

    from paddle_vits.utils import set_num_threads

    threads = set_num_threads(args.threads)
    paddle.set_device("cpu")
    print(f"Paddle {paddle.__version__}, CPU, {threads} threads, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    for name in args.models:
        measure(name, args, threads)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
