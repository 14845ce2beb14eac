"""Conversion of official PyTorch checkpoints to Paddle ``.pdparams``."""
from .core import check_state_dict, convert_checkpoint, convert_state_dict, infer_num_classes, load_pretrained
from .reader import CheckpointError, read_checkpoint, unwrap_state_dict

__all__ = [
    "CheckpointError",
    "check_state_dict",
    "convert_checkpoint",
    "convert_state_dict",
    "infer_num_classes",
    "load_pretrained",
    "read_checkpoint",
    "unwrap_state_dict",
]
