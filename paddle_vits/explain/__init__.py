"""Explanations of predictions: LIME (through the ``lime`` package) and attention maps.

Typical use::

    import paddle_vits
    from paddle_vits import explain

    model = paddle_vits.create_model("cait_xxs_24", pretrained="cait_xxs24_224.pth").eval()
    image = explain.load_image("cat.jpg", model)          # the model's eval crop, uint8
    att = explain.explain_attention(model, image)         # class attention (CaiT)
    lime = explain.explain_lime(model, image, num_samples=1000)
    explain.save_overlays("cat_attention.png", image, att.maps)
"""
from .attention import (
    METHODS,
    AttentionExplanation,
    attention_maps,
    attention_rollout,
    capture_attention,
    explain_attention,
    token_groups,
)
from .image import eval_crop, load_image, to_batch
from .lime_explainer import LimeExplanation, PaddleClassifierFn, explain_lime, grid_segmentation
from .plot import overlay, save_overlays

__all__ = [
    "METHODS",
    "AttentionExplanation",
    "LimeExplanation",
    "PaddleClassifierFn",
    "attention_maps",
    "attention_rollout",
    "capture_attention",
    "eval_crop",
    "explain_attention",
    "explain_lime",
    "grid_segmentation",
    "load_image",
    "overlay",
    "save_overlays",
    "to_batch",
    "token_groups",
]
