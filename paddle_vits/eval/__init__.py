"""Classification evaluation: top-k accuracy over a loader."""
from .classification import BatchLoader, EvalResult, WorkerDiedError, accuracy_counts, evaluate, iterate_batches

__all__ = ["BatchLoader", "EvalResult", "WorkerDiedError", "accuracy_counts", "evaluate", "iterate_batches"]
