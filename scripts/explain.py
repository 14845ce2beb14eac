"""Explain a prediction: write an overlay PNG and print the top classes.

    python scripts/explain.py --model cait_xxs_24 --weights cait_xxs24_224.pth --image cat.jpg
    python scripts/explain.py --model wavevit_s --weights out/best.pdparams --image ship.png \
        --method lime --num-samples 2000 --labels cifar10_classes.txt

``--method attention`` (default) uses the family's attention map (class attention
for CaiT/Wave-ViT, per-branch rollout for CrossViT, gradient-weighted group
attention for CrossFormer); ``--method lime`` runs LIME (``lime`` package).
"""
import argparse
import os

import numpy as np


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="registered model name or alias (see paddle_vits.list_models())")
    p.add_argument("--weights", required=True,
                   help=".pdparams (e.g. best.pdparams from scripts/train.py), or an official .pth/.safetensors "
                        "checkpoint; explanations of an untrained model mean nothing, so this is required")
    p.add_argument("--image", required=True, help="image file (any format PIL reads)")
    p.add_argument("--method", choices=("attention", "lime"), default="attention")
    p.add_argument("--out", default=None, help="overlay PNG (default: <image>_<model>_<method>.png)")
    p.add_argument("--num-samples", type=int, default=1000, help="LIME: perturbed images to evaluate")
    p.add_argument("--batch-size", type=int, default=32, help="LIME: images per forward pass")
    p.add_argument("--label", type=int, default=None, help="class to explain (default: the predicted one)")
    p.add_argument("--num-classes", type=int, default=None, help="head size (default: read from the weights)")
    p.add_argument("--img-size", type=int, default=None, help="input size if the model was built with another one")
    p.add_argument("--labels", default=None, help="text file with one class name per line")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--device", choices=("cpu", "gpu"), default=None, help="default: gpu when Paddle has one")
    return p.parse_args()


def main():
    args = parse_args()
    for flag, path in (("--image", args.image), ("--weights", args.weights), ("--labels", args.labels)):
        if path is not None and not os.path.isfile(path):
            raise SystemExit(f"error: {flag} {path!r} does not exist")
    import paddle_vits
    from paddle_vits import explain
    from paddle_vits.convert import CheckpointError, infer_num_classes, load_pretrained, read_checkpoint
    from paddle_vits.utils import set_num_threads
    from paddle_vits.utils.device import select_device

    set_num_threads(args.threads)
    select_device(args.device)
    try:
        info = paddle_vits.get_model_info(args.model)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    try:
        num_classes = args.num_classes or infer_num_classes(read_checkpoint(args.weights), info)
        kwargs = {} if args.img_size is None else dict(img_size=args.img_size)
        model = paddle_vits.create_model(info.name, num_classes=num_classes, **kwargs)
        load_pretrained(model, args.weights, model_name=info.name)
    except CheckpointError as e:
        raise SystemExit(f"error: {e}\n(a model trained at another input size needs --img-size, "
                         "e.g. --img-size 32 for one trained on raw CIFAR images)") from None
    model.eval()
    names = None
    if args.labels:
        with open(args.labels, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
        if len(names) != num_classes:
            raise SystemExit(f"error: --labels has {len(names)} names but the model has {num_classes} classes")
    if args.label is not None and not 0 <= args.label < num_classes:
        raise SystemExit(f"error: --label {args.label} is out of range for a model with {num_classes} classes")

    try:
        image = explain.load_image(args.image, model, img_size=args.img_size)
    except OSError as e:
        raise SystemExit(f"error: cannot read --image {args.image!r} as an image ({e})") from None
    if args.method == "lime":
        result = explain.explain_lime(model, image, label=args.label, num_samples=args.num_samples,
                                      batch_size=args.batch_size)
        maps, signed = {f"LIME (R^2 {result.score:.2f})": result.heatmap}, True
    else:
        result = explain.explain_attention(model, image, label=args.label)
        maps, signed = {f"{result.method}: {k}": v for k, v in result.maps.items()}, False

    def label_name(i):
        return names[i] if names else f"class {i}"

    top = np.argsort(result.probs)[::-1][:args.topk]
    print(f"top-{len(top)} for {args.image} ({info.name}):")
    for i in top:
        print(f"  {result.probs[i]:.4f}  {i:4d}  {label_name(i)}")
    out = args.out or f"{os.path.splitext(args.image)[0]}_{info.name}_{args.method}.png"
    title = f"{info.name}: explaining {label_name(result.label)} (p={result.probs[result.label]:.3f})"
    explain.save_overlays(out, image, maps, title=title, signed=signed)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
