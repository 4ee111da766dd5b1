"""Training reads side by side: cellshard vs MosaicML Streaming (MDS) vs Lance.

Usage: feed_compare.py STORE WORK [--rows N] [--batch-size G] [--epochs E]

The same rows of STORE (a cellshard store) are converted to MDS (zstd shards, the store's
level) and to Lance (the tensor column zstd-compressed, same level) under WORK; then each
system reads E shuffled epochs of decoded uint8 batches [G, C, H, W] on all cores, timed per
epoch (the first includes opening and, for Streaming, unpacking shards to its local cache),
with the shuffle each uses and its quality: distinct plates per batch and the entropy of the
index distance between consecutive samples (as MosaicML Streaming reports it).
"""

import argparse
import math
import os
import shutil
import time

import numpy as np
import pyarrow as pa

import cellshard

ZSTD_LEVEL = 1  # the shipped pipelines' tensor level


def quality(order, plates, g):
    per_batch = [len({plates[i] for i in order[s:s + g]}) for s in range(0, len(order), g)]
    buckets = {}
    for a, b in zip(order, order[1:]):
        d = abs(int(a) - int(b))
        k = d.bit_length()
        buckets[k] = buckets.get(k, 0) + 1
    n = max(1, len(order) - 1)
    entropy = -sum(c / n * math.log2(c / n) for c in buckets.values())
    return float(np.mean(per_batch)), entropy


def drop_page_cache():
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3")
        return True
    except OSError:
        return False


def rows_of(store, n, g):
    """(index, site_id, plate key, tensor bytes) of the first n rows in site_id order."""
    ds = cellshard.Dataset(store, batch_size=g, seed=0, clump=1 << 30)  # one run: site_id order
    seen = 0
    for b in ds.epoch(0):
        for slot, s in enumerate(b.samples):
            if s is None or s >= n:
                continue
            yield s, b.site_ids[slot], b.tensors[slot].tobytes()
            seen += 1
    assert seen == min(n, ds.rows), (seen, n)


def convert(store, work, n, g, shape):
    from streaming import MDSWriter

    mds, lnc = os.path.join(work, "mds"), os.path.join(work, "lance")
    if not os.path.exists(os.path.join(mds, "index.json")):
        shutil.rmtree(mds, ignore_errors=True)
        with MDSWriter(out=mds, columns={"tensor": "bytes", "index": "int"},
                       compression=f"zstd:{ZSTD_LEVEL}", size_limit=1 << 27) as w:
            for i, _, t in rows_of(store, n, g):
                w.write({"tensor": t, "index": i})
    if not os.path.exists(lnc):
        import lance

        field = pa.field("tensor", pa.large_binary(), metadata={
            "lance-encoding:compression": "zstd",
            "lance-encoding:compression-level": str(ZSTD_LEVEL)})
        schema = pa.schema([field, pa.field("index", pa.int64())])

        def batches():
            buf = []
            for i, _, t in rows_of(store, n, g):
                buf.append((t, i))
                if len(buf) == 64:
                    yield pa.record_batch([pa.array([b[0] for b in buf], pa.large_binary()),
                                           pa.array([b[1] for b in buf], pa.int64())],
                                          schema=schema)
                    buf = []
            if buf:
                yield pa.record_batch([pa.array([b[0] for b in buf], pa.large_binary()),
                                       pa.array([b[1] for b in buf], pa.int64())], schema=schema)

        lance.write_dataset(pa.RecordBatchReader.from_batches(schema, batches()), lnc)
    return mds, lnc


def du(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def bench_cellshard(store, n, g, epochs, threads):
    out = []
    ds = cellshard.Dataset(store, batch_size=g, seed=1, threads=threads)
    for e in range(epochs):
        t0, count, order = time.perf_counter(), 0, []
        for b in ds.epoch(e):
            x = b.tensors
            count += int(b.valid.sum())
            order.extend(s for s in b.samples if s is not None)
            assert x.dtype == np.uint8
        out.append((count / (time.perf_counter() - t0), order))
    return out


def bench_streaming(mds, work, g, epochs, shape):
    import torch
    from streaming import StreamingDataset
    from streaming.base.util import clean_stale_shared_memory
    from torch.utils.data import DataLoader

    cache = os.path.join(work, "mds-cache")
    shutil.rmtree(cache, ignore_errors=True)
    clean_stale_shared_memory()

    def collate(samples):
        x = np.stack([np.frombuffer(s["tensor"], np.uint8).reshape(shape) for s in samples])
        return x, [s["index"] for s in samples]

    t0 = time.perf_counter()
    ds = StreamingDataset(remote=mds, local=cache, shuffle=True, shuffle_seed=1,
                          shuffle_algo="py1e", batch_size=g)
    out = []
    for e in range(epochs):
        loader = DataLoader(ds, batch_size=g, num_workers=2, collate_fn=collate,
                            persistent_workers=False)
        count, order = 0, []
        for x, idx in loader:
            count += len(idx)
            order.extend(idx)
        out.append((count / (time.perf_counter() - t0), order))
        t0 = time.perf_counter()
    del ds, torch
    return out


def bench_lance(lnc, n, g, epochs, shape):
    import lance

    out = []
    t0 = time.perf_counter()
    ds = lance.dataset(lnc)
    rows = ds.count_rows()
    for e in range(epochs):
        perm = np.random.default_rng(e).permutation(rows)
        count, order = 0, []
        for s in range(0, rows, g):
            idx = np.sort(perm[s:s + g])
            t = ds.take(idx, columns=["tensor", "index"])
            col = t.column("tensor").combine_chunks()
            data = np.frombuffer(col.buffers()[2], np.uint8)
            x = data[: len(idx) * int(np.prod(shape))].reshape((len(idx),) + shape)
            count += len(idx)
            order.extend(t.column("index").to_pylist())
            assert x.dtype == np.uint8
        out.append((count / (time.perf_counter() - t0), order))
        t0 = time.perf_counter()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("store")
    ap.add_argument("work")
    ap.add_argument("--rows", type=int, default=1 << 30)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=2)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    probe = cellshard.Dataset(a.store, batch_size=1)
    n = min(a.rows, probe.rows)
    first = next(iter(probe.epoch(0)))
    shape = tuple(first.tensors.shape[1:])
    ids = cellshard.sql(a.store, "SELECT site_id FROM sites ORDER BY site_id").to_pyarrow()
    plates = ["_".join(s.split("_")[:2]) for s in ids.column("site_id").to_pylist()][:n]
    assert n == probe.rows, "the comparison reads every row of the store"
    mds, lnc = convert(a.store, a.work, n, a.batch_size, shape)
    print(f"rows {n}, tensor {shape}, global batch {a.batch_size}, 2 cores")
    print(f"on disk: cellshard {probe.bytes_to_read >> 20} MiB of tensor pages, "
          f"MDS {du(mds) >> 20} MiB, Lance {du(lnc) >> 20} MiB")
    runs = [
        ("cellshard", "exact permutation (keyed bijection)",
         lambda: bench_cellshard(a.store, n, a.batch_size, a.epochs, 0)),
        ("MosaicML Streaming", "py1e (shuffle blocks of shards)",
         lambda: bench_streaming(mds, a.work, a.batch_size, a.epochs, shape)),
        ("Lance", "exact permutation (numpy), take() per batch",
         lambda: bench_lance(lnc, n, a.batch_size, a.epochs, shape)),
    ]
    print(f"| system | shuffle | epoch 1 (cold) tensors/s | later epochs tensors/s | "
          f"plates per batch | index-distance entropy (bits) |")
    print("|---|---|---|---|---|---|")
    for name, shuffle, run in runs:
        cold = drop_page_cache()
        res = run()
        q = quality(res[-1][1], plates, a.batch_size)
        later = np.mean([r for r, _ in res[1:]]) if len(res) > 1 else float("nan")
        assert sorted(res[-1][1]) == list(range(n)), f"{name} did not read every row once"
        print(f"| {name} | {shuffle} | {res[0][0]:.1f}{'' if cold else ' (page cache warm)'} | "
              f"{later:.1f} | {q[0]:.1f} | {q[1]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
