"""Run logs (JSON/CSV), learning curves and a prediction grid.

The plot functions return their :class:`matplotlib.figure.Figure` (made without pyplot, so a
notebook's backend is left alone; a notebook displays a returned figure) and save it when given a path.
"""
import csv
import io
import json
import os

import numpy as np
from matplotlib.figure import Figure

from ..utils.io import atomic_path, atomic_write_text


def _csv_text(rows):
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def write_logs(out_dir, log):
    """``log.json`` (everything), ``steps.csv`` (per-step loss/lr) and ``epochs.csv``, each written atomically."""
    atomic_write_text(os.path.join(out_dir, "log.json"), json.dumps(log, indent=1))
    for name, rows in (("steps.csv", log["steps"]), ("epochs.csv", log["epochs"])):
        if rows:
            atomic_write_text(os.path.join(out_dir, name), _csv_text(rows))


def _save(fig, path):
    if path is not None:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    return fig


def plot_curves(log, path=None):
    """Loss (per step, per epoch) and accuracy (per epoch) curves, plus the last evaluation
    of a run stopped mid-epoch (``log["final"]``).

    Args:
        log: A run's ``log.json`` contents.
        path: Also save the figure there as PNG.

    Returns:
        matplotlib.figure.Figure
    """
    fig = Figure(figsize=(11, 4))
    ax1, ax2 = fig.subplots(1, 2)
    spe = max(1, log.get("steps_per_epoch", 1))
    steps = log["steps"]
    if steps:
        ax1.plot([s["step"] for s in steps], [s["loss"] for s in steps], lw=0.6, alpha=0.5, label="train (step)")
    ep = log["epochs"]
    if ep:
        x = [e["step"] for e in ep]
        ax1.plot(x, [e["train_loss"] for e in ep], "o-", label="train (epoch)")
        ax1.plot(x, [e["val_loss"] for e in ep], "o-", label="val")
        ax2.plot([s / spe for s in x], [100 * e["train_acc"] for e in ep], "o-", label="train")
        ax2.plot([s / spe for s in x], [100 * e["val_acc"] for e in ep], "o-", label="val")
    final = log.get("final")
    if final and final["step"] not in {e["step"] for e in ep}:
        ax1.plot([final["step"]], [final["val_loss"]], "kx", label=f"val (step {final['step']})")
        ax2.plot([final["step"] / spe], [100 * final["val_acc"]], "kx", label=f"val (step {final['step']})")
    ax1.set(xlabel="step", ylabel="loss", title="loss")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def plot_predictions(images, preds, labels, classes, path=None, ncols=6):
    """Grid of HWC ``images`` (uint8, or floats in [0, 1]) titled ``pred / true`` (green right, red wrong).

    Returns:
        matplotlib.figure.Figure (also saved as PNG at ``path`` when given).
    """
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig = Figure(figsize=(2 * ncols, 2.2 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, img, p, t in zip(axes.ravel(), images, preds, labels):
        ax.imshow(img)
        ax.set_title(f"{classes[p]} / {classes[t]}", fontsize=8, color="green" if p == t else "red")
    fig.suptitle("predicted / true")
    fig.tight_layout()
    return _save(fig, path)


MAX_CONFUSION_CLASSES = 100


def per_class_rows(matrix, classes):
    """Per-class rows (``class``, ``images``, ``correct``, ``accuracy``) of a confusion matrix (rows: true class)."""
    m = np.asarray(matrix)
    return [{"class": c, "images": int(m[i].sum()), "correct": int(m[i, i]),
             "accuracy": float(m[i, i] / m[i].sum()) if m[i].sum() else float("nan")} for i, c in enumerate(classes)]


def plot_confusion(matrix, classes, path=None):
    """Row-normalised confusion matrix (true class down, predicted across); names shown up to 30 classes."""
    m = np.asarray(matrix, dtype=np.float64)
    m = m / np.maximum(m.sum(1, keepdims=True), 1)
    n = len(classes)
    size = min(16.0, 3 + 0.25 * n)
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        ax.set_xticks(range(n), labels=classes, rotation=90)
        ax.set_yticks(range(n), labels=classes)
    ax.set_title(f"confusion matrix (row-normalised, {n} classes)")
    fig.tight_layout()
    return _save(fig, path)


def write_class_report(out_dir, matrix, classes, suffix=""):
    """``per_class{suffix}.csv``, ``confusion{suffix}.json`` and, for up to :data:`MAX_CONFUSION_CLASSES`
    classes, ``confusion{suffix}.png``."""
    atomic_write_text(os.path.join(out_dir, f"per_class{suffix}.csv"), _csv_text(per_class_rows(matrix, classes)))
    atomic_write_text(os.path.join(out_dir, f"confusion{suffix}.json"),
                      json.dumps({"classes": list(classes), "matrix": [list(map(int, r)) for r in matrix]}))
    if len(classes) <= MAX_CONFUSION_CLASSES:
        plot_confusion(matrix, classes, os.path.join(out_dir, f"confusion{suffix}.png"))
