"""Top-1/top-5 evaluation of a classifier.

Batches come from :func:`iterate_batches`, a small loader over a map-style
dataset whose items are numpy arrays: worker processes decode and preprocess
images, the main process runs the model. It is not ``paddle.io.DataLoader``
(which the training engine uses, also over numpy items) for two reasons of
evaluation: unreadable images are dropped (``None`` items, counted) without
breaking batch collation, and a worker that dies (the OOM killer) stops the
run at once with :class:`WorkerDiedError` (``concurrent.futures`` notices the
dead process) instead of leaving it waiting for a batch that never comes.
"""
import concurrent.futures as cf
import multiprocessing as mp
import signal
import time
from dataclasses import asdict, dataclass

import numpy as np

from ..data.imagenet import collate_skip
from ..utils.cli import UserError

__all__ = ["BatchLoader", "EvalResult", "WorkerDiedError", "accuracy_counts", "evaluate", "iterate_batches"]


class WorkerDiedError(UserError, RuntimeError):
    """An image-decoding worker process died (killed, out of memory) during evaluation."""


_WORKER_DATASET = None


def _init_worker(dataset):
    global _WORKER_DATASET
    _WORKER_DATASET = dataset


def _init_child(dataset):
    # Paddle's fatal-signal handler, inherited through fork, would print a C++ "crash" report when the
    # pool terminates the surviving workers of a broken pool: a worker just ends on SIGTERM.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _init_worker(dataset)


def _load_batch(indices):
    return collate_skip([_WORKER_DATASET[i] for i in indices])


def iterate_batches(dataset, batch_size=64, workers=0):
    """Yield ``(images, labels, n_skipped)`` batches in dataset order.

    Args:
        dataset: Map-style dataset of ``(numpy image, label)`` items, or ``None`` for a skipped item.
        batch_size: Items per batch (the last one may be smaller).
        workers: Worker processes decoding images; ``0`` loads in the main process.

    Raises:
        WorkerDiedError: a worker process died (at most ``2 * workers`` batches are in flight).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
        raise ValueError(f"workers must be an integer >= 0, got {workers!r}")
    chunks = [list(range(i, min(i + batch_size, len(dataset)))) for i in range(0, len(dataset), batch_size)]
    if workers == 0:
        _init_worker(dataset)
        try:
            for chunk in chunks:
                yield _load_batch(chunk)
        finally:
            _init_worker(None)
        return
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    pool = cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_child, initargs=(dataset,))
    pending = []
    todo = iter(chunks)
    try:
        while True:
            try:
                while len(pending) < 2 * workers:
                    chunk = next(todo, None)
                    if chunk is None:
                        break
                    pending.append(pool.submit(_load_batch, chunk))
                if not pending:
                    return
                batch = pending.pop(0).result()
            except cf.process.BrokenProcessPool:
                raise WorkerDiedError(
                    f"an image-decoding worker process died (killed, or out of memory) with {workers} workers",
                    "rerun with fewer --workers, --workers 0, or a smaller --batch-size; check `dmesg` for the "
                    "OOM killer") from None
            yield batch
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


class BatchLoader:
    """Re-iterable :func:`iterate_batches` with a length (for progress bars)."""

    def __init__(self, dataset, batch_size=64, workers=0):
        self.dataset, self.batch_size, self.workers = dataset, batch_size, workers

    def __len__(self):
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self):
        return iterate_batches(self.dataset, self.batch_size, self.workers)


def accuracy_counts(logits, labels, topk=(1, 5)):
    """Number of samples whose label is among the ``k`` highest logits, for each ``k``.

    Args:
        logits: ``[B, num_classes]`` array.
        labels: ``[B]`` integer array.
        topk: The ``k`` values (each capped at ``num_classes``).

    Returns:
        list of ints, one per ``k``.
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels).reshape(-1)  # [B] or [B, 1] -> [B]
    kmax = min(max(topk), logits.shape[1])
    # Stable descending order: ties go to the lower class index.
    order = np.argsort(-logits, axis=1, kind="stable")[:, :kmax]
    hits = order == labels[:, None]
    return [int(hits[:, : min(k, logits.shape[1])].any(axis=1).sum()) for k in topk]


@dataclass
class EvalResult:
    """Evaluation figures. Accuracies are fractions in ``[0, 1]``."""

    n_images: int
    skipped: int
    top1: float
    top5: float
    seconds: float
    images_per_sec: float

    def to_dict(self):
        return asdict(self)


def evaluate(model, loader, num_classes=None, progress=True, amp=False):
    """Top-1/top-5 accuracy of ``model`` over ``loader``.

    Args:
        model: A ``paddle.nn.Layer`` returning logits; put in eval mode here.
        loader: Iterable of ``(images, labels, n_skipped)`` (see
            :func:`iterate_batches`) or of ``(images, labels)``; arrays or tensors.
        num_classes: Checked against the logits width when given.
        progress: Show a ``tqdm`` progress bar.
        amp: Run the forward pass in float16 autocast (GPU).

    Returns:
        :class:`EvalResult`.
    """
    import paddle
    from tqdm import tqdm

    model.eval()
    correct1 = correct5 = seen = skipped = 0
    total = len(loader) if hasattr(loader, "__len__") else None
    bar = tqdm(loader, total=total, desc="eval", unit="batch", disable=not progress, dynamic_ncols=True)
    start = time.perf_counter()
    with paddle.no_grad():
        for batch in bar:
            images, labels = batch[0], batch[1]
            skipped += int(batch[2]) if len(batch) > 2 else 0
            if images is None:
                continue
            x = images if isinstance(images, paddle.Tensor) else paddle.to_tensor(images)
            with paddle.amp.auto_cast(enable=amp):
                logits = model(x)
            logits = logits.astype("float32").numpy()
            labels = labels.numpy() if isinstance(labels, paddle.Tensor) else np.asarray(labels)
            if not np.isfinite(logits).all():
                raise ValueError("the model returned NaN or infinite logits: broken weights or an overflow "
                                 "(with --amp, try without)")
            if num_classes is not None and logits.shape[1] != num_classes:
                raise ValueError(f"model returns {logits.shape[1]} logits, expected {num_classes}")
            if labels.max(initial=0) >= logits.shape[1]:
                raise ValueError(
                    f"label {int(labels.max())} is out of range for a {logits.shape[1]}-class model: "
                    "check the val list / class folders against the model's classes")
            c1, c5 = accuracy_counts(logits, labels, (1, 5))
            correct1 += c1
            correct5 += c5
            seen += len(labels)
            bar.set_postfix(top1=f"{correct1 / seen:.4f}", top5=f"{correct5 / seen:.4f}", skipped=skipped)
    bar.close()
    seconds = time.perf_counter() - start
    if seen == 0:
        raise ValueError(f"no image could be evaluated ({skipped} skipped as unreadable)")
    return EvalResult(n_images=seen, skipped=skipped, top1=correct1 / seen, top5=correct5 / seen,
                      seconds=seconds, images_per_sec=seen / seconds if seconds > 0 else float("nan"))
