"""Benchmark a model: parameters, GMACs, inference and training throughput, peak memory.

    python scripts/benchmark.py --model cait_xxs_24 --batch-size 32 --threads 8
    python scripts/benchmark.py --model cait_s_24 --device gpu --amp --batch-size 128

MACs come from :func:`paddle_vits.utils.flops.count_macs` (every linear, conv,
matmul and attention product executed in one forward pass, batch 1). Throughput
is timed after ``--warmup`` untimed steps. Peak memory is the GPU allocator's
peak (``paddle.device.cuda.max_memory_allocated``) or, on CPU, the process's
peak resident set size. It prints figures and asserts nothing.

``--compare-torch`` times the PyTorch twin (timm's CaiT/CrossViT; torch and
timm installed) with the same weights, taking turns with Paddle for
``--rounds`` rounds, and prints both, the ratio (Paddle images/s over
PyTorch's, median and range) and the CPU time other processes used while
timing (see :mod:`paddle_vits.utils.torch_twin`)::

    python scripts/benchmark.py --model cait_xxs_24 --batch-size 16 --threads 2 --compare-torch
"""
import argparse
import functools
import sys
import time

from paddle_vits.utils.argtypes import int_at_least
from paddle_vits.utils.cli import UserError, add_common_args, run


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="registered model name or alias")
    p.add_argument("--batch-size", type=int_at_least(1), default=32)
    p.add_argument("--img-size", type=int_at_least(1), default=None, help="input side (default: the model's)")
    p.add_argument("--threads", type=int_at_least(1), default=None, help="CPU threads (default: all cores)")
    p.add_argument("--steps", type=int_at_least(1), default=10, help="timed steps per measurement")
    p.add_argument("--warmup", type=int_at_least(0), default=2, help="untimed steps first")
    p.add_argument("--device", choices=("cpu", "gpu"), default=None, help="default: gpu when Paddle has one")
    p.add_argument("--amp", action="store_true", help="float16 autocast (GPU)")
    p.add_argument("--no-train", action="store_true", help="skip the training-step measurement")
    p.add_argument("--compare-torch", action="store_true",
                   help="time the PyTorch twin too (needs torch + timm), interleaved, same weights")
    p.add_argument("--rounds", type=int_at_least(1), default=3, help="interleaved rounds with --compare-torch")
    p.add_argument("--backend", nargs="+", choices=BACKENDS, default=["eager"],
                   help="with paddle-inference/onnxruntime: export the model (checked) to a temporary folder and "
                        "time each backend on the same input, images/s and latency percentiles side by side")
    add_common_args(p)
    return p.parse_args(argv)


BACKENDS = ("eager", "paddle-inference", "onnxruntime")


def compare_backends(model, size, args, threads, gpu):
    """Time ``args.backend`` on one input batch: images/s and per-batch latency percentiles."""
    import tempfile

    import numpy as np
    import paddle

    from paddle_vits.export import check_input_batch, export
    from paddle_vits.inference import Predictor

    x = check_input_batch(size, batch=args.batch_size, seed=0)
    model.eval()
    runners = {}
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        needs_onnx = "onnxruntime" in args.backend
        if any(b != "eager" for b in args.backend):
            export(model, tmp, formats=("paddle", "onnx") if needs_onnx else ("paddle",), img_size=size, log=None)
        for backend in args.backend:
            if backend == "eager":
                xt = paddle.to_tensor(x)

                def eager(xt=xt):
                    with paddle.no_grad():
                        return model(xt).numpy()

                runners[backend] = eager
            else:
                try:
                    pred = Predictor(tmp, backend=backend, device="gpu" if gpu else "cpu", threads=threads)
                except UserError as e:
                    print(f"{backend:18s} not measured: {e}")
                    continue
                runners[backend] = functools.partial(pred, x)
        print(f"{'backend':18s} {'images/s':>10s} {'p50 ms':>9s} {'p90 ms':>9s} {'p99 ms':>9s}  "
              f"(batch {args.batch_size}, {args.steps} timed runs after {args.warmup})")
        ref = None
        for backend, fn in runners.items():
            for _ in range(args.warmup):
                fn()
            times = []
            for _ in range(args.steps):
                start = time.perf_counter()
                out = fn()
                times.append(time.perf_counter() - start)
            ref = out if ref is None else ref
            p50, p90, p99 = np.percentile(np.array(times) * 1000, [50, 90, 99])
            print(f"{backend:18s} {args.batch_size / np.mean(times):10.1f} {p50:9.1f} {p90:9.1f} {p99:9.1f}  "
                  f"max |diff| to {next(iter(runners))}: {np.abs(out - ref).max():.2g}")
    return 0


def _sync(paddle, gpu):
    if gpu:
        paddle.device.cuda.synchronize()


def _timed(fn, steps, warmup, sync):
    for _ in range(warmup):
        fn()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    sync()
    return (time.perf_counter() - start) / steps


def _peak_rss_mib():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main(argv=None):
    args = parse_args(argv)
    import paddle

    from paddle_vits import create_model, get_model_info
    from paddle_vits.utils import set_num_threads
    from paddle_vits.utils.device import select_device
    from paddle_vits.utils.flops import count_macs

    threads = set_num_threads(args.threads)
    threads = paddle.base.core.get_num_threads() if hasattr(paddle.base.core, "get_num_threads") else threads
    gpu = select_device(args.device) == "gpu"
    try:
        info = get_model_info(args.model)
        size = args.img_size or info.img_size
        kwargs = {} if size == info.img_size else dict(img_size=size)
        model = create_model(info.name, **kwargs)
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(str(e).strip("'\""), "see scripts/list_models.py; check --img-size") from None
    n_params = sum(int(p.numel()) for p in model.parameters())
    macs = count_macs(model, input_size=(3, size, size))
    sync = functools.partial(_sync, paddle, gpu)
    bs = args.batch_size
    print(f"model      {info.name} @ {size}x{size}, batch {bs}, {'gpu' if gpu else f'cpu ({threads} threads)'}"
          f"{', amp' if args.amp else ''}")
    print(f"params     {n_params:,} ({n_params / 1e6:.3f} M)")
    print(f"GMACs      {macs.gmacs:.3f} ({macs.macs:,} MACs per image; "
          + ", ".join(f"{k} {v / 1e9:.3f}" for k, v in sorted(macs.by_op.items())) + ")")

    if args.compare_torch:
        return compare_torch(args, paddle, model, info, size, threads)
    if args.backend != ["eager"]:
        return compare_backends(model, size, args, threads, gpu)
    x = paddle.randn([bs, 3, size, size], dtype="float32")
    model.eval()

    def infer():
        with paddle.no_grad(), paddle.amp.auto_cast(enable=args.amp):
            model(x)

    t = _timed(infer, args.steps, args.warmup, sync)
    print(f"inference  {bs / t:.1f} images/s ({t * 1000:.1f} ms/batch)")

    if not args.no_train:
        model.train()
        y = paddle.randint(0, model.num_classes, [bs])
        opt = paddle.optimizer.AdamW(learning_rate=1e-4, parameters=model.parameters())
        scaler = paddle.amp.GradScaler(enable=args.amp)

        def train_step():
            with paddle.amp.auto_cast(enable=args.amp):
                loss = paddle.nn.functional.cross_entropy(model(x), y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            opt.clear_grad()

        t = _timed(train_step, args.steps, args.warmup, sync)
        print(f"training   {bs / t:.1f} images/s ({t * 1000:.1f} ms/step, AdamW)")
    if gpu:
        peak = paddle.device.cuda.max_memory_allocated() / 2**20
        print(f"peak mem   {peak:.0f} MiB (GPU allocator)")
    else:
        print(f"peak mem   {_peak_rss_mib():.0f} MiB (process peak RSS)")
    return 0


def compare_torch(args, paddle, model, info, size, threads):
    """Paddle and its PyTorch twin, same weights, timed in turns; prints both and the ratio."""
    import os
    import statistics

    import numpy as np

    from paddle_vits.convert import convert_state_dict
    from paddle_vits.utils.torch_twin import Contention, TorchTwin, twin_available

    if args.device == "gpu" or args.amp:
        raise UserError("--compare-torch times CPU fp32 only", "drop --device gpu / --amp")
    if not twin_available(info.name):
        raise UserError(f"no PyTorch twin for {info.name} (or torch/timm are not installed)",
                        "install torch and timm; twins exist for CaiT and CrossViT")
    bs = args.batch_size
    kwargs = {} if size == info.img_size else dict(img_size=size)
    twin = TorchTwin(info.name, model.num_classes, size, bs, threads, kwargs)
    try:
        sd, _ = convert_state_dict(twin.state_dict, model)
        model.set_state_dict(sd)
        model.eval()
        with paddle.no_grad():
            diff = float(np.abs(model(paddle.to_tensor(twin.probe)).numpy() - twin.logits).max())
        print(f"twin       torch {twin.info['torch']} + timm {twin.info['timm']}, {twin.info['threads']} threads; "
              f"same weights: max |logit diff| {diff:.2e}")
        x = paddle.randn([bs, 3, size, size], dtype="float32")
        y = paddle.randint(0, model.num_classes, [bs])
        opt = paddle.optimizer.AdamW(learning_rate=1e-4, parameters=model.parameters())

        def infer():
            with paddle.no_grad():
                model(x)

        def train_step():
            paddle.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            opt.clear_grad()

        pids = [os.getpid(), twin.proc.pid]
        for mode, fn in (("infer", infer), ("train", train_step))[: 1 if args.no_train else 2]:
            model.train() if mode == "train" else model.eval()
            ratios, pd_ips, pt_ips, other = [], [], [], []
            for _ in range(args.rounds):
                time.sleep(0.3)  # let the other runtime's OpenMP threads stop spinning
                with Contention(pids) as c1:
                    t_pd = _timed(fn, args.steps, args.warmup, lambda: None)
                time.sleep(0.3)
                with Contention(pids) as c2:
                    t_pt = twin.time(mode, args.steps, args.warmup)
                pd_ips.append(bs / t_pd)
                pt_ips.append(bs / t_pt)
                ratios.append(pd_ips[-1] / pt_ips[-1])
                other.append((c1.other_cpu_s + c2.other_cpu_s) / (c1.wall + c2.wall))
            med = statistics.median
            print(f"{'inference' if mode == 'infer' else 'training':10s} paddle {med(pd_ips):.2f} img/s, "
                  f"torch {med(pt_ips):.2f} img/s, ratio {med(ratios):.2f} "
                  f"[{min(ratios):.2f}-{max(ratios):.2f}] over {args.rounds} rounds; "
                  f"other processes used {med(other):.2f} CPUs meanwhile")
        print(f"peak mem   paddle {_peak_rss_mib():.0f} MiB, torch {twin.peak_mib:.0f} MiB (process peak RSS; "
              f"each process builds one model)")
    finally:
        twin.close()
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
