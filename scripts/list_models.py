"""List the registered models with their size, eval preprocessing and paper top-1.

    python scripts/list_models.py            # every model
    python scripts/list_models.py 'cait_*'   # shell-style pattern (names and aliases)
    python scripts/list_models.py --markdown # README table
"""
import argparse
import fnmatch
import sys

from paddle_vits.utils.cli import add_common_args, run


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pattern", nargs="?", default=None, help="shell-style pattern, e.g. 'cait_*_384'")
    p.add_argument("--markdown", action="store_true", help="print a markdown table")
    add_common_args(p)
    return p.parse_args(argv)


def rows(pattern=None):
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
    return out


def main(argv=None):
    args = parse_args(argv)
    table = rows(args.pattern)
    if not table:
        print(f"no model matches {args.pattern!r}; run without a pattern to see all", file=sys.stderr)
        return 1
    header = dict(name="name", aliases="aliases", params="params", input="input", crop="crop",
                  interp="interpolation", top1="top-1 (%)")
    if args.markdown:
        print("| " + " | ".join(header.values()) + " |")
        print("|" + "---|" * len(header))
        for r in table:
            print("| " + " | ".join(r[k] for k in header) + " |")
        return 0
    widths = {k: max(len(header[k]), *(len(r[k]) for r in table)) for k in header}
    for r in [header] + table:
        print("  ".join(r[k].ljust(widths[k]) for k in header).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
