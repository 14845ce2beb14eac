"""CIFAR-10 training: loop, losses, optimizer/schedule, checkpoints (``train(TrainConfig(...))``)."""
from .checkpoint import load_checkpoint, save_checkpoint
from .engine import RECIPES, EpochBatchSampler, TrainConfig, TrainingError, load_for_finetune, recipe_for, train
from .loss import label_smoothing_cross_entropy, soft_target_cross_entropy
from .optim import build_optimizer, build_scheduler, cosine_lr_factor

__all__ = [
    "RECIPES", "EpochBatchSampler", "TrainConfig", "TrainingError", "build_optimizer", "build_scheduler",
    "cosine_lr_factor", "label_smoothing_cross_entropy", "load_checkpoint", "load_for_finetune", "recipe_for",
    "save_checkpoint", "soft_target_cross_entropy", "train",
]
