"""A ``torch.utils.data.IterableDataset`` over a cellshard ``Dataset`` (needs torch).

The feed already splits by rank, so one loader per rank: use ``num_workers=0`` (reads run
on the feed's own threads with the GIL released); the stream does not depend on it.
"""

import torch
from torch.utils.data import IterableDataset

from . import Dataset


class CellshardIterable(IterableDataset):
    """Yields ``(tensors, valid, site_ids)`` per step of ``epoch``; ``set_epoch`` moves on."""

    def __init__(self, dataset: Dataset, epoch: int = 0):
        super().__init__()
        self.dataset = dataset
        self.epoch = epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        for batch in self.dataset.epoch(self.epoch):
            yield torch.from_numpy(batch.tensors), torch.from_numpy(batch.valid), batch.site_ids

    def state_dict(self) -> dict:
        return {"cellshard": self.dataset.state_dict(), "epoch": self.epoch}
