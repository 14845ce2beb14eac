"""Time op formulations against each other at the shapes the models use (CPU, eager).

    python scripts/benchmark_ops.py --threads 2 --reps 5
    python scripts/benchmark_ops.py --op dwconv gelu --backward

Each op has a reference formulation (what the models ran before) and
candidates that compute the same numbers to float rounding; the script prints,
per shape, every formulation's median milliseconds per call with the range
over ``--reps`` interleaved repetitions (A, B, C, A, B, C, ...), and the
largest absolute difference of its output from the reference. With
``--backward`` each call is a forward and a backward pass. It prints figures
and asserts nothing; ``docs/performance.md`` ("Op work") records the results.
"""
import argparse
import time

import numpy as np

from paddle_vits.utils.argtypes import int_at_least

B = 16
DWCONV_SHAPES = [(56, 512), (28, 1024), (14, 1280), (7, 1792)]  # Wave-ViT-S MLP: (side, hidden width)
GELU_SHAPES = [(B, 196, 768), (B, 3136, 512)]  # CaiT-XXS MLP; Wave-ViT-S stage 1 MLP
TALKING_SHAPES = [(B, 196, 4, 48)]  # CaiT-XXS: (batch, tokens, heads, head width)
ATTEND_SHAPES = [(B, 49 * 64, 2, 32, 49), (B, 49 * 16, 4, 32, 49), (B, 197, 4, 48, 197)]  # CrossFormer-T, CaiT


def dwconv_cases(paddle, F):
    """Wave-ViT's ``DWConv``: ``[B, N, C]`` tokens -> 3x3 depthwise conv -> ``[B, N, C]``."""
    for side, c in DWCONV_SHAPES:
        x = paddle.randn([B, side * side, c])
        w = paddle.randn([c, 1, 3, 3]) * 0.3
        b = paddle.randn([c])

        def nchw(x=x, w=w, b=b, side=side):
            n, c = x.shape[1:]
            y = x.transpose([0, 2, 1]).reshape([B, c, side, side])  # [B, N, C] -> [B, C, H, W]
            return F.conv2d(y, w, b, padding=1, groups=c).flatten(2).transpose([0, 2, 1])  # -> [B, N, C]

        def nhwc(x=x, w=w, b=b, side=side):
            c = x.shape[2]
            y = x.reshape([B, side, side, c])  # [B, N, C] -> [B, H, W, C]
            return F.conv2d(y, w, b, padding=1, groups=c, data_format="NHWC").reshape([B, -1, c])  # -> [B, N, C]

        def shift_add(x=x, w=w, b=b, side=side):
            c = x.shape[2]
            xp = F.pad(x.reshape([B, side, side, c]), [1, 1, 1, 1], data_format="NHWC")  # [B, H+2, W+2, C]
            taps = w.reshape([c, 9]).T  # [C, 1, 3, 3] -> [9, C]
            out = b
            for i in range(3):
                for j in range(3):
                    out = out + xp[:, i:i + side, j:j + side] * taps[3 * i + j]
            return out.reshape([B, -1, c])  # [B, H, W, C] -> [B, N, C]

        yield f"[{B}, {side}x{side}, {c}]", [x, w, b], {"conv2d NCHW (before)": nchw, "conv2d NHWC": nhwc,
                                                      "shift-and-add NHWC": shift_add}


def gelu_cases(paddle, F):
    """Exact (erf) GELU."""
    for shape in GELU_SHAPES:
        x = paddle.randn(list(shape))

        def composed(x=x):
            return x * (0.5 * (1.0 + paddle.erf(x * 0.7071067811865476)))

        yield str(list(shape)), [x], {"F.gelu (before)": lambda x=x: F.gelu(x), "0.5x(1+erf(x/sqrt2))": composed}


def talking_heads_cases(paddle, F):
    """CaiT's head mixing ``proj_l``: ``nn.Linear(H, H)`` over the head axis of ``[B, H, N, N]`` logits."""
    for b, n, h, _ in TALKING_SHAPES:
        attn = paddle.randn([b, h, n, n])
        w = paddle.randn([h, h])
        bias = paddle.randn([h])

        def linear(attn=attn, w=w, bias=bias):
            return F.linear(attn.transpose([0, 2, 3, 1]), w, bias).transpose([0, 3, 1, 2])  # heads last and back

        def matmul(attn=attn, w=w, bias=bias):
            from paddle_vits.models.cait import mix_heads

            return mix_heads(attn, w, bias)

        yield f"[{b}, {h}, {n}, {n}]", [attn, w, bias], {"Linear on [B,N,N,H] (before)": linear,
                                                         "W^T @ [B,H,N*N]": matmul}


def attend_cases(paddle, F):
    """The explicit path of :func:`paddle_vits.layers.attend`, ``[B, N, H, D]`` in and out."""
    from paddle_vits.layers import attention

    for b, nq, h, d, nk in ATTEND_SHAPES:
        q = paddle.randn([b if nq == nk else b * nq // nk, nk, h, d])
        k, v = paddle.randn(q.shape), paddle.randn(q.shape)
        drop = paddle.nn.Dropout(0.0)
        scale = d ** -0.5

        def before(q=q, k=k, v=v, drop=drop, scale=scale):
            q, k, v = (t.transpose([0, 2, 1, 3]) for t in (q, k, v))  # [B, N, H, D] -> [B, H, N, D]
            attn = F.softmax((q * scale) @ k.transpose([0, 1, 3, 2]), axis=-1)  # [B, H, Nq, Nk]
            return (drop(attn) @ v).transpose([0, 2, 1, 3])  # [B, H, Nq, D] -> [B, Nq, H, D]

        def after(q=q, k=k, v=v, drop=drop, scale=scale):
            return attention.attend(q, k, v, scale, drop, fused=False)

        def einsum(q=q, k=k, v=v, drop=drop, scale=scale):
            attn = F.softmax(paddle.einsum("bnhd,bmhd->bhnm", q * scale, k), axis=-1)  # [B, H, Nq, Nk]
            return paddle.einsum("bhnm,bmhd->bnhd", drop(attn), v)

        yield f"q,k,v {list(q.shape)}", [q, k, v], {"4-D views (before)": before, "attend: 3-D matmul": after,
                                                  "einsum": einsum}


def linear_cases(paddle, F):
    """``nn.Linear`` on ``[B, N, C]`` tokens (CaiT-XXS qkv and fc1)."""
    for n, cin, cout in [(197, 192, 576), (197, 192, 768), (3136, 64, 512)]:
        x = paddle.randn([B, n, cin])
        w = paddle.randn([cin, cout]) * 0.05
        bias = paddle.randn([cout])

        def flat(x=x, w=w, bias=bias):
            return F.linear(x.reshape([-1, x.shape[-1]]), w, bias).reshape([B, x.shape[1], -1])  # 2-D product

        def matmul_add(x=x, w=w, bias=bias):
            return paddle.matmul(x, w) + bias

        yield f"[{B}, {n}, {cin}] x [{cin}, {cout}]", [x, w, bias], {
            "F.linear 3-D (before)": lambda x=x, w=w, bias=bias: F.linear(x, w, bias),
            "F.linear on [B*N, C]": flat, "matmul + add": matmul_add}


OPS = {"dwconv": dwconv_cases, "gelu": gelu_cases, "talking_heads": talking_heads_cases, "attend": attend_cases,
       "linear": linear_cases}


def time_call(fn, inputs, backward, n):
    """Milliseconds per call of ``fn`` (with a backward pass when ``backward``), over ``n`` calls."""
    start = time.perf_counter()
    for _ in range(n):
        out = fn()
        if backward:
            out.sum().backward()
            for t in inputs:
                t.clear_gradient()
    return (time.perf_counter() - start) / n * 1e3


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--op", nargs="+", choices=sorted(OPS), default=sorted(OPS))
    p.add_argument("--threads", type=int_at_least(1), default=2)
    p.add_argument("--reps", type=int_at_least(1), default=5, help="interleaved repetitions (median and range)")
    p.add_argument("--calls", type=int_at_least(1), default=3, help="calls per repetition")
    p.add_argument("--backward", action="store_true", help="time forward + backward")
    args = p.parse_args(argv)

    import paddle
    import paddle.nn.functional as F

    from paddle_vits.utils import set_num_threads

    threads = set_num_threads(args.threads)
    print(f"Paddle {paddle.__version__}, {threads} threads, {'forward + backward' if args.backward else 'forward'}")
    for op in args.op:
        for shape, inputs, variants in OPS[op](paddle, F):
            for t in inputs:
                t.stop_gradient = not args.backward
            ref = None
            for name, fn in variants.items():
                out = fn().numpy()
                ref = out if ref is None else ref
                variants[name] = (fn, float(np.abs(out - ref).max()))
                time_call(fn, inputs, args.backward, 1)  # warm-up
            times = {name: [] for name in variants}
            for _ in range(args.reps):
                for name, (fn, _) in variants.items():
                    times[name].append(time_call(fn, inputs, args.backward, args.calls))
            for name, (_, diff) in variants.items():
                ts = times[name]
                print(f"{op:14s} {shape:28s} {name:30s} {np.median(ts):9.2f} ms "
                      f"({min(ts):.2f}-{max(ts):.2f})  max|diff| {diff:.1e}")


if __name__ == "__main__":
    main()
