"""Overlays of explanation maps on images, saved as PNG (matplotlib, no display needed)."""
import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..utils.io import atomic_path


def overlay(image, heatmap, alpha=0.5, cmap="jet", signed=False):
    """Blend a ``[H, W]`` map over a uint8 ``[H, W, 3]`` image.

    Args:
        image: uint8 RGB image.
        heatmap: Map with the image's height and width.
        alpha: Opacity of the map.
        cmap: Matplotlib colormap name.
        signed: Center the colormap on 0 (for LIME weights: support vs. against);
            otherwise the map is min-max scaled.

    Returns:
        np.ndarray: float RGB ``[H, W, 3]`` in ``[0, 1]``.
    """
    heatmap = np.asarray(heatmap, dtype=np.float64)
    if heatmap.shape != image.shape[:2]:
        raise ValueError(f"heatmap shape {heatmap.shape} does not match image {image.shape[:2]}")
    if signed:
        scale = np.abs(heatmap).max()
        norm = 0.5 + 0.5 * heatmap / (scale if scale > 0 else 1.0)
    else:
        lo, hi = heatmap.min(), heatmap.max()
        norm = (heatmap - lo) / (hi - lo if hi > lo else 1.0)
    colored = colormaps[cmap](norm)[..., :3]
    return (1 - alpha) * (np.asarray(image, dtype=np.float64) / 255.0) + alpha * colored


def save_overlays(path, image, maps, title=None, signed=False, cmap=None, dpi=100):
    """Write a PNG: the image, then one overlay per map.

    Args:
        path: Output ``.png`` path (folders are created; written atomically).
        image: uint8 ``[H, W, 3]``.
        maps: ``{caption: [H, W] map}``.
        title: Figure title (e.g. the top classes).
        signed: See :func:`overlay`.
        cmap: Colormap; default ``"bwr"`` when signed, else ``"jet"``.
        dpi: Resolution.

    Returns:
        str: ``path``.
    """
    cmap = cmap or ("bwr" if signed else "jet")
    panels = [("image", np.asarray(image) / 255.0)]
    panels += [(name, overlay(image, m, cmap=cmap, signed=signed)) for name, m in maps.items()]
    fig = Figure(figsize=(3.2 * len(panels), 3.6 if title else 3.2))
    FigureCanvasAgg(fig)
    for i, (name, panel) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.imshow(panel)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return path
