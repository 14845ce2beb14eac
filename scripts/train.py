"""Train a model on CIFAR-10 (the source notebooks' recipe by default).

    python scripts/train.py --model wavevit_s
    python scripts/train.py --model cait_xxs_24 --img-size 32 --epochs 1 --max-steps 50   # CPU smoke run
    python scripts/train.py --resume output/cifar10_wavevit_s
    python -m paddle.distributed.launch --gpus 0,1,2,3 scripts/train.py --model crossvit_9_dagger_224
"""
import argparse
import json
import sys

from paddle_vits.data.cifar import CifarError
from paddle_vits.train import TrainConfig, TrainingError, train
from paddle_vits.utils.device import add_device_arg, select_device


def parse_args(argv=None):
    """The command-line options (``None`` defaults come from the model's recipe)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="wavevit_s", help="registered model name (default: wavevit_s)")
    p.add_argument("--data", default=None, help="cifar-10-python.tar.gz (default: data/cifar-10-python.tar.gz, "
                                                "else Paddle's download)")
    p.add_argument("--output", default=None, help="output dir (default: output/cifar10_MODEL)")
    p.add_argument("--epochs", type=int, default=None, help="default: 100 CrossViT, 50 others")
    p.add_argument("--batch-size", type=int, default=None, help="per process; default: 256 CrossViT, 128 others")
    p.add_argument("--lr", type=float, default=None, help="peak LR; default: 3e-4 CrossViT, 1e-4 others")
    p.add_argument("--min-lr", type=float, default=0.0, help="final LR of the cosine schedule")
    p.add_argument("--opt", choices=("adam", "adamw"), default="adam")
    p.add_argument("--warmup-epochs", type=float, default=0.0)
    p.add_argument("--weight-decay", type=float, default=1e-5)
    p.add_argument("--smoothing", type=float, default=0.1, help="label smoothing")
    p.add_argument("--img-size", type=int, default=None, help="default: 240 CrossViT (native), 224 others")
    p.add_argument("--mixup", type=float, default=0.0, help="Mixup alpha (0: off)")
    p.add_argument("--cutmix", type=float, default=0.0, help="CutMix alpha (0: off)")
    p.add_argument("--mixup-prob", type=float, default=1.0, help="probability of mixing a batch")
    p.add_argument("--clip-grad", type=float, default=None, help="global-norm gradient clipping")
    p.add_argument("--drop-path", type=float, default=0.0, help="stochastic depth rate")
    p.add_argument("--amp", nargs="?", const="float16", choices=("float16", "bfloat16"), default=None,
                   help="mixed precision on GPU (no-op on CPU, said so)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps")
    p.add_argument("--save-every", type=int, default=0, help="also checkpoint every N steps")
    p.add_argument("--model-kwargs", type=json.loads, default=None, metavar="JSON",
                   help='extra model arguments, e.g. \'{"depth": 12}\' (smaller variants for quick runs)')
    p.add_argument("--pretrained", default=None, help="ImageNet weights to fine-tune from (.pdparams or official)")
    p.add_argument("--resume", default=None, metavar="DIR", help="continue the run in DIR")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    add_device_arg(p)
    p.add_argument("--val-batch-size", type=int, default=None)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-visualdl", action="store_true", help="no VisualDL logs even when installed")
    return p.parse_args(argv)


def main(argv=None):
    """Parse ``argv`` and train; returns :func:`paddle_vits.train.train`'s result, exits 1 on bad input."""
    a = parse_args(argv)
    select_device(a.device)
    cfg = TrainConfig(model=a.model, data=a.data, output=a.output, epochs=a.epochs, batch_size=a.batch_size,
                      lr=a.lr, min_lr=a.min_lr, opt=a.opt, warmup_epochs=a.warmup_epochs,
                      weight_decay=a.weight_decay, smoothing=a.smoothing, img_size=a.img_size, mixup=a.mixup,
                      cutmix=a.cutmix, mixup_prob=a.mixup_prob, clip_grad=a.clip_grad, drop_path=a.drop_path,
                      amp=a.amp, workers=a.workers, seed=a.seed, max_steps=a.max_steps, save_every=a.save_every,
                      pretrained=a.pretrained, model_kwargs=a.model_kwargs, resume=a.resume, threads=a.threads,
                      val_batch_size=a.val_batch_size,
                      progress=not a.no_progress, visualdl=not a.no_visualdl)
    try:
        return train(cfg)
    except (TrainingError, CifarError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
