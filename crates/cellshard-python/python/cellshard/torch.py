"""A ``torch.utils.data.IterableDataset`` over a cellshard ``Dataset`` (needs torch).

The feed already splits by rank and reads on its own threads, so ``num_workers=0`` is
enough; with ``n`` workers each reads every n-th step and DataLoader's round-robin gives the
same stream as one. Use ``DataLoader(CellshardIterable(ds), batch_size=None)``: each item is
already a batch.
"""

import torch
from torch.utils.data import IterableDataset, get_worker_info

from . import Dataset


class CellshardIterable(IterableDataset):
    """Yields ``(tensors, valid, site_ids)`` per step of ``epoch``; ``set_epoch`` moves on.

    ``tensors`` is a uint8 tensor B x C x H x W sharing the batch's memory, ``valid`` a bool
    tensor B. Resume with ``dataset.state_at(epoch, steps_done)``.
    """

    def __init__(self, dataset: Dataset, epoch: int = 0):
        super().__init__()
        self.dataset = dataset
        self.epoch = epoch
        # A dataset restored from a state starts its epoch where the state says; every
        # iteration of this epoch starts there, in the main process and in any worker.
        restored = dataset.restored
        self._start = restored[1] if restored and restored[0] == epoch else 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._start = 0

    def __len__(self):
        return len(self.dataset)

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        batches = self.dataset.epoch(self.epoch, worker=worker, workers=workers, start=self._start)
        for batch in batches:
            yield torch.from_numpy(batch.tensors), torch.from_numpy(batch.valid), batch.site_ids
