"""Evaluate a model's top-1/top-5 accuracy on ImageNet-val (or a set in the same layout).

    python scripts/eval_imagenet.py     # the CaiT notebook's job: cait_m_48_448 on data/ILSVRC2012
    python scripts/eval_imagenet.py --model cait_m_48_448 --weights M48_448.pth \
        --data data/ILSVRC2012 --val-list data/ILSVRC2012/val_list.txt --batch-size 64
    python scripts/eval_imagenet.py --model cait_xxs_24 --weights cait_xxs_24.pdparams --data imagenet/val

Layouts: an image root plus a list of ``relative/path label`` lines (``--val-list``,
or ``DATA/val_list.txt`` when present), or ``DATA[/val]/<wnid>/*.JPEG`` folders
(labels are the sorted folder indices). Preprocessing is the model's registry
entry (resize the shorter side to int(size / crop_pct), center crop, normalise)
unless overridden by flags. Weights are a ``.pdparams`` file or an official
``.pth``/``.safetensors`` checkpoint, converted on the fly. Prints top-1/top-5
and images/s and writes them to ``--output`` as JSON (atomically).

Bad images (unreadable, truncated, decompression bombs, absurd aspect ratios) stop
the run with one line naming the file, or are skipped and counted with
``--on-bad-image skip``. A decode worker that dies (the OOM killer) stops the run
with an error. Expected failures print ``error: <what> (<fix>)`` and exit 2.
"""
import argparse
import json
import os
import sys

from paddle_vits.utils.argtypes import float_range, int_at_least
from paddle_vits.utils.cli import UserError, add_common_args, add_runtime_args, add_weights_args, run


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="cait_m_48_448",
                   help="registered model name or alias (scripts/list_models.py; default: cait_m_48_448)")
    p.add_argument("--weights", default=None, help=".pdparams, or official .pth/.pt/.safetensors checkpoint, or "
                   "'pretrained' / a release tag: the released weights, downloaded and cached (paddle_vits.hub); "
                   "default: data/MODEL.pdparams, data/weights/MODEL.pdparams or the official file name there")
    p.add_argument("--data", default=None, help="dataset directory (default: data/ILSVRC2012; "
                   "PADDLE_VITS_DATA moves data/)")
    p.add_argument("--val-list", default=None, help="file of 'relative/path label' lines, paths relative to --data")
    p.add_argument("--batch-size", type=int_at_least(1), default=64)
    p.add_argument("--workers", type=int_at_least(0), default=4, help="image-decoding processes (0: main process)")
    add_runtime_args(p)
    p.add_argument("--amp", action="store_true", help="float16 autocast (GPU)")
    p.add_argument("--num-classes", type=int_at_least(1), default=1000, help="classifier size of the weights")
    p.add_argument("--img-size", type=int_at_least(1), default=None, help="crop size (default: the model's)")
    p.add_argument("--crop-pct", type=float_range(0.0, 1.0, low_open=True), default=None,
                   help="center-crop fraction in (0, 1] (default: the model's)")
    p.add_argument("--interpolation", default=None, help="resize interpolation: bicubic, bilinear, ...")
    p.add_argument("--mean", type=float_range(), nargs=3, default=None, metavar=("R", "G", "B"))
    p.add_argument("--std", type=float_range(0.0, low_open=True), nargs=3, default=None, metavar=("R", "G", "B"))
    p.add_argument("--on-bad-image", choices=("fail", "skip"), default="fail",
                   help="unreadable image: stop with an error, or skip it and count it")
    p.add_argument("--limit", type=int_at_least(1), default=None, help="evaluate only the first N images")
    p.add_argument("--output", default=None, help="write the result as JSON to this file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_weights_args(p)
    add_common_args(p)
    return p.parse_args(argv)


def check_output_path(path, flag="--output"):
    """Fail before any work when ``path`` cannot be written (a directory, a missing or read-only folder)."""
    if path is None:
        return
    if os.path.isdir(path):
        raise UserError(f"{flag} {path!r} is a directory", "give a file name")
    parent = os.path.dirname(os.path.abspath(path))
    existing = parent
    while not os.path.isdir(existing):
        if os.path.exists(existing):
            raise UserError(f"{flag} {path!r}: {existing!r} is a file, not a folder", "check the path")
        existing = os.path.dirname(existing)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path!r}: cannot write in {existing!r}", "choose a writable folder")


def main(argv=None):
    args = parse_args(argv)
    check_output_path(args.output)

    from paddle_vits import create_model, get_model_info
    from paddle_vits.convert import load_pretrained
    from paddle_vits.data.imagenet import ImageNetVal
    from paddle_vits.data.transforms import EvalTransform, resolve_eval_config
    from paddle_vits.eval import BatchLoader, evaluate
    from paddle_vits.eval.defaults import resolve_eval_inputs
    from paddle_vits.hub import weights_file
    from paddle_vits.utils import atomic_write_text, set_num_threads
    from paddle_vits.utils.device import select_device

    threads = set_num_threads(args.threads)
    try:
        info = get_model_info(args.model)
    except (KeyError, ValueError) as e:
        raise UserError(str(e).strip("'\""), "see scripts/list_models.py") from None
    args.data, weights = resolve_eval_inputs(info.name, args.data, args.weights, args.val_list)
    weights = weights_file(info.name, weights)  # a path, 'pretrained' or a release tag
    try:
        cfg = resolve_eval_config(info, args.img_size, args.crop_pct, args.interpolation, args.mean, args.std)
    except ValueError as e:
        raise UserError(f"preprocessing: {e}", "check --img-size/--crop-pct/--interpolation/--mean/--std") from None
    dataset = ImageNetVal(args.data, EvalTransform.from_config(cfg), val_list=args.val_list,
                          on_bad_image=args.on_bad_image, limit=args.limit)
    use_gpu = select_device(args.device) == "gpu"
    kwargs = {} if cfg["img_size"] == info.img_size else dict(img_size=cfg["img_size"])
    try:
        model = create_model(info.name, num_classes=args.num_classes, **kwargs)
    except (TypeError, ValueError) as e:
        if isinstance(e, UserError):
            raise
        raise UserError(f"cannot build {info.name} with these options: {e}", "check --img-size/--num-classes") \
            from None
    load_pretrained(model, weights, model_name=info.name, reinit_head=False, unsafe=args.unsafe_pickle,
                    allow_nonfinite=args.allow_nonfinite)
    print(f"{info.name}: {len(dataset)} images ({dataset.layout} layout) from {args.data}; "
          f"device {'gpu' if use_gpu else 'cpu'}, {threads} threads; preprocessing {cfg}", flush=True)
    if dataset.classes is not None and len(dataset.classes) != args.num_classes:
        print(f"warning: {len(dataset.classes)} class folders for a {args.num_classes}-class model; labels are "
              "the sorted folder indices, which match ImageNet's only with all 1000 wnid folders", flush=True)
    loader = BatchLoader(dataset, args.batch_size, args.workers)
    try:
        result = evaluate(model, loader, num_classes=args.num_classes, progress=not args.no_progress, amp=args.amp)
    except ValueError as e:
        if isinstance(e, UserError):
            raise
        raise UserError(str(e), "check the data against the model (--num-classes, labels)") from None
    print(f"top-1 {result.top1:.5f}  top-5 {result.top5:.5f}  ({result.n_images} images, "
          f"{result.skipped} unreadable skipped, {result.images_per_sec:.1f} images/s)")
    if args.output:
        record = dict(model=info.name, weights=os.path.abspath(weights), data=os.path.abspath(args.data),
                      layout=dataset.layout, device="gpu" if use_gpu else "cpu", threads=threads,
                      batch_size=args.batch_size, preprocessing=cfg, **result.to_dict())
        atomic_write_text(args.output, json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
