"""LIME for any Paddle image classifier, through the ``lime`` package.

``lime`` perturbs superpixels of the image, asks the classifier for class
probabilities on each perturbed copy and fits a weighted linear model: the
weight of a superpixel is its contribution to the class probability. The only
Paddle-specific piece is the ``classifier_fn`` adapter below.
"""
from dataclasses import dataclass

import numpy as np
import paddle
import paddle.nn.functional as F

from .image import _check_image, _info, to_batch


class PaddleClassifierFn:
    """``lime``'s ``classifier_fn`` for a Paddle model: uint8 images -> probabilities.

    Args:
        model: A Paddle classifier returning logits ``[N, num_classes]``.
        mean: Normalisation mean (RGB, 0-1 scale). Defaults to the model's registry value.
        std: Normalisation std. Defaults to the model's registry value.
        batch_size: Images per forward pass.
    """

    def __init__(self, model, mean=None, std=None, batch_size=32):
        if mean is None or std is None:
            info = _info(model)
            mean = info.mean if mean is None else mean
            std = info.std if std is None else std
        self.model = model
        self.mean, self.std = tuple(mean), tuple(std)
        self.batch_size = batch_size

    def __call__(self, images):
        """``images``: ``[N, H, W, 3]`` in 0..255 -> ``[N, num_classes]`` float64 probabilities."""
        was_training = self.model.training
        self.model.eval()
        out = []
        try:
            with paddle.no_grad():
                for i in range(0, len(images), self.batch_size):
                    logits = self.model(to_batch(images[i:i + self.batch_size], self.mean, self.std))
                    out.append(F.softmax(logits, axis=-1).numpy().astype(np.float64))
        finally:
            if was_training:
                self.model.train()
        return np.concatenate(out, axis=0)


def grid_segmentation(cells):
    """A ``segmentation_fn`` cutting the image into ``cells x cells`` equal rectangles.

    Useful on small images (CIFAR's 32x32) where superpixel algorithms return
    few, ragged segments. Segment ids are ``0 .. cells**2 - 1`` row-major.
    """

    def segment(image):
        h, w = image.shape[:2]
        if cells > min(h, w):
            raise ValueError(f"cannot cut a {h}x{w} image into {cells}x{cells} cells; use fewer cells")
        rows = np.minimum(np.arange(h) * cells // h, cells - 1)
        cols = np.minimum(np.arange(w) * cells // w, cells - 1)
        return rows[:, None] * cells + cols[None, :]

    return segment


@dataclass
class LimeExplanation:
    """Result of :func:`explain_lime`.

    Attributes:
        image: The explained image, uint8 ``[H, W, 3]``.
        label: The explained class index.
        heatmap: ``[H, W]`` float map: each pixel carries the LIME weight of its
            superpixel for ``label`` (positive: supports the class).
        segments: ``[H, W]`` int superpixel ids.
        probs: Class probabilities of the unperturbed image.
        score: R^2 of the local linear model (how faithful it is).
        raw: The ``lime`` ``ImageExplanation`` (for its own plotting helpers).
    """

    image: np.ndarray
    label: int
    heatmap: np.ndarray
    segments: np.ndarray
    probs: np.ndarray
    score: float
    raw: object


def explain_lime(
    model,
    image,
    label=None,
    num_samples=1000,
    batch_size=32,
    segmentation_fn=None,
    hide_color=0,
    mean=None,
    std=None,
    seed=0,
):
    """Explain one prediction of ``model`` on ``image`` with LIME.

    Args:
        model: A Paddle classifier (built by :func:`paddle_vits.create_model`
            unless ``mean``/``std`` are given).
        image: uint8 ``[H, W, 3]`` at the model's input size (see
            :func:`paddle_vits.explain.load_image`).
        label: Class to explain; default: the predicted class.
        num_samples: Perturbed images to evaluate (the cost: ``num_samples``
            forward passes). The source notebook used 10000.
        batch_size: Images per forward pass.
        segmentation_fn: Superpixel function ``image -> [H, W] ids``; default:
            ``lime``'s quickshift (kernel 4, max_dist 200, ratio 0.2).
        hide_color: Value of switched-off superpixels (0 = black); ``None``
            uses each superpixel's mean color.
        mean: Normalisation mean override.
        std: Normalisation std override.
        seed: Seed for the sampling and the segmentation.

    Returns:
        LimeExplanation
    """
    from lime import lime_image

    image = _check_image(image)
    classifier_fn = PaddleClassifierFn(model, mean=mean, std=std, batch_size=batch_size)
    probs = classifier_fn(image[None])[0]
    if label is None:
        label = int(np.argmax(probs))
    if not 0 <= label < len(probs):
        raise ValueError(f"label {label} is out of range for a model with {len(probs)} classes")
    explainer = lime_image.LimeImageExplainer(random_state=seed)
    raw = explainer.explain_instance(
        image.astype(np.float64),
        classifier_fn,
        labels=(label,),
        top_labels=None,
        hide_color=hide_color,
        num_samples=num_samples,
        batch_size=batch_size,
        segmentation_fn=segmentation_fn,
        random_seed=seed,
    )
    weights = np.zeros(int(raw.segments.max()) + 1, dtype=np.float64)
    for segment, weight in raw.local_exp[label]:
        weights[segment] = weight
    return LimeExplanation(
        image=image,
        label=label,
        heatmap=weights[raw.segments].astype(np.float32),
        segments=raw.segments,
        probs=probs,
        score=float(raw.score),
        raw=raw,
    )
