"""Conversion of official PyTorch checkpoints to Paddle ``.pdparams``."""
from .core import (check_state_dict, convert_checkpoint, convert_state_dict, infer_num_classes, load_pretrained,
                   save_safetensors)
from .reader import CheckpointError, check_finite, is_paddle_layout, read_checkpoint, unwrap_state_dict

__all__ = [
    "CheckpointError",
    "check_finite",
    "is_paddle_layout",
    "check_state_dict",
    "convert_checkpoint",
    "convert_state_dict",
    "infer_num_classes",
    "load_pretrained",
    "read_checkpoint",
    "save_safetensors",
    "unwrap_state_dict",
]
