"""Train or fine-tune a model on CIFAR-10/100, an image folder or PaddleClas lists (default: the notebooks' recipe).

    python scripts/train.py --model wavevit_s
    python scripts/train.py --config configs/cifar10/crossvit_9_dagger_224.yaml --epochs 10
    python scripts/train.py --data DIR --model cait_xxs_24 --pretrained cait_xxs_24 --layer-decay 0.65 --model-ema
    python scripts/train.py --model cait_xxs_24 --img-size 32 --epochs 1 --max-steps 50   # CPU smoke run
    python scripts/train.py --resume output/cifar10_wavevit_s [--eval-only]
    python -m paddle.distributed.launch --ips host1,host2 --gpus 0,1,2,3 scripts/train.py --config FILE

Every option comes from paddle_vits.train.TrainConfig (a --config YAML uses the same names, with _).
An --output that holds a run needs --resume
(continue it) or --overwrite (replace it). Bad input: one line `error: ...` and exit status 2.
"""
import os
import sys

from paddle_vits.data.cifar import CifarError
from paddle_vits.train import config_from_argv, train
from paddle_vits.utils.cli import UserError, run


def main(argv=None):
    """Parse ``argv`` and train; returns :func:`paddle_vits.train.train`'s result."""
    cfg = config_from_argv(argv, prog=os.path.basename(__file__), description=__doc__)
    try:
        return train(cfg)
    except CifarError as e:
        raise UserError(str(e)) from e


def _script(argv):
    main(argv)


if __name__ == "__main__":
    sys.exit(run(_script))
