"""Backbones for dense prediction: a model's multi-scale feature maps, ``create_model(..., features_only=True)``.

:class:`FeatureBackbone` wraps a classification model of any family, drops what the feature maps do
not need (the head(s), the class-token stage, blocks after the last output; the family's
``prune_intermediate_layers``) and returns, from ``forward``, the list of ``NCHW`` maps of
``model.forward_intermediates(x, out_indices, intermediates_only=True)``. ``feature_info`` says the
channels and stride of each output (timm's ``FeatureInfo`` methods). Defaults per family:

* CrossFormer: the four stages (strides 4/8/16/32), no norm: the official detection/segmentation
  backbone (cheerss/CrossFormer ``models/crossformer_backbone.py``) returns the stage outputs as they
  are;
* Wave-ViT: the four stages (strides 4/8/16/32), each through its stage norm (``norm1``..``norm4``,
  ``epsilon=1e-6``), as the official backbone (YehLi/ImageNetModel ``object_detection/wavevit.py``);
* CaiT: the last self-attention block's patch tokens (stride 16);
* CrossViT: the last multi-scale block, both branches (strides 12 and 16 at the native sizes).
"""
import paddle.nn as nn

__all__ = ["FeatureBackbone", "FeatureInfo"]

# Families whose official dense-task backbone normalises every output (see the module docstring).
_NORM_BY_DEFAULT = {"wavevit": True}
_PYRAMIDS = ("crossformer", "wavevit")


class FeatureInfo(list):
    """One dict per output (``num_chs``, ``reduction``, ``module``, ``index``; CrossViT also ``branch``)."""

    def channels(self, idx=None):
        """Channels of every output (or of output ``idx``)."""
        return self._get("num_chs", idx)

    def reduction(self, idx=None):
        """Stride of every output relative to the input (or of output ``idx``)."""
        return self._get("reduction", idx)

    def module_name(self, idx=None):
        """The layer producing every output (or output ``idx``)."""
        return self._get("module", idx)

    def _get(self, key, idx):
        return [info[key] for info in self] if idx is None else self[idx][key]


def default_out_indices(family, model):
    """The stages/blocks a backbone returns when ``out_indices`` is not given (module docstring)."""
    if family in _PYRAMIDS:
        return tuple(range(len(model.feature_info)))
    return (-1,)


class FeatureBackbone(nn.Layer):
    """A model as a backbone: ``forward(x)`` -> list of ``[B, C_i, H_i, W_i]`` maps.

    Args:
        model: A model of one of the families (it is pruned in place).
        out_indices: Stages (CrossFormer, Wave-ViT) or blocks (CaiT, CrossViT) to return; None
            for the family's default; negative indices count from the end. CrossViT gives two maps
            per index (small-patch branch first).
        norm: Normalise the outputs (the family's ``forward_intermediates(norm=...)``); None for
            the family's default.

    Attributes:
        model: The pruned model (its parameters keep their names under ``model.``).
        out_indices: The sorted indices returned.
        feature_info: :class:`FeatureInfo`, one entry per output map.
        dropped: Names of the layers removed from the classification model.
    """

    def __init__(self, model, out_indices=None, norm=None):
        super().__init__()
        family = type(model).__module__.rsplit(".", 1)[-1]
        if out_indices is None:
            out_indices = default_out_indices(family, model)
        elif isinstance(out_indices, int) and not isinstance(out_indices, bool):
            out_indices = (out_indices,)
        self.norm = _NORM_BY_DEFAULT.get(family, False) if norm is None else bool(norm)
        take, self.dropped = model.prune_intermediate_layers(list(out_indices), prune_norm=not self.norm,
                                                             prune_head=True)
        self.model = model
        self.out_indices = tuple(take)
        self.feature_info = FeatureInfo(dict(info) for info in model.feature_info if info["index"] in take)
        self.in_chans = model.in_chans
        self.img_size = model.img_size

    def forward(self, x):
        return self.model.forward_intermediates(x, indices=list(self.out_indices), norm=self.norm,
                                                output_fmt="NCHW", intermediates_only=True)
