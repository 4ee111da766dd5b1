"""cellshard: training reads from a cellshard store.

``Dataset(store, where=..., batch_size=G, rank=r, world_size=W)`` pins the store's version,
selects rows with a SQL predicate over the metadata columns and yields this rank's batches:
``for batch in ds.epoch(e)`` gives ``batch.tensors`` (numpy uint8, B x C x H x W, no copy),
``batch.valid``, ``batch.site_ids``, ``batch.samples`` and ``batch.metadata`` (Arrow).
``ds.state_dict()`` is a cursor of 77 bytes, the same on every rank;
``Dataset.from_state(state, store, ...)`` resumes, on any world size. ``cellshard.sql`` runs
the CLI's SQL and returns Arrow. ``cellshard.torch`` has a ``torch.utils.data.IterableDataset``
adapter.

Failures raise ``cellshard.Error`` subclasses (``cellshard.errors``): ``InvalidInput`` (also a
``ValueError``), ``NotFound`` (``FileNotFoundError``), ``StoreError`` (``OSError``) and
``InternalError``.
"""

import numbers
import os

from ._cellshard import ArrowData, Batch, Feed, Stream, read_state
from ._cellshard import sql as _sql
from ._cellshard import write_embeddings as _write_embeddings
from .errors import Error, InternalError, InvalidInput, NotFound, StoreError

__all__ = ["ArrowData", "Batch", "Dataset", "sql", "write_embeddings", "read_state", "Error", "InvalidInput",
           "NotFound", "StoreError", "InternalError"]

READ_BUDGET = 256 << 20
MEMORY_BUDGET = 2 << 30
# Decode threads a feed may start.
MAX_THREADS = 1024
_U64 = (1 << 64) - 1
_I64 = (1 << 63) - 1


def _int(name, value, lo=0, hi=_U64):
    """``value`` as an int within ``lo..=hi``, or ``InvalidInput`` (never an OverflowError
    from the extension)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidInput(f"{name} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise InvalidInput(f"{name} {value} is out of range: need {lo} <= {name} <= {hi}")
    return int(value)


def _opt_int(name, value, lo=0, hi=_U64):
    return None if value is None else _int(name, value, lo, hi)


def sql(store, query, version=None, store_options=None, allow_writes=False,
        query_memory=None, timeout=None):
    """Run one SQL statement over ``store`` in the session ``cellshard sql`` opens (tables,
    views, tensor functions). Returns ``ArrowData``: ``pyarrow.table(result)``,
    ``polars.DataFrame(result)`` or ``result.to_pyarrow()``.

    The session is read-only: only queries run (``SELECT``, ``WITH``, ``EXPLAIN``), and
    ``COPY``, ``CREATE EXTERNAL TABLE``, DDL, DML and ``SET`` raise ``InvalidInput``, so a
    service may pass analysts' SQL through. ``allow_writes=True`` runs them.
    ``query_memory`` bounds the bytes of operator state (sorts, joins, aggregates); a query
    past it raises ``StoreError`` ("resources exhausted").

    ``timeout`` (seconds) runs the query in a worker process of its own (``python -m
    cellshard query-worker``), killed at the timeout, so even a plan that never yields
    gives its CPU and memory back; the call then raises ``StoreError``. With
    ``query_memory`` that process is also killed past its idle size plus the limit."""
    version = _opt_int("version", version, lo=-_I64 - 1, hi=_I64)
    query_memory = _opt_int("query_memory", query_memory)
    if timeout is not None and not (isinstance(timeout, numbers.Real) and timeout > 0
                                    and timeout < float("inf")):
        raise InvalidInput(f"timeout {timeout!r}: need a positive number of seconds")
    return _sql(store, query, version=version, store_options=store_options,
                allow_writes=allow_writes, query_memory=query_memory, timeout=timeout)


def _channel_indexes(channels, names):
    """``channels`` (names, or numbers from 1 as in the store) as 0-based indexes."""
    if channels is None:
        return None
    if isinstance(channels, (str, int)):
        channels = [channels]
    out = []
    for c in channels:
        if isinstance(c, bool) or not isinstance(c, (str, int)):
            raise InvalidInput(f"channels: {c!r} is neither a channel name nor a number")
        if isinstance(c, int):
            if not 1 <= c <= len(names):
                raise InvalidInput(f"channels: {c} is outside 1..={len(names)}")
            out.append(c - 1)
            continue
        match = [i for i, n in enumerate(names) if n.lower() == c.lower()]
        if not match:
            raise InvalidInput(f"channels: {c!r} is not one of the store's channels "
                               f"({', '.join(names)})")
        out.append(match[0])
    if not out or len(set(out)) != len(out):
        raise InvalidInput(f"channels {channels!r}: name each channel once, at least one")
    return out


def write_embeddings(store, model, site_ids, vectors, store_options=None):
    """Store ``vectors`` (array-like, N x D, stored as float32) for ``site_ids`` (N site
    ids) as model ``model`` in the store's ``embeddings`` table, replacing that model's rows
    in one commit (readers see the old rows or the new ones). Returns ``{"model", "rows",
    "dim", "version"}``. SQL: ``SELECT site_id, vector FROM embeddings WHERE model = ...``."""
    import numpy as np
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    if v.ndim != 2 or v.shape[0] == 0 or v.shape[1] == 0:
        raise InvalidInput(f"vectors must be a non-empty N x D array, got shape {v.shape}")
    ids = [str(s) for s in site_ids]
    if len(ids) != v.shape[0]:
        raise InvalidInput(f"{len(ids)} site ids for {v.shape[0]} vectors")
    return _write_embeddings(store, str(model), ids, v, store_options=store_options)


class Dataset:
    """One rank's view of a store for training.

    ``batch_size`` is the global batch G (all ranks together); every rank runs the same
    number of steps, and over an epoch every selected row is seen exactly once
    (``tail="pad_masked"``: fixed shapes, padded slots have ``valid == False``). The order
    of an epoch depends only on (store version, predicate, split, seed, epoch).

    Reads run on Rust threads with the GIL released: ``threads`` decode threads (0: one per
    core), at most ``read_budget`` compressed bytes fetched ahead and ``memory_budget``
    bytes of decoded batches read ahead (a batch larger than ``memory_budget`` is refused
    with ``InvalidInput`` before anything is allocated).

    ``channels`` picks channels by name (``["DNA", "Mito"]``, see ``channel_names``) or by
    number from 1: each batch's ``tensors`` is then a copy holding those channels, in that
    order.

    The dataset survives ``fork`` (a child reopens the store at the pinned version on first
    use) and pickling (for ``spawn``), so DataLoader workers of either kind can use it; see
    ``epoch(e, worker=k, workers=n)``.
    """

    def __init__(self, store, where=None, columns=None, version=None, seed=0, batch_size=256,
                 rank=0, world_size=1, tail="pad_masked", clump=1, split=None, take=None,
                 threads=0, read_budget=READ_BUDGET, memory_budget=MEMORY_BUDGET,
                 store_options=None, channels=None, _state=None):
        version = _opt_int("version", version, lo=-_I64 - 1, hi=_I64)
        seed, clump = _int("seed", seed), _int("clump", clump, lo=1)
        batch_size = _int("batch_size", batch_size)
        world_size = _int("world_size", world_size, lo=1)
        rank = _int("rank", rank, hi=world_size - 1)
        threads = _int("threads", threads, hi=MAX_THREADS)
        take = _opt_int("take", take)
        read_budget = _int("read_budget", read_budget, lo=1)
        memory_budget = _int("memory_budget", memory_budget, lo=1)
        self._kwargs = dict(store=store, where=where, columns=columns, version=version,
                            seed=seed, batch_size=batch_size, rank=rank,
                            world_size=world_size, tail=tail, clump=clump, split=split,
                            take=take, threads=threads, read_budget=read_budget,
                            memory_budget=memory_budget, store_options=store_options)
        self._epoch, self._position = 0, 0
        if _state is not None:
            s = read_state(_state)
            self._kwargs.update(version=s["version"], seed=s["seed"], clump=s["clump"],
                                tail=s["tail"])
            self._epoch, self._position = s["epoch"], s["position"]
        self._restored = (self._epoch, self._position) if _state is not None else None
        self._feed = Feed(**self._kwargs, state=_state)
        self._pick = _channel_indexes(channels, self._feed.channel_names)
        # Reopened elsewhere (a forked child, an unpickled copy) at the same version.
        self._kwargs["version"] = self._feed.version
        self._pid = os.getpid()

    @classmethod
    def from_state(cls, state, store, **kwargs):
        """Resume from ``state`` (bytes of ``state_dict()``) on any world size and rank. The
        version, seed, clump and tail come from the state; ``where`` and ``split`` must be
        the ones it was taken with, and ``batch_size`` may differ."""
        return cls(store, _state=bytes(state), **kwargs)

    def _live(self):
        if os.getpid() != self._pid:
            # A forked child: the parent's reader threads do not exist here.
            self._feed = Feed(**self._kwargs)
            self._pid = os.getpid()
        return self._feed

    @property
    def channel_names(self):
        """The store's channel names in stacking order (``w1``.. where it names none)."""
        return list(self._feed.channel_names)

    def __getstate__(self):
        return {"kwargs": self._kwargs, "epoch": self._epoch, "position": self._position,
                "restored": self._restored, "pick": self._pick}

    def __setstate__(self, state):
        self._kwargs = state["kwargs"]
        self._epoch, self._position = state["epoch"], state["position"]
        self._restored = state["restored"]
        self._pick = state.get("pick")
        self._feed = Feed(**self._kwargs)
        self._pid = os.getpid()

    @property
    def rows(self):
        """Rows selected at the pinned version."""
        return self._live().rows

    @property
    def version(self):
        """The pinned ``sites`` version."""
        return self._live().version

    @property
    def bytes_to_read(self):
        """Compressed tensor bytes an epoch reads, over all ranks."""
        return self._live().bytes_to_read

    @property
    def batch_size(self):
        """The global batch size G."""
        return self._kwargs["batch_size"]

    def __len__(self):
        """Steps in a whole epoch (the same on every rank)."""
        return self._live().steps(0)

    def shuffle_quality(self, epoch=0):
        """(distinct plates per global batch, bits of index-distance entropy) of ``epoch``."""
        return self._live().shuffle_quality(_int("epoch", epoch))

    def epoch(self, epoch, worker=0, workers=1, start=None):
        """This rank's batches of ``epoch``, from where the dataset stands in it (or from
        global position ``start``).

        With ``workers=n``, only steps ``worker, worker+n, ...`` of the rest of the epoch:
        n DataLoader workers, read round-robin as DataLoader does, give the same stream as
        one. The position (``state_dict``) moves only when ``workers == 1``."""
        epoch, workers = _int("epoch", epoch), _int("workers", workers, lo=1)
        worker = _int("worker", worker, hi=workers - 1)
        start = _opt_int("start", start)
        feed = self._live()
        if epoch != self._epoch:
            self._epoch, self._position = epoch, 0
        if start is not None:
            self._position = start
        g = self.batch_size
        start = self._position
        steps = feed.steps(start)
        starts = [start + t * g for t in range(worker, steps, workers)]
        return self._batches(feed, epoch, starts, workers == 1)

    def _batches(self, feed, epoch, starts, track):
        for batch in feed.stream(epoch, starts):
            if self._pick is not None:
                # A copy of the chosen channels, in the order asked for.
                batch.tensors = batch.tensors[:, self._pick]
            if track and self._epoch == epoch:
                self._position = batch.start + self.batch_size
            yield batch

    @property
    def position(self):
        """(epoch, global position) after the last batch handed out."""
        return self._epoch, self._position

    @property
    def restored(self):
        """(epoch, global position) of the state this dataset was made from, or None."""
        return self._restored

    def state_dict(self):
        """The position after the last batch handed out: 77 bytes, the same on every rank."""
        return self._live().cursor(self._epoch, self._position)

    def state_at(self, epoch, steps):
        """The cursor after ``steps`` whole steps of ``epoch`` (for loaders that count steps
        themselves, e.g. with several DataLoader workers)."""
        epoch, steps = _int("epoch", epoch), _int("steps", steps)
        return self._live().cursor(epoch, _int("steps x batch_size", steps * self.batch_size))

    def __repr__(self):
        k = self._kwargs
        return (f"cellshard.Dataset({k['store']!r}, rows={self.rows}, version={k['version']}, "
                f"batch_size={k['batch_size']}, rank={k['rank']}, world_size={k['world_size']})")
