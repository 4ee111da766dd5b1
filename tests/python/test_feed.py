"""The training feed from Python: the guarantees of crates/cellshard-feed, through the
installed `cellshard` package. Usage: test_feed.py STORE (a store of 4 sites)."""

import sys

import numpy as np

import cellshard


def epoch_samples(store, g, w, e):
    ranks = [cellshard.Dataset(store, batch_size=g, world_size=w, rank=r, seed=3) for r in range(w)]
    steps = [list(ds.epoch(e)) for ds in ranks]
    assert len({len(s) for s in steps}) == 1, "every rank runs the same steps"
    return steps


def main():
    store = sys.argv[1]
    one = cellshard.Dataset(store, batch_size=3, seed=3)
    assert one.rows == 4 and len(one) == 2, (one.rows, len(one))

    # Exactly once over ranks, fixed shapes, masked padding, tensors handed over without a copy.
    steps = epoch_samples(store, 3, 2, 0)
    seen = []
    for rank in steps:
        for b in rank:
            assert b.tensors.dtype == np.uint8 and b.tensors.shape == (2, 6, 512, 512), b.tensors.shape
            assert b.valid.dtype == np.bool_ and b.valid.shape == (2,)
            assert b.tensors.base is not None, "the array should wrap Rust memory"
            for slot, s in enumerate(b.samples):
                if s is None:
                    assert not b.valid[slot] and not b.tensors[slot].any()
                else:
                    seen.append(s)
    assert sorted(seen) == [0, 1, 2, 3], seen

    # Resume: a cursor after the first step, on another world size, continues the epoch.
    ds = cellshard.Dataset(store, batch_size=2, seed=3)
    it = ds.epoch(1)
    first = next(it)
    state = ds.state_dict()
    assert isinstance(state, bytes) and len(state) < 100
    rest = [s for b in it for s in b.samples if s is not None]
    resumed = [cellshard.Dataset.from_state(state, store, batch_size=2, world_size=2, rank=r) for r in range(2)]
    again = []
    for step in zip(*[list(r.epoch(1)) for r in resumed]):
        again.extend(s for b in step for s in b.samples if s is not None)
    assert again == rest, (again, rest)
    assert sorted(again + [s for s in first.samples if s is not None]) == [0, 1, 2, 3]

    # Bad input is a clear error at construction.
    try:
        cellshard.Dataset(store, where="no_such_column = 1")
    except ValueError as e:
        assert "no_such_column" in str(e), e
    else:
        raise AssertionError("a bad predicate was accepted")

    try:
        import torch  # noqa: F401
    except ImportError:
        print("skipped: the torch adapter (torch is not installed)")
    else:
        from cellshard.torch import CellshardIterable

        batches = list(CellshardIterable(cellshard.Dataset(store, batch_size=2)))
        assert len(batches) == 2 and batches[0][0].shape == (2, 6, 512, 512)
    print("ok: cellshard feed from Python")


main()
