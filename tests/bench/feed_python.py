"""The training feed from Python against `cellshard feed bench`, on one store.

Usage: feed_python.py STORE [--batch-size G] [--epochs E] [--threads N]

Reads E shuffled epochs of uint8 batches [G, C, H, W] through `cellshard.Dataset`, touching
every tensor once (a sum over the batch's bytes, as a consumer's copy to a device would), and
prints tensors/s per epoch, the time to the first batch and the exactly-once check.
"""

import argparse
import time

import numpy as np

import cellshard


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("store")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--no-touch", action="store_true", help="leave the tensors untouched")
    a = ap.parse_args()
    t0 = time.perf_counter()
    ds = cellshard.Dataset(a.store, batch_size=a.batch_size, seed=1, threads=a.threads)
    first = None
    for e in range(a.epochs):
        start, count, seen, touched = time.perf_counter(), 0, [], 0
        for b in ds.epoch(e):
            if first is None:
                first = time.perf_counter() - t0
            x = b.tensors
            assert x.dtype == np.uint8 and x.flags["C_CONTIGUOUS"]
            if not a.no_touch:
                touched += int(x.view(np.uint64).sum(dtype=np.uint64) & 1)
            count += int(b.valid.sum())
            seen.extend(s for s in b.samples if s is not None)
        secs = time.perf_counter() - start
        assert sorted(seen) == list(range(ds.rows)), "every row exactly once"
        print(f"epoch {e + 1}: {count / secs:.1f} tensors/s ({count} tensors, {secs:.2f} s)",
              flush=True)
    print(f"first batch: {first:.3f} s (open the store, select, read one batch)")


if __name__ == "__main__":
    main()
