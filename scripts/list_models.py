"""List the registered models with their size, eval preprocessing and paper top-1.

    python scripts/list_models.py             # every model
    python scripts/list_models.py 'cait_*'    # shell-style pattern (names and aliases)
    python scripts/list_models.py --markdown  # README's model table, GMACs included
    python scripts/list_models.py --weights-markdown  # README's weights table (every released checkpoint)

``--markdown`` generates README's "Models" table as it stands: it builds every
listed model and counts its GMACs at the default input with
``paddle_vits.utils.flops.count_macs`` (a few minutes for all models on a CPU).
"""
import argparse
import fnmatch
import sys

from paddle_vits.utils.argtypes import int_at_least
from paddle_vits.utils.cli import add_common_args, run


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pattern", nargs="?", default=None, help="shell-style pattern, e.g. 'cait_*_384'")
    p.add_argument("--markdown", action="store_true", help="print README's markdown table (counts GMACs)")
    p.add_argument("--threads", type=int_at_least(1), default=None,
                   help="CPU threads for counting GMACs (default: all cores)")
    p.add_argument("--weights-markdown", action="store_true",
                   help="print README's markdown table of released weights (model, tag, sources, size, top-1)")
    add_common_args(p)
    return p.parse_args(argv)


def gmacs(name):
    """GMACs of one forward pass at the model's default input (``count_macs``)."""
    import paddle

    from paddle_vits import create_model
    from paddle_vits.utils.flops import count_macs

    paddle.seed(0)
    return count_macs(create_model(name)).gmacs


def rows(pattern=None, with_gmacs=False):
    """One row per model whose name or an alias matches ``pattern``."""
    from paddle_vits import get_model_info, list_models

    out = []
    for name in list_models():
        info = get_model_info(name)
        if pattern and not any(fnmatch.fnmatch(n, pattern) for n in (name,) + info.aliases):
            continue
        out.append(dict(
            name=name,
            aliases=", ".join(info.aliases) or "-",
            params=f"{info.num_params / 1e6:.2f}M" if info.num_params else "-",
            input=f"{info.input_size[1]}x{info.input_size[2]}",
            crop=f"{info.crop_pct:g}",
            interp=info.interpolation,
            top1=f"{info.top1:.1f}" if info.top1 is not None else "-",
        ))
        if with_gmacs:
            g = gmacs(name)
            out[-1]["gmacs"] = f"{g:.2f}" if g >= 0.01 else f"{g:.3g}"
    return out


MARKDOWN = dict(name="name", aliases="timm / official alias", params="params", side="input", crop="crop",
                interp="interp.", gmacs="GMACs", top1="top-1 (%)")


def main(argv=None):
    args = parse_args(argv)
    if args.weights_markdown:
        from paddle_vits.hub import weights_markdown

        print(weights_markdown(), end="")
        return 0
    if args.markdown:
        from paddle_vits.utils import set_num_threads

        set_num_threads(args.threads)
    table = rows(args.pattern, with_gmacs=args.markdown)
    if not table:
        print(f"no model matches {args.pattern!r}; run without a pattern to see all", file=sys.stderr)
        return 1
    header = dict(name="name", aliases="aliases", params="params", input="input", crop="crop",
                  interp="interpolation", top1="top-1 (%)")
    if args.markdown:
        print("| " + " | ".join(MARKDOWN.values()) + " |")
        print("|" + "---|" * len(MARKDOWN))
        for r in table:
            r["side"] = r["input"].split("x")[-1]
            print("| " + " | ".join(r[k] for k in MARKDOWN) + " |", flush=True)
        return 0
    widths = {k: max(len(header[k]), *(len(r[k]) for r in table)) for k in header}
    for r in [header] + table:
        print("  ".join(r[k].ljust(widths[k]) for k in header).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
