"""paddle_vits: CaiT, CrossViT, Wave-ViT and CrossFormer in PaddlePaddle."""
from . import models  # noqa: F401  (registers the variants)
from .registry import create_model, get_model_info, is_model, list_models, register_model

__version__ = "0.1.0"

__all__ = ["create_model", "get_model_info", "is_model", "list_models", "register_model", "__version__"]
