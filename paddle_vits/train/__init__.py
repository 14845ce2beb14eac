"""CIFAR-10 training: options, loop, run log, losses, optimizer/schedule, checkpoints (``train(TrainConfig(...))``)."""
from .checkpoint import load_checkpoint, save_checkpoint
from .config import (RECIPES, TrainConfig, TrainingError, build_parser, config_from_argv, merge_resume, recipe_for,
                     resolve_config)
from .engine import train
from .loss import label_smoothing_cross_entropy, soft_target_cross_entropy
from .optim import build_optimizer, build_scheduler, cosine_lr_factor
from .preflight import load_for_finetune
from .report import plot_curves, plot_predictions
from .runlog import RunLog
from .sampler import EpochBatchSampler

__all__ = [
    "RECIPES", "EpochBatchSampler", "RunLog", "TrainConfig", "TrainingError", "build_optimizer", "build_parser",
    "build_scheduler", "config_from_argv", "cosine_lr_factor", "label_smoothing_cross_entropy", "load_checkpoint",
    "load_for_finetune", "merge_resume", "plot_curves", "plot_predictions", "recipe_for", "resolve_config",
    "save_checkpoint", "soft_target_cross_entropy", "train",
]
