"""Resumable, sharded batch order."""
import numpy as np
import paddle

from .config import TrainingError


class EpochBatchSampler(paddle.io.BatchSampler):
    """Shuffled, sharded batches whose order is a function of ``(seed, epoch)``.

    Each epoch draws one permutation of the dataset, drops the tail that does
    not fill ``batch_size * world_size``, and gives rank ``r`` every
    ``world_size``-th sample (the scheme of ``paddle.io.DistributedBatchSampler``,
    made resumable: :meth:`set_epoch` takes the number of batches to skip).
    """

    def __init__(self, num_samples, batch_size, seed=0, rank=0, world_size=1):
        self.num_samples, self.batch_size = num_samples, batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch, self.start = 0, 0
        if len(self) == 0:
            raise TrainingError(f"{num_samples} training images cannot fill one batch of {batch_size} x "
                                f"{world_size} process(es)", "lower --batch-size")

    def set_epoch(self, epoch, start_batch=0):
        """Use epoch ``epoch``'s permutation and start at its batch ``start_batch`` (to resume)."""
        self.epoch, self.start = int(epoch), int(start_batch)

    def __len__(self):
        return self.num_samples // (self.batch_size * self.world_size)

    def __iter__(self):
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples)
        per_step = self.batch_size * self.world_size
        for b in range(self.start, len(self)):
            chunk = perm[b * per_step:(b + 1) * per_step]
            yield chunk[self.rank::self.world_size].tolist()
