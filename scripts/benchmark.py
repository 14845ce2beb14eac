"""Benchmark a model: parameters, GMACs, inference and training throughput, peak memory.

    python scripts/benchmark.py --model cait_xxs_24 --batch-size 32 --threads 8
    python scripts/benchmark.py --model cait_s_24 --device gpu --amp --batch-size 128

MACs come from :func:`paddle_vits.utils.flops.count_macs` (every linear, conv,
matmul and attention product executed in one forward pass, batch 1). Throughput
is timed after ``--warmup`` untimed steps. Peak memory is the GPU allocator's
peak (``paddle.device.cuda.max_memory_allocated``) or, on CPU, the process's
peak resident set size. It prints figures and asserts nothing.

``--compare-torch`` times the PyTorch twin (timm's CaiT/CrossViT, or the
official Wave-ViT/CrossFormer code in the folder ``--torch-code``; torch and
timm installed) with the same weights, taking turns with Paddle for
``--rounds`` rounds, and prints both, the ratio (Paddle images/s over
PyTorch's, median and range), the CPU time other processes used while timing,
the cores each side kept busy, and each side's peak RSS during the training
rounds (see :mod:`paddle_vits.utils.torch_twin`)::

    python scripts/benchmark.py --model cait_xxs_24 --batch-size 16 --threads 2 --compare-torch
    python scripts/benchmark.py --model wavevit_s --batch-size 16 --threads 2 --compare-torch \
        --torch-code /tmp/official

Under CPU contention, set ``OMP_WAIT_POLICY=PASSIVE`` for both sides: with
the default (spinning) wait, torch's OpenMP threads spin at every barrier
while a preempted sibling is off the CPU; measured on 2 busy cores, CaiT-XXS
b1 took 3.2-3.7 CPU s per image at 2 threads against 0.22-0.27 at 1 thread or
with the passive wait, so the ratio measures the spinning, not the kernels.

``--profile`` prints the top operators of ``--steps`` inference passes by CPU
time (``paddle.profiler``), and with ``--compare-torch`` torch.profiler's
table of the twin's (self CPU time), instead of the timing rounds.
"""
import argparse
import functools
import os
import sys
import time

from paddle_vits.utils.argtypes import int_at_least
from paddle_vits.utils.cli import UserError, add_common_args, run
from paddle_vits.utils.torch_twin import Contention


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
    p.add_argument("--torch-code", default=None, metavar="DIR",
                   help="with --compare-torch: folder of the official PyTorch code (Wave-ViT: wavevit.py + "
                        "torch_wavelets.py; CrossFormer: models/crossformer.py)")
    p.add_argument("--rounds", type=int_at_least(1), default=3, help="interleaved rounds with --compare-torch")
    p.add_argument("--profile", action="store_true",
                   help="profile inference instead of timing: top operators by CPU time (and the twin's)")
    p.add_argument("--profile-rows", type=int_at_least(1), default=15, help="operators shown by --profile")
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
    if args.profile:
        print_profile(args, model, x, paddle)
        return 0
    model.eval()

    def infer():
        with paddle.no_grad(), paddle.amp.auto_cast(enable=args.amp):
            model(x)

    with Contention([os.getpid()]) as c:
        t = _timed(infer, args.steps, args.warmup, sync)
    print(f"inference  {bs / t:.1f} images/s ({t * 1000:.1f} ms/batch; {c.threads[os.getpid()]} threads ran, "
          f"{c.cores[os.getpid()]:.2f} cores busy, other processes {c.other_cpu_s / c.wall:.2f} CPUs)")

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


def profile_ops(fn, steps, warmup, rows):
    """Top ``rows`` Paddle operators of ``steps`` calls of ``fn`` by CPU time (``paddle.profiler``).

    Returns ``(rows, total_ms)``: ``rows`` = ``[(op name, calls, CPU ms per call of fn)]``, sorted,
    and ``total_ms`` the CPU time of all operators per call (an operator's time includes the
    operators it runs inside it; the profiler's own cost is in it too).
    """
    from paddle import profiler
    from paddle.profiler.profiler_statistic import StatisticData

    for _ in range(warmup):
        fn()
    prof = profiler.Profiler(targets=[profiler.ProfilerTarget.CPU], on_trace_ready=lambda _: None)
    prof.start()
    for _ in range(steps):
        fn()
        prof.step()
    prof.stop()
    result = prof.profiler_result
    items = StatisticData(result.get_data(), result.get_extra_info()).event_summary.items.values()
    items = sorted(items, key=lambda it: it.cpu_time, reverse=True)
    per_call_ms = 1e-6 / steps  # the profiler counts nanoseconds
    table = [(it.name.replace(" dygraph", ""), it.call // steps, it.cpu_time * per_call_ms) for it in items[:rows]]
    return table, sum(it.cpu_time for it in items) * per_call_ms


def print_profile(args, model, x, paddle, twin=None):
    """``--profile``: the operator table of Paddle inference (and the twin's torch.profiler table)."""
    def infer():
        with paddle.no_grad():
            model(x)

    model.eval()
    table, total = profile_ops(infer, args.steps, args.warmup, args.profile_rows)
    print(f"paddle.profiler, inference batch {args.batch_size}, per forward pass ({args.steps} profiled): "
          f"all operators {total:.2f} ms CPU")
    print(f"  {'op':32s} {'calls':>6s} {'CPU ms':>9s} {'share':>6s}")
    for name, calls, ms in table:
        print(f"  {name:32s} {calls:6d} {ms:9.2f} {100 * ms / total:5.1f}%")
    if twin is not None:
        print(f"torch.profiler, the twin, inference batch {args.batch_size}, {args.steps} passes (totals over them):")
        print(twin.profile(args.steps, args.warmup, rows=args.profile_rows))


def compare_torch(args, paddle, model, info, size, threads):
    """Paddle and its PyTorch twin, same weights, timed in turns; prints both and the ratio."""
    import statistics

    import numpy as np

    from paddle_vits.convert import convert_state_dict
    from paddle_vits.utils.torch_twin import TorchTwin, peak_rss_mib, reset_peak_rss, twin_available, twin_source

    if args.device == "gpu" or args.amp:
        raise UserError("--compare-torch times CPU fp32 only", "drop --device gpu / --amp")
    if args.torch_code is not None and not os.path.isdir(args.torch_code):
        raise UserError(f"--torch-code {args.torch_code}: no such folder", "give the official code's folder")
    if not twin_available(info.name, args.torch_code):
        found = twin_source(info.name, args.torch_code)
        raise UserError(f"no PyTorch twin for {info.name}" + (" (torch/timm are not installed)" if found else ""),
                        "install torch and timm; twins: CaiT and CrossViT (timm), Wave-ViT and CrossFormer "
                        "(--torch-code DIR with the official wavevit.py + torch_wavelets.py or models/crossformer.py)")
    bs = args.batch_size
    kwargs = {} if size == info.img_size else dict(img_size=size)
    twin = TorchTwin(info.name, model.num_classes, size, bs, threads, kwargs, torch_code=args.torch_code)
    try:
        sd, _ = convert_state_dict(twin.state_dict, model)
        model.set_state_dict(sd)
        del sd
        twin.state_dict = None  # only the logits and the probe are needed from here on
        model.eval()
        with paddle.no_grad():
            diff = float(np.abs(model(paddle.to_tensor(twin.probe)).numpy() - twin.logits).max())
        print(f"twin       torch {twin.info['torch']} ({twin.info['source']}), {twin.info['threads']} threads; "
              f"same weights: max |logit diff| {diff:.2e} (max |logit| {float(np.abs(twin.logits).max()):.2f}); "
              f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')} (both)")
        x = paddle.randn([bs, 3, size, size], dtype="float32")
        if args.profile:
            print_profile(args, model, x, paddle, twin)
            return 0
        y = paddle.randint(0, model.num_classes, [bs])
        opt = paddle.optimizer.AdamW(learning_rate=1e-4, parameters=model.parameters())

        def infer():
            with paddle.no_grad():
                model(x)

        def train_step():
            paddle.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            opt.clear_grad()

        me, child = os.getpid(), twin.proc.pid
        for mode, fn in (("infer", infer), ("train", train_step))[: 1 if args.no_train else 2]:
            model.train() if mode == "train" else model.eval()
            if mode == "train":  # the peak RSS of the training rounds alone, not of loading and converting
                rss_pd, (reset_pt, rss_pt) = peak_rss_mib(), twin.reset_peak()
                reset_pd = reset_peak_rss()
            ratios, pd_ips, pt_ips, other, cores_pd, cores_pt, threads_pd, threads_pt = ([] for _ in range(8))
            for _ in range(args.rounds):
                time.sleep(0.3)  # let the other runtime's OpenMP threads stop spinning
                with Contention([me, child]) as c1:
                    t_pd = _timed(fn, args.steps, args.warmup, lambda: None)
                time.sleep(0.3)
                with Contention([me, child]) as c2:
                    t_pt = twin.time(mode, args.steps, args.warmup)
                pd_ips.append(bs / t_pd)
                pt_ips.append(bs / t_pt)
                ratios.append(pd_ips[-1] / pt_ips[-1])
                other.append((c1.other_cpu_s + c2.other_cpu_s) / (c1.wall + c2.wall))
                cores_pd.append(c1.cores[me])
                cores_pt.append(c2.cores[child])
                threads_pd.append(c1.threads[me])
                threads_pt.append(c2.threads[child])
            med = statistics.median
            print(f"{'inference' if mode == 'infer' else 'training':10s} paddle {med(pd_ips):.2f} img/s "
                  f"[{min(pd_ips):.2f}-{max(pd_ips):.2f}], torch {med(pt_ips):.2f} img/s "
                  f"[{min(pt_ips):.2f}-{max(pt_ips):.2f}], ratio {med(ratios):.2f} "
                  f"[{min(ratios):.2f}-{max(ratios):.2f}] over {args.rounds} rounds; "
                  f"other processes used {med(other):.2f} CPUs [{min(other):.2f}-{max(other):.2f}] meanwhile; "
                  f"busy cores paddle {med(cores_pd):.2f}, torch {med(cores_pt):.2f}; threads that ran paddle "
                  f"{max(threads_pd)}, torch {max(threads_pt)} (asked {threads})")
            if mode == "train":
                how = "since a reset before training" if reset_pd and reset_pt else "process lifetime"
                print(f"peak mem   training batch {bs}: paddle {peak_rss_mib():.0f} MiB, torch {twin.peak_mib:.0f} MiB "
                      f"(peak RSS {how}; RSS before training: paddle {rss_pd:.0f}, torch {rss_pt:.0f} MiB)")
    finally:
        twin.close()
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
