"""Convert an official (facebookresearch) or timm checkpoint to a Paddle ``.pdparams`` file.

    python scripts/convert_weights.py --model cait_xxs_24 --src XXS24_224.pth --out cait_xxs_24.pdparams
    python scripts/convert_weights.py --model cait_s_24 --src model.safetensors --out s24_c10.pdparams --num-classes 10

The source may be a ``.pth``/``.pt`` state dict (bare or wrapped as ``{'model': ...}`` /
``{'state_dict': ...}``, read without executing pickled code) or a ``.safetensors``
file. Every key is mapped and every shape checked; ``--num-classes`` with another size
re-initialises the classifier. The output is written atomically: a failed run leaves an
existing ``--out`` as it was. NaN/inf weights are refused unless ``--allow-nonfinite``.
"""
import argparse
import os
import sys

from paddle_vits.utils.argtypes import int_at_least
from paddle_vits.utils.cli import UserError, add_common_args, run


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="registered model name or alias (scripts/list_models.py)")
    p.add_argument("--src", required=True, help="official checkpoint: .pth, .pt, .bin or .safetensors")
    p.add_argument("--out", required=True, help="output .pdparams file")
    p.add_argument("--num-classes", type=int_at_least(1), default=None,
                   help="classifier size; a size other than the checkpoint's re-initialises the head")
    p.add_argument("--img-size", type=int_at_least(1), default=None, help="model input size (default: the variant's)")
    p.add_argument("--unsafe-pickle", action="store_true",
                   help="load with plain pickle (torch.load(weights_only=False) / paddle.load): runs code stored "
                        "in the file; only for trusted files the restricted reader refuses")
    p.add_argument("--allow-nonfinite", action="store_true", help="convert weights holding NaN/inf on purpose")
    p.add_argument("--safetensors", action="store_true",
                   help="also write OUT with .safetensors (cannot carry code; every --weights option reads it)")
    add_common_args(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from paddle_vits import get_model_info
    from paddle_vits.convert import convert_checkpoint

    if not args.out.endswith(".pdparams"):
        raise UserError(f"--out must end with .pdparams, got {args.out!r}", "name the output file *.pdparams")
    if os.path.isdir(args.out):
        raise UserError(f"--out {args.out!r} is a directory", "give a file name, e.g. DIR/model.pdparams")
    try:
        get_model_info(args.model)
    except (KeyError, ValueError) as e:
        raise UserError(str(e).strip("'\""), "see scripts/list_models.py") from None
    kwargs = {} if args.img_size is None else dict(img_size=args.img_size)
    try:
        report = convert_checkpoint(args.model, args.src, args.out, num_classes=args.num_classes,
                                    unsafe=args.unsafe_pickle, allow_nonfinite=args.allow_nonfinite,
                                    safetensors=args.safetensors, **kwargs)
    except (ValueError, TypeError) as e:
        if isinstance(e, UserError):
            raise
        raise UserError(f"cannot build {args.model} with these options: {e}", "check --num-classes/--img-size") \
            from None
    print(f"model        {report['model']}")
    print(f"source       {args.src}")
    print(f"tensors      {report['tensors']}")
    print(f"parameters   {report['params']:,}")
    print(f"num_classes  {report['num_classes']}")
    if report["skipped"]:
        print(f"re-initialised (head of another size): {', '.join(report['skipped'])}")
    print(f"wrote        {', '.join(report['written'])}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
