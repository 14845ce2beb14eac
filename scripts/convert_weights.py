"""Convert an official (facebookresearch) or timm checkpoint to a Paddle ``.pdparams`` file.

    python scripts/convert_weights.py --model cait_xxs_24 --src XXS24_224.pth --out cait_xxs_24.pdparams
    python scripts/convert_weights.py --model cait_s_24 --src model.safetensors --out s24_c10.pdparams --num-classes 10

The source may be a ``.pth``/``.pt`` state dict (bare or wrapped as ``{'model': ...}`` /
``{'state_dict': ...}``, read without executing pickled code) or a ``.safetensors``
file. Every key is mapped and every shape checked; ``--num-classes`` with another size
re-initialises the classifier. The output is written atomically.
"""
import argparse
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="registered model name or alias (scripts/list_models.py)")
    p.add_argument("--src", required=True, help="official checkpoint: .pth, .pt, .bin or .safetensors")
    p.add_argument("--out", required=True, help="output .pdparams file")
    p.add_argument("--num-classes", type=int, default=None,
                   help="classifier size; a size other than the checkpoint's re-initialises the head")
    p.add_argument("--img-size", type=int, default=None, help="model input size (default: the variant's)")
    p.add_argument("--unsafe-pickle", action="store_true",
                   help="load with torch.load(weights_only=False): runs code stored in the file; trusted files only")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from paddle_vits.convert import CheckpointError, convert_checkpoint

    if not args.out.endswith(".pdparams"):
        print(f"error: --out must end with .pdparams, got {args.out!r}", file=sys.stderr)
        return 2
    kwargs = {} if args.img_size is None else dict(img_size=args.img_size)
    try:
        report = convert_checkpoint(args.model, args.src, args.out, num_classes=args.num_classes,
                                    unsafe=args.unsafe_pickle, **kwargs)
    except (CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"model        {report['model']}")
    print(f"source       {args.src}")
    print(f"tensors      {report['tensors']}")
    print(f"parameters   {report['params']:,}")
    print(f"num_classes  {report['num_classes']}")
    if report["skipped"]:
        print(f"re-initialised (head of another size): {', '.join(report['skipped'])}")
    print(f"wrote        {report['out']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
