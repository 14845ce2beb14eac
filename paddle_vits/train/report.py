"""Run logs (JSON/CSV), learning curves and a prediction grid."""
import csv
import json
import os

import numpy as np
from matplotlib.figure import Figure


def atomic_text(path, text):
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_logs(out_dir, log):
    """``log.json`` (everything), ``steps.csv`` (per-step loss/lr) and ``epochs.csv``."""
    atomic_text(os.path.join(out_dir, "log.json"), json.dumps(log, indent=1))
    for name, rows in (("steps.csv", log["steps"]), ("epochs.csv", log["epochs"])):
        if not rows:
            continue
        tmp = os.path.join(out_dir, name + ".tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, os.path.join(out_dir, name))


def plot_curves(path, log):
    """Loss (per step, per epoch) and accuracy (per epoch) curves, plus the last evaluation
    of a run stopped mid-epoch (``log["final"]``)."""
    fig = Figure(figsize=(11, 4))  # no pyplot: leaves the caller's backend (e.g. a notebook's) alone
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
    fig.savefig(path, dpi=100)


def plot_predictions(path, images, preds, labels, classes, ncols=6):
    """Grid of uint8 HWC ``images`` titled ``pred / true`` (green right, red wrong)."""
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
    fig.savefig(path, dpi=100)
