"""A run's outputs: messages, logs, VisualDL scalars, plots, weights and checkpoints.

Every process keeps the log in memory; only the writer (rank 0) prints or touches the disk: on
any other rank each output method of :class:`RunLog` returns at once.
"""
import functools
import json
import os
import shutil
import sys

from ..utils.io import atomic_save, atomic_write_text, remove_stale_temps
from .checkpoint import CHECKPOINT_NAME, save_checkpoint
from .config import TrainingError
from .report import plot_curves, plot_predictions, write_class_report, write_logs

# What a run writes into its output directory (``--overwrite`` removes exactly these).
RUN_FILES = (CHECKPOINT_NAME, "best.pdparams", "best.pdopt", "final.pdparams", "final.pdopt", "log.json",
             "steps.csv", "epochs.csv", "curves.png", "predictions.png", "config.json", "classes.txt",
             "config.yaml", "best_ema.pdparams", "final_ema.pdparams", "eval.json",
             *(f"{stem}{suffix}.{ext}" for suffix in ("", "_ema")
               for stem, ext in (("per_class", "csv"), ("confusion", "json"), ("confusion", "png"))))
VISUALDL_DIR = "visualdl"


def run_files(out_dir):
    """The files of a run found in ``out_dir`` (empty when it holds none)."""
    return [n for n in RUN_FILES if os.path.isfile(os.path.join(out_dir, n))]


def _writer_only(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if self.writer:
            return method(self, *args, **kwargs)
        return None

    return wrapper


class RunLog:
    """The log of one run and the only place that writes its outputs.

    Args:
        out_dir: The run's output directory.
        writer: Whether this process writes (rank 0).
        header: First entries of ``log.json`` (config, steps per epoch, ...).
        visualdl: Also log scalars to ``out_dir/visualdl`` when VisualDL is installed.
        progress: Show progress bars.
    """

    def __init__(self, out_dir, writer, header, visualdl=True, progress=True):
        self.out_dir, self.writer, self.show_progress = out_dir, writer, progress
        self.data = {**header, "steps": [], "epochs": []}
        self.vdl = None
        if writer and visualdl:
            try:
                from visualdl import LogWriter
            except ImportError:
                LogWriter = None
            if LogWriter is not None:
                self.vdl = LogWriter(self.path(VISUALDL_DIR))

    def path(self, name):
        return os.path.join(self.out_dir, name)

    @_writer_only
    def say(self, msg):
        print(msg, flush=True)

    def progress(self, total, initial, desc):
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=desc, disable=not (self.writer and self.show_progress),
                    file=sys.stdout, dynamic_ncols=True)

    def restore(self, step, steps_per_epoch):
        """Take the rows up to ``step`` from the ``log.json`` of the run being resumed."""
        if not (self.writer and os.path.isfile(self.path("log.json"))):
            return
        try:
            with open(self.path("log.json")) as f:
                old = json.load(f)
            steps = [s for s in old["steps"] if s["step"] <= step]
            epochs = [e for e in old["epochs"] if e["epoch"] < step // steps_per_epoch]
        except (OSError, ValueError, KeyError, TypeError) as e:
            self.say(f"{self.path('log.json')} is unreadable ({type(e).__name__}: {e}); "
                     f"the log restarts at step {step}")
            return
        self.data["steps"], self.data["epochs"] = steps, epochs

    def add_step(self, row):
        self.data["steps"].append(row)
        self.scalars("train", row["step"], loss=row["loss"], lr=row["lr"])

    def add_epoch(self, row):
        self.data["epochs"].append(row)
        self.scalars("epoch", row["epoch"], **{k: row[k] for k in ("train_loss", "train_acc", "val_loss", "val_acc",
                                                                     "val_top5", "val_acc_ema", "val_top5_ema")
                                               if k in row})

    @_writer_only
    def scalars(self, prefix, step, **values):
        if self.vdl is not None:
            for k, v in values.items():
                self.vdl.add_scalar(f"{prefix}/{k}", v, step)

    @_writer_only
    def prepare(self, overwrite=False):
        """Create the output directory and remove temporaries of interrupted writes; with ``overwrite``, also
        the files (and VisualDL logs) of the run it held."""
        try:
            os.makedirs(self.out_dir, exist_ok=True)
        except OSError as e:
            raise TrainingError(f"cannot write to output dir {self.out_dir!r} ({e.strerror or e})",
                                "pass a writable --output") from e
        remove_stale_temps(self.out_dir)
        if overwrite:
            for name in run_files(self.out_dir):
                os.remove(self.path(name))
            if os.path.isdir(self.path(VISUALDL_DIR)):
                shutil.rmtree(self.path(VISUALDL_DIR))

    @_writer_only
    def write_text(self, name, text):
        atomic_write_text(self.path(name), text)

    @_writer_only
    def save(self, obj, name):
        atomic_save(obj, self.path(name))

    @_writer_only
    def checkpoint(self, model, optimizer, scheduler, scaler, **state):
        """The logs up to this step, then the checkpoint for ``--resume``."""
        write_logs(self.out_dir, self.data)
        save_checkpoint(self.path(CHECKPOINT_NAME), model, optimizer, scheduler, scaler, **state)

    @_writer_only
    def write_reports(self):
        write_logs(self.out_dir, self.data)
        plot_curves(self.data, self.path("curves.png"))

    @_writer_only
    def predictions(self, images, preds, labels, classes):
        plot_predictions(images, preds, labels, classes, path=self.path("predictions.png"))

    @_writer_only
    def class_report(self, matrix, classes, suffix=""):
        write_class_report(self.out_dir, matrix, classes, suffix)

    @_writer_only
    def close(self):
        if self.vdl is not None:
            self.vdl.close()
