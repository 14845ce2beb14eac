"""Benchmark Haar DWT/IDWT implementations (forward + backward) on the CPU.

    python scripts/benchmark_wavelets.py --threads 2
    python scripts/benchmark_wavelets.py --shape 8 64 56 56 --repeats 7 --iters 20

Variants (all exact; checked against ``DWT2D(channel_order="blocked")``
before timing, the interleaved ones after reordering):

* ``notebook PyLayer``: the Paddle Wave-ViT notebook's design, re-implemented:
  four grouped convolutions forward; backward through a 5-D transpose and a
  grouped ``conv2d_transpose`` with per-channel repeated filters;
* ``autograd: 4 grouped convs``: the same forward under plain autograd;
* ``autograd: dense block-diagonal conv``: one convolution with a ``[4C, C, 2, 2]`` filter;
* ``autograd: 1 grouped conv (interleaved)``: stacked filters, interleaved channel order;
* ``autograd: slicing arithmetic``: ``x[..., ::2, ::2]`` sums and differences;
* ``DWT2D blocked`` / ``DWT2D interleaved``: this library's PyLayer layers.

The IDWT section times the notebook's IDWT PyLayer against ``IDWT2D``.
Reports the median over ``--repeats`` rounds of the mean of ``--iters`` calls, in ms.
"""
import argparse
import os
import sys
import time

import numpy as np

from paddle_vits.utils.argtypes import int_at_least
from paddle_vits.utils.cli import UserError, add_common_args, run


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", type=int_at_least(1), nargs=4, default=(8, 64, 56, 56), metavar=("B", "C", "H", "W"),
                   help="DWT input shape")
    p.add_argument("--threads", type=int_at_least(1), default=2,
                   help="CPU threads (set explicitly: import paddle pins 1)")
    p.add_argument("--repeats", type=int_at_least(1), default=7, help="timing rounds (the median is reported)")
    p.add_argument("--iters", type=int_at_least(1), default=20, help="calls per round")
    add_common_args(p)
    return p.parse_args(argv)


def build_variants(C):
    import paddle
    import paddle.nn.functional as F
    from paddle.autograd import PyLayer

    from paddle_vits.layers import DWT2D, IDWT2D
    from paddle_vits.layers.wavelets import dwt_filters, idwt_filters

    dec = paddle.to_tensor(dwt_filters("haar").astype(np.float32)[:, None])  # [4, 1, 2, 2]
    rec = paddle.to_tensor(idwt_filters("haar").astype(np.float32)[:, None])  # [4, 1, 2, 2]

    class NotebookDWT(PyLayer):
        @staticmethod
        def forward(ctx, x, w_ll, w_lh, w_hl, w_hh):
            ctx.save_for_backward(w_ll, w_lh, w_hl, w_hh)
            ctx.shape = x.shape
            dim = x.shape[1]
            bands = [F.conv2d(x, w.expand([dim, -1, -1, -1]), stride=2, groups=dim) for w in (w_ll, w_lh, w_hl, w_hh)]
            return paddle.concat(bands, axis=1)

        @staticmethod
        def backward(ctx, dx):
            filters = paddle.concat(ctx.saved_tensor(), axis=0)
            B, C, H, W = ctx.shape
            dx = dx.reshape([B, 4, -1, H // 2, W // 2]).transpose([0, 2, 1, 3, 4])  # -> [B, C, 4, h, w]
            dx = dx.reshape([B, -1, H // 2, W // 2])  # [B, C, 4, h, w] -> [B, 4C, h, w]
            return F.conv2d_transpose(dx, filters.tile([C, 1, 1, 1]), stride=2, groups=C)

    class NotebookIDWT(PyLayer):
        @staticmethod
        def forward(ctx, x, filters):
            ctx.save_for_backward(filters)
            ctx.shape = x.shape
            B, _, H, W = x.shape
            x = x.reshape([B, 4, -1, H, W]).transpose([0, 2, 1, 3, 4])  # [B, 4C, H, W] -> [B, C, 4, H, W]
            C = x.shape[1]
            x = x.reshape([B, -1, H, W])  # [B, C, 4, H, W] -> [B, 4C, H, W]
            return F.conv2d_transpose(x, filters.tile([C, 1, 1, 1]), stride=2, groups=C)

        @staticmethod
        def backward(ctx, dx):
            (filters,) = ctx.saved_tensor()
            C = ctx.shape[1] // 4
            bands = [F.conv2d(dx, w.unsqueeze(0).expand([C, -1, -1, -1]), stride=2, groups=C)
                     for w in paddle.unbind(filters, axis=0)]
            return paddle.concat(bands, axis=1)

    w4 = [dec[s:s + 1] for s in range(4)]  # 4 x [1, 1, 2, 2]
    tiled = [w.tile([C, 1, 1, 1]) for w in w4]
    dense = np.zeros((4 * C, C, 2, 2), np.float32)
    for s in range(4):
        dense[s * C + np.arange(C), np.arange(C)] = dec.numpy()[s, 0]
    dense = paddle.to_tensor(dense)
    inter = dec.tile([C, 1, 1, 1])

    def slicing(x):
        a, b = x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2]
        c, d = x[:, :, 1::2, 0::2], x[:, :, 1::2, 1::2]
        return paddle.concat([a + b + c + d, a + b - c - d, a - b + c - d, a - b - c + d], axis=1) * 0.5

    dwt_blocked, dwt_inter = DWT2D(channel_order="blocked"), DWT2D(channel_order="interleaved")
    dwt = [
        ("notebook PyLayer (4 grouped convs, conv2d_transpose bwd)", True, lambda x: NotebookDWT.apply(x, *w4)),
        ("autograd: 4 grouped convs", True,
         lambda x: paddle.concat([F.conv2d(x, w, stride=2, groups=C) for w in tiled], axis=1)),
        ("autograd: dense block-diagonal conv", True, lambda x: F.conv2d(x, dense, stride=2)),
        ("autograd: 1 grouped conv (interleaved)", False, lambda x: F.conv2d(x, inter, stride=2, groups=C)),
        ("autograd: slicing arithmetic", True, slicing),
        ("DWT2D blocked (PyLayer, official order)", True, dwt_blocked),
        ("DWT2D interleaved (PyLayer, used by WaveViT)", False, dwt_inter),
    ]
    idwt_blocked, idwt_inter = IDWT2D(channel_order="blocked"), IDWT2D(channel_order="interleaved")
    idwt = [
        ("notebook IDWT PyLayer", True, lambda y: NotebookIDWT.apply(y, rec)),
        ("IDWT2D blocked (PyLayer, official order)", True, idwt_blocked),
        ("IDWT2D interleaved (PyLayer, used by WaveViT)", False, idwt_inter),
    ]
    return dwt, idwt, dwt_blocked


def time_fwd_bwd(fn, x, g, repeats, iters):
    def step():
        x.clear_gradient()
        fn(x).backward(g)

    for _ in range(3):
        step()
    rounds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iters):
            step()
        rounds.append((time.perf_counter() - t0) / iters * 1e3)
    return float(np.median(rounds)), float(min(rounds)), float(max(rounds))


def main(argv=None):
    args = parse_args(argv)
    if args.shape[2] % 2 or args.shape[3] % 2:
        raise UserError(f"--shape {' '.join(map(str, args.shape))}: H and W must be even for a Haar DWT",
                        "use even sizes, e.g. 8 64 56 56")
    import paddle

    from paddle_vits.layers import interleave_permutation
    from paddle_vits.utils import set_num_threads

    threads = set_num_threads(args.threads)
    paddle.set_device("cpu")
    B, C, H, W = args.shape
    dwt, idwt, reference = build_variants(C)
    perm = paddle.to_tensor(interleave_permutation(C))
    inv = paddle.to_tensor(np.argsort(interleave_permutation(C)))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"paddle {paddle.__version__}, {threads} threads, load average {load:.2f}; "
          f"median [min-max] of {args.repeats} rounds x {args.iters} calls, forward + backward\n")

    for title, variants, shape in (("DWT", dwt, (B, C, H, W)), ("IDWT", idwt, (B, 4 * C, H // 2, W // 2))):
        x = paddle.randn(list(shape))  # DWT: an image; IDWT: sub-bands in blocked order
        with paddle.no_grad():
            ref = reference(x) if title == "DWT" else variants[0][2](x)
        g = paddle.randn(ref.shape)  # output gradient, blocked order
        print(f"{title} x {list(shape)}")
        base = None
        for name, blocked, fn in variants:
            # Interleaved variants see the same data reordered: DWT outputs, IDWT inputs.
            inp = x if (blocked or title == "DWT") else paddle.gather(x, perm, axis=1)
            inp = inp.detach()
            inp.stop_gradient = False
            with paddle.no_grad():
                out = fn(inp)
            if title == "DWT" and not blocked:
                out = paddle.gather(out, inv, axis=1)
            err = float((out - ref).abs().max())
            if err > 1e-5:
                print(f"error: {name}: differs from the reference by {err:.3g}", file=sys.stderr)
                return 1
            gi = g if (blocked or title == "IDWT") else paddle.gather(g, perm, axis=1)
            med, lo, hi = time_fwd_bwd(fn, inp, gi, args.repeats, args.iters)
            base = base or med
            print(f"  {name:<58s} {med:7.2f} ms  [{lo:.2f}-{hi:.2f}]  {base / med:4.1f}x")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
