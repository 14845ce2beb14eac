"""Train a backbone + FPN + segmentation head on generated shapes, then score it (loss, mIoU).

    python scripts/segment_shapes.py                                   # crossformer_t, 64x64, 40 steps of 8
    python scripts/segment_shapes.py --model crossformer_t --steps 200 --img-size 128 --batch-size 8
    python scripts/segment_shapes.py --weights pretrained              # start from the ImageNet release
    python scripts/segment_shapes.py --model wavevit_s --weights wavevit_s.pth.tar --out-indices 1 2 3

An end-to-end example of ``create_model(name, features_only=True)``: the backbone's multi-scale maps
(``feature_info`` gives their channels) feed :class:`paddle_vits.dense.SimpleFPN` and a per-pixel
classifier upsampled to the input (:class:`paddle_vits.dense.SegmentationModel`). The images
(:class:`paddle_vits.dense.ShapesDataset`: circles, rectangles and triangles in random colours, with
their masks) are generated: every training step draws a fresh batch from ``--seed``, and the
held-out set (``--eval-images``) comes from another seed. It prints the training loss as it goes
(a progress bar, and a line every ``--log-every`` steps), then the held-out loss, pixel accuracy,
mIoU and the IoU of each class. CrossFormer and Wave-ViT take sides that are multiples of 32; CaiT
is built for ``--img-size``.
"""
import argparse
import sys
import time

from paddle_vits.utils.argtypes import float_range, int_at_least
from paddle_vits.utils.cli import UserError, add_common_args, run


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="crossformer_t", help="a registered model name (scripts/list_models.py)")
    p.add_argument("--weights", "--pretrained", dest="weights", default=None,
                   help="backbone weights: a .pdparams or official checkpoint path, 'pretrained' or a release tag "
                        "(default: random initialisation)")
    p.add_argument("--out-indices", type=int, nargs="+", default=None,
                   help="backbone stages/blocks to use (default: the family's, see paddle_vits.features)")
    p.add_argument("--steps", type=int_at_least(1), default=40, help="training steps")
    p.add_argument("--img-size", type=int_at_least(1), default=64, help="image side (a multiple of 32 for "
                                                                         "CrossFormer and Wave-ViT)")
    p.add_argument("--batch-size", type=int_at_least(1), default=8)
    p.add_argument("--lr", type=float_range(0.0, low_open=True), default=1e-3, help="AdamW learning rate")
    p.add_argument("--weight-decay", type=float_range(0.0), default=0.05)
    p.add_argument("--fpn-channels", type=int_at_least(1), default=64, help="channels of the FPN and the head")
    p.add_argument("--max-shapes", type=int_at_least(1), default=3, help="up to this many shapes per image")
    p.add_argument("--eval-images", type=int_at_least(1), default=32, help="size of the held-out set")
    p.add_argument("--seed", type=int, default=0, help="training images and initialisation (held-out: seed + 1)")
    p.add_argument("--threads", type=int_at_least(1), default=None, help="CPU threads (default: all cores)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--log-every", type=int_at_least(1), default=10, help="print the training loss every N steps")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_common_args(p)
    return p.parse_args(argv)


def build(args):
    """The segmentation model over ``args.model``'s backbone; user mistakes become UserError."""
    from paddle_vits import create_model, get_model_info
    from paddle_vits.dense import SHAPE_CLASSES, SegmentationModel
    from paddle_vits.hub import weights_file

    try:
        info = get_model_info(args.model)
    except (KeyError, ValueError) as e:
        raise UserError(str(e).strip("'\""), "see scripts/list_models.py") from None
    weights = weights_file(info.name, args.weights) if args.weights else False
    try:
        backbone = create_model(info.name, pretrained=weights, features_only=True, out_indices=args.out_indices,
                                img_size=args.img_size)
    except (TypeError, ValueError, IndexError) as e:
        if isinstance(e, UserError):
            raise
        raise UserError(f"cannot build {info.name} as a backbone with these options: {e}",
                        "check --img-size/--out-indices") from None
    return SegmentationModel(backbone, len(SHAPE_CLASSES), fpn_channels=args.fpn_channels)


def evaluate(model, dataset, batch_size):
    """Held-out ``(mean loss, pixel accuracy, mIoU, per-class IoU)``."""
    import numpy as np
    import paddle

    from paddle_vits.dense import confusion_matrix, mean_iou, segmentation_loss

    model.eval()
    conf = np.zeros((model.num_classes, model.num_classes), np.int64)
    losses = []
    with paddle.no_grad():
        for start in range(0, len(dataset), batch_size):
            images, masks = dataset.batch(range(start, min(start + batch_size, len(dataset))))
            logits = model(paddle.to_tensor(images))
            masks = paddle.to_tensor(masks)
            losses.append((float(segmentation_loss(logits, masks)), len(images)))
            conf += confusion_matrix(logits.argmax(axis=1), masks, model.num_classes)
    model.train()
    miou, iou = mean_iou(conf)
    loss = sum(v * n for v, n in losses) / sum(n for _, n in losses)
    return loss, float(np.trace(conf) / conf.sum()), miou, iou


def main(argv=None):
    args = parse_args(argv)
    import paddle
    from tqdm import tqdm

    from paddle_vits.dense import SHAPE_CLASSES, ShapesDataset, segmentation_loss
    from paddle_vits.utils import set_num_threads
    from paddle_vits.utils.device import select_device

    threads = set_num_threads(args.threads)
    select_device(args.device)
    paddle.seed(args.seed)
    model = build(args)
    n_params = sum(int(p.size) for p in model.parameters())
    train_set = ShapesDataset(args.steps * args.batch_size, args.img_size, seed=args.seed, max_shapes=args.max_shapes)
    eval_set = ShapesDataset(args.eval_images, args.img_size, seed=args.seed + 1, max_shapes=args.max_shapes)
    print(f"{args.model} backbone (channels {model.backbone.feature_info.channels()}, strides "
          f"{model.backbone.feature_info.reduction()}) + FPN({args.fpn_channels}) + head: {n_params / 1e6:.2f}M "
          f"parameters; {args.steps} steps of {args.batch_size} images {args.img_size}x{args.img_size}, "
          f"{threads} threads")
    opt = paddle.optimizer.AdamW(args.lr, parameters=model.parameters(), weight_decay=args.weight_decay)
    model.train()
    start = time.perf_counter()
    with tqdm(total=args.steps, desc="train", disable=args.no_progress, dynamic_ncols=True) as bar:
        for step in range(args.steps):
            images, masks = train_set.batch(range(step * args.batch_size, (step + 1) * args.batch_size))
            loss = segmentation_loss(model(paddle.to_tensor(images)), paddle.to_tensor(masks))
            loss.backward()
            opt.step()
            opt.clear_grad()
            value = float(loss)
            bar.set_postfix(loss=f"{value:.4f}")
            bar.update(1)
            if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
                bar.write(f"step {step + 1}/{args.steps}  train loss {value:.4f}")
    train_s = time.perf_counter() - start
    loss, acc, miou, iou = evaluate(model, eval_set, args.batch_size)
    print(f"held-out ({args.eval_images} images, seed {args.seed + 1}): loss {loss:.4f}  pixel acc {acc:.4f}  "
          f"mIoU {miou:.4f}  (trained {train_s:.0f} s)")
    print("IoU per class: " + "  ".join(f"{name} {v:.3f}" for name, v in zip(SHAPE_CLASSES, iou)))
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
