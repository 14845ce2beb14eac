"""Explain a prediction: write an overlay PNG and print the top classes.

    python scripts/explain.py --model cait_xxs_24 --weights cait_xxs24_224.pth --image cat.jpg
    python scripts/explain.py --model wavevit_s --weights out/best.pdparams --image ship.png \
        --method lime --num-samples 2000 --labels cifar10_classes.txt

``--method attention`` (default) uses the family's attention map (class attention
for CaiT/Wave-ViT, per-branch rollout for CrossViT, gradient-weighted group
attention for CrossFormer); ``--method lime`` runs LIME (``lime`` package).
The overlay is written atomically. Expected failures (a missing or bad image or
weights file, an unwritable ``--out``) print ``error: <what> (<fix>)`` and exit 2.
"""
import argparse
import os
import sys

import numpy as np

from paddle_vits.utils.argtypes import int_at_least
from paddle_vits.utils.cli import UserError, add_common_args, add_runtime_args, add_weights_args, run

_SIZE_FIX = ("a model trained at another input size needs --img-size, e.g. --img-size 32 for one trained on raw "
             "CIFAR images")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="registered model name or alias (see paddle_vits.list_models())")
    p.add_argument("--weights", required=True,
                   help=".pdparams (e.g. best.pdparams from scripts/train.py), or an official .pth/.safetensors "
                        "checkpoint, or 'pretrained' / a release tag (downloaded and cached); explanations of an "
                        "untrained model mean nothing, so this is required")
    p.add_argument("--image", required=True, help="image file (any format PIL reads)")
    p.add_argument("--method", choices=("attention", "lime"), default="attention")
    p.add_argument("--out", default=None, help="overlay PNG (default: <image>_<model>_<method>.png)")
    p.add_argument("--num-samples", type=int_at_least(1), default=1000, help="LIME: perturbed images to evaluate")
    p.add_argument("--batch-size", type=int_at_least(1), default=32, help="LIME: images per forward pass")
    p.add_argument("--label", type=int_at_least(0), default=None, help="class to explain (default: the predicted one)")
    p.add_argument("--num-classes", type=int_at_least(1), default=None,
                   help="head size (default: read from the weights)")
    p.add_argument("--img-size", type=int_at_least(1), default=None,
                   help="input size if the model was built with another one")
    p.add_argument("--labels", default=None, help="text file with one class name per line (UTF-8)")
    p.add_argument("--topk", type=int_at_least(1), default=5)
    add_runtime_args(p)
    add_weights_args(p)
    add_common_args(p)
    return p.parse_args(argv)


def read_labels(path):
    """Class names, one per line (UTF-8, a byte-order mark ignored); decode errors name the line."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    names = []
    for lineno, line in enumerate(raw.splitlines(), 1):
        try:
            line = line.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise UserError(f"--labels {path}:{lineno} is not UTF-8", "save the file as UTF-8") from None
        if line:
            names.append(line)
    return names


def main(argv=None):
    args = parse_args(argv)
    for flag, path in (("--image", args.image), ("--labels", args.labels)):
        if path is not None and not os.path.isfile(path):
            what = ("is a directory" if os.path.isdir(path) else
                    "is not a regular file" if os.path.exists(path) else "does not exist")
            raise UserError(f"{flag} {path!r} {what}", "give an existing file")
    if args.out is not None and os.path.isdir(args.out):
        raise UserError(f"--out {args.out!r} is a directory", "give a .png file name")
    import paddle_vits
    from paddle_vits import explain
    from paddle_vits.convert import CheckpointError, infer_num_classes, load_pretrained, read_checkpoint
    from paddle_vits.data.transforms import BadImageError
    from paddle_vits.hub import weights_file
    from paddle_vits.utils import set_num_threads
    from paddle_vits.utils.device import select_device

    set_num_threads(args.threads)
    select_device(args.device)
    try:
        info = paddle_vits.get_model_info(args.model)
    except (KeyError, ValueError) as e:
        raise UserError(str(e).strip("'\""), "see scripts/list_models.py") from None
    out = args.out or f"{os.path.splitext(args.image)[0]}_{info.name}_{args.method}.png"
    weights = weights_file(info.name, args.weights)  # a path, 'pretrained' or a release tag
    read = dict(unsafe=args.unsafe_pickle, allow_nonfinite=args.allow_nonfinite)
    state_dict = read_checkpoint(weights, **read)  # read once: class count and weights
    num_classes = args.num_classes or infer_num_classes(state_dict, info)
    kwargs = {} if args.img_size is None else dict(img_size=args.img_size)
    try:
        model = paddle_vits.create_model(info.name, num_classes=num_classes, **kwargs)
    except (TypeError, ValueError) as e:
        if isinstance(e, UserError):
            raise
        raise UserError(f"cannot build {info.name} with these options: {e}", "check --img-size/--num-classes") \
            from None
    try:
        load_pretrained(model, weights, model_name=info.name, state_dict=state_dict)
    except CheckpointError as e:
        raise CheckpointError(e.what, e.fix or _SIZE_FIX) from None
    model.eval()
    names = None
    if args.labels:
        names = read_labels(args.labels)
        if len(names) != num_classes:
            raise UserError(f"--labels has {len(names)} names but the model has {num_classes} classes",
                            "give one name per class")
    if args.label is not None and not 0 <= args.label < num_classes:
        raise UserError(f"--label {args.label} is out of range for a model with {num_classes} classes",
                        f"use 0..{num_classes - 1}")

    try:
        image = explain.load_image(args.image, model, img_size=args.img_size)
    except BadImageError as e:
        raise UserError(f"--image: {e}", "give a readable image of a sensible size") from None
    if args.method == "lime":
        result = explain.explain_lime(model, image, label=args.label, num_samples=args.num_samples,
                                      batch_size=args.batch_size)
        maps, signed = {f"LIME (R^2 {result.score:.2f})": result.heatmap}, True
    else:
        result = explain.explain_attention(model, image, label=args.label)
        maps, signed = {f"{result.method}: {k}": v for k, v in result.maps.items()}, False
    if not np.isfinite(result.probs).all():
        raise UserError("the model returned NaN or infinite scores", "check the weights")

    def label_name(i):
        return names[i] if names else f"class {i}"

    top = np.argsort(result.probs)[::-1][:args.topk]
    print(f"top-{len(top)} for {args.image} ({info.name}):")
    for i in top:
        print(f"  {result.probs[i]:.4f}  {i:4d}  {label_name(i)}")
    title = f"{info.name}: explaining {label_name(result.label)} (p={result.probs[result.label]:.3f})"
    explain.save_overlays(out, image, maps, title=title, signed=signed)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
