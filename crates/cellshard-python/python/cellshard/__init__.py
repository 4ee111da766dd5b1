"""cellshard: training reads from a cellshard store.

``Dataset(store, where=..., batch_size=G, rank=r, world_size=W)`` pins the store's version,
selects rows with a SQL predicate over the metadata columns and yields this rank's batches:
``for batch in ds.epoch(e)`` gives ``batch.tensors`` (numpy uint8, B x C x H x W, no copy),
``batch.valid``, ``batch.site_ids`` and ``batch.samples``. ``ds.state_dict()`` is a cursor of
about 50 bytes, the same on every rank; ``Dataset.from_state(state, store, ...)`` resumes,
on any world size. ``cellshard.torch`` has a ``torch.utils.data.IterableDataset`` adapter.
"""

from ._cellshard import Batch, Dataset, EpochIter

__all__ = ["Batch", "Dataset", "EpochIter"]
