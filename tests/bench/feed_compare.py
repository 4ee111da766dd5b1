"""Training reads side by side: cellshard against LitData, WebDataset, MosaicML Streaming
and Lance, from the same rows, in one run.

Usage: feed_compare.py WORK --store CODEC=PATH [--store ...] [--rounds R] [--epochs E]
                       [--batch-size G] [--only SUBSTRING ...]

The rows of the first store, in site_id order, are exported once to WORK/rows.u8, and each
peer's format is built from them under WORK (each in the configurations its documentation
recommends: uncompressed and zstd-1 where it has a codec). Then every configuration reads E
shuffled epochs of uint8 batches [G, C, H, W] in its own process, round after round
(interleaved), with the page cache dropped before each when the machine allows it. Each
consumer touches every byte of each batch once (a sum, as a copy to a device would).

Per configuration it prints the median over rounds of: tensors/s in epoch 1 (which includes
opening the dataset and, for a cold page cache, reading the disk) and epoch 2, the time to
the first batch, the peak memory of the process and its workers (summed PSS, sampled every
50 ms), disk bytes (for cellshard, the tensor pages of the store's current version), and the
shuffle spread: distinct 64-row blocks of the storage order that one batch draws from, beside
what a uniform shuffle gives. Every configuration must deliver
every row exactly once per epoch, or the script fails.
"""

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from importlib import metadata

import numpy as np

BLOCK = 64  # rows of storage order per block, for the shuffle spread
ZSTD_LEVEL = 1  # the shipped pipelines' tensor level
WDS_BUFFER = 256  # WebDataset's sample shuffle buffer (about 400 MB of tensors)


# ---------------------------------------------------------------- the shared rows


def export_rows(store, work, g):
    """WORK/rows.u8 (n x C*H*W bytes, site_id order) and WORK/rows.json (n, shape)."""
    meta = os.path.join(work, "rows.json")
    if os.path.exists(meta):
        return json.load(open(meta))
    import cellshard

    ds = cellshard.Dataset(store, batch_size=g, seed=0, clump=1 << 30)  # one run: site_id order
    first = next(iter(cellshard.Dataset(store, batch_size=1).epoch(0)))
    shape = list(first.tensors.shape[1:])
    n = ds.rows
    rows = np.memmap(os.path.join(work, "rows.u8"), np.uint8, "w+", shape=(n, int(np.prod(shape))))
    seen = 0
    for b in ds.epoch(0):
        for slot, s in enumerate(b.samples):
            if s is not None:
                rows[s] = b.tensors[slot].reshape(-1)
                seen += 1
    assert seen == n
    rows.flush()
    json.dump({"n": n, "shape": shape}, open(meta, "w"))
    return {"n": n, "shape": shape}


def rows_of(work):
    m = json.load(open(os.path.join(work, "rows.json")))
    rows = np.memmap(os.path.join(work, "rows.u8"), np.uint8, "r",
                     shape=(m["n"], int(np.prod(m["shape"]))))
    return rows, tuple(m["shape"])


def cached(prefix):
    """A format builder `f(path, work, codec)` as `builder(work, codec) -> path`: built once
    under WORK/{prefix}-{codec} (a `.built` mark when complete), reused after."""

    def wrap(f):
        def builder(work, codec):
            path = format_path(work, builder, codec)
            if not os.path.exists(os.path.join(path, ".built")):
                shutil.rmtree(path, ignore_errors=True)
                f(path, work, codec)
                open(os.path.join(path, ".built"), "w").close()
            return path

        builder.prefix = prefix
        return builder

    return wrap


def format_path(work, builder, codec):
    return os.path.join(work, f"{builder.prefix}-{codec}")


class LitSample:
    """Row i as a LitData sample (a module-level callable: optimize() pickles it)."""

    def __init__(self, work):
        self.work = work

    def __call__(self, i):
        rows, shape = rows_of(self.work)
        return {"index": i, "tensor": np.asarray(rows[i]).reshape(shape)}


@cached("litdata")
def build_litdata(path, work, codec):
    import litdata

    n = len(rows_of(work)[0])
    # zstd-1 in frames of 256 samples, the writer's default wrap.
    kw = {"compression": f"zstd:{ZSTD_LEVEL}"} if codec == "zstd" else {}
    litdata.optimize(fn=LitSample(work), inputs=list(range(n)), output_dir=path,
                     chunk_bytes="64MB", num_workers=1, **kw)


@cached("wds")
def build_webdataset(path, work, codec):
    import webdataset as wds

    os.makedirs(path)
    rows, _ = rows_of(work)
    ext = "tar.gz" if codec == "gz" else "tar"
    with wds.ShardWriter(os.path.join(path, f"shard-%04d.{ext}"), maxcount=128,
                         verbose=0) as w:
        for i in range(len(rows)):
            w.write({"__key__": f"{i:07d}", "u8": rows[i].tobytes(), "index.txt": str(i)})


@cached("mds")
def build_streaming(path, work, codec):
    from streaming import MDSWriter

    rows, _ = rows_of(work)
    kw = {"compression": f"zstd:{ZSTD_LEVEL}"} if codec == "zstd" else {}
    with MDSWriter(out=path, columns={"tensor": "bytes", "index": "int"},
                   size_limit=1 << 26, **kw) as w:
        for i in range(len(rows)):
            w.write({"tensor": rows[i].tobytes(), "index": i})
    with open(os.path.join(path, ".files"), "w") as f:
        f.write("\n".join(sorted(os.listdir(path))))


@cached("lance")
def build_lance(path, work, codec):
    import lance
    import pyarrow as pa

    rows, _ = rows_of(work)
    md = ({"lance-encoding:compression": "zstd",
           "lance-encoding:compression-level": str(ZSTD_LEVEL)} if codec == "zstd"
          else {"lance-encoding:compression": "none"})
    schema = pa.schema([pa.field("tensor", pa.large_binary(), metadata=md),
                        pa.field("index", pa.int64())])

    def batches():
        for s in range(0, len(rows), 64):
            idx = list(range(s, min(s + 64, len(rows))))
            yield pa.record_batch([pa.array([rows[i].tobytes() for i in idx], pa.large_binary()),
                                   pa.array(idx, pa.int64())], schema=schema)

    lance.write_dataset(pa.RecordBatchReader.from_batches(schema, batches()), path)


# ---------------------------------------------------------------- the readers
# Each yields epochs; an epoch yields (uint8 array [B, C, H, W], list of row indices).


def read_cellshard(path, g, shape, workers):
    import cellshard

    ds = cellshard.Dataset(path, batch_size=g, seed=1)
    e = 0
    while True:
        yield ((b.tensors, [s for s in b.samples if s is not None]) for b in ds.epoch(e))
        e += 1


def read_litdata(path, g, shape, workers):
    import litdata

    ds = litdata.StreamingDataset(path, shuffle=True, seed=1, drop_last=False)
    loader = litdata.StreamingDataLoader(ds, batch_size=g, num_workers=workers)
    while True:
        yield ((b["tensor"].numpy(), b["index"].tolist()) for b in loader)


def read_webdataset(path, g, shape, workers):
    import webdataset as wds

    urls = sorted(os.path.join(path, f) for f in os.listdir(path) if ".tar" in f)

    def decode(s):
        return np.frombuffer(s["u8"], np.uint8).reshape(shape), int(s["index.txt"])

    def collate(samples):
        return np.stack([s[0] for s in samples]), [s[1] for s in samples]

    ds = (wds.WebDataset(urls, shardshuffle=len(urls), seed=1, empty_check=False)
          .shuffle(WDS_BUFFER).map(decode).batched(g, collation_fn=collate, partial=True))
    loader = wds.WebLoader(ds, batch_size=None, num_workers=workers)
    while True:
        yield iter(loader)


def read_streaming(path, g, shape, workers):
    from streaming import StreamingDataset
    from streaming.base.util import clean_stale_shared_memory
    from torch.utils.data import DataLoader

    clean_stale_shared_memory()
    # A cold start: only the files the writer wrote (Streaming unpacks compressed shards
    # beside them on first read).
    keep = set(open(os.path.join(path, ".files")).read().split())
    for f in os.listdir(path):
        if f not in keep and not f.startswith("."):
            os.remove(os.path.join(path, f))

    def collate(samples):
        return (np.stack([np.frombuffer(s["tensor"], np.uint8).reshape(shape) for s in samples]),
                [s["index"] for s in samples])

    ds = StreamingDataset(local=path, shuffle=True, shuffle_seed=1, shuffle_algo="py1e",
                          batch_size=g)
    loader = DataLoader(ds, batch_size=g, num_workers=workers, collate_fn=collate)
    while True:
        yield iter(loader)


def read_lance_take(path, g, shape, workers):
    import lance

    ds = lance.dataset(path)
    n = ds.count_rows()
    e = 0
    while True:
        def epoch(e=e):
            perm = np.random.default_rng(e).permutation(n)
            for s in range(0, n, g):
                t = ds.take(np.sort(perm[s:s + g]), columns=["tensor", "index"])
                col = t.column("tensor").combine_chunks()
                k = len(col)
                data = np.frombuffer(col.buffers()[2], np.uint8)
                start = int(np.frombuffer(col.buffers()[1], np.int64)[0])
                yield (data[start:start + k * int(np.prod(shape))].reshape((k,) + shape),
                       t.column("index").to_pylist())
        yield epoch()
        e += 1


def read_lance_torch(path, g, shape, workers):
    import lance
    from lance.sampler import ShardedBatchSampler
    from lance.torch.data import LanceDataset
    from torch.utils.data import DataLoader

    def to_batch(rb, **_):
        col = rb.column("tensor")
        data = np.frombuffer(col.buffers()[2], np.uint8)
        start = int(np.frombuffer(col.buffers()[1], np.int64)[col.offset])
        k = len(col)
        return (data[start:start + k * int(np.prod(shape))].reshape((k,) + shape),
                rb.column("index").to_pylist())

    ds = lance.dataset(path)
    e = 0
    while True:
        sampler = ShardedBatchSampler(0, 1, randomize=True, seed=e)
        t = LanceDataset(ds, batch_size=g, columns=["tensor", "index"], sampler=sampler,
                         to_tensor_fn=to_batch, auto_detect_rank=False)
        yield iter(DataLoader(t, batch_size=None, num_workers=workers))
        e += 1


# name -> (system, settings, shuffle, format builder (work, codec) or None, codec, reader, workers)
def configs(stores):
    c = {}
    for codec, path in stores.items():
        c[f"cellshard-{codec}"] = ("cellshard", f"{codec} store, Dataset, default threads",
                                   "uniform", None, path, read_cellshard, 0)
    for codec in ("none", "zstd"):
        for w in (0, 2):
            c[f"litdata-{codec}-w{w}"] = (
                "LitData", f"{codec} chunks of 64 MB, {w} workers", "chunk-local",
                build_litdata, codec, read_litdata, w)
            c[f"streaming-{codec}-w{w}"] = (
                "MosaicML Streaming", f"{codec} shards of 64 MB, py1e, {w} workers", "uniform",
                build_streaming, codec, read_streaming, w)
        c[f"lance-{codec}-take"] = ("Lance", f"{codec}, take() per batch", "uniform",
                                    build_lance, codec, read_lance_take, 0)
        c[f"lance-{codec}-torch"] = ("Lance", f"{codec}, torch LanceDataset, batch shuffle",
                                     "batch-local", build_lance, codec, read_lance_torch, 0)
    for codec in ("none", "gz"):
        for w in (0, 2):
            c[f"wds-{codec}-w{w}"] = (
                "WebDataset", f"{'tar' if codec == 'none' else 'tar.gz'} shards of 128, "
                f"buffer {WDS_BUFFER}, {w} workers", "buffer", build_webdataset, codec,
                read_webdataset, w)
    return c


# ---------------------------------------------------------------- one configuration


def run_one(work, name, stores, epochs, g):
    """In a child process: read `epochs` epochs of configuration `name`; print JSON."""
    system, _, _, builder, codec, reader, workers = configs(stores)[name]
    meta = json.load(open(os.path.join(work, "rows.json")))
    n, shape = meta["n"], tuple(meta["shape"])
    path = codec if builder is None else builder(work, codec)
    t0 = time.perf_counter()
    first, rates, spreads = None, [], []
    epochs_it = reader(path, g, shape, workers)
    for e in range(epochs):
        start = t0 if e == 0 else time.perf_counter()
        order, touched, blocks = [], 0, []
        for x, idx in next(epochs_it):
            if first is None:
                first = time.perf_counter() - t0
            x = np.ascontiguousarray(x)
            assert x.dtype == np.uint8 and x.shape[1:] == shape, (x.dtype, x.shape)
            touched += int(x.reshape(-1).view(np.uint64).sum(dtype=np.uint64) & 1)
            order.extend(int(i) for i in idx)
            if len(idx) == g:
                blocks.append(len({int(i) // BLOCK for i in idx}))
        secs = time.perf_counter() - start
        if sorted(order) != list(range(n)):
            raise SystemExit(f"{name}: epoch {e + 1} did not deliver every row exactly once "
                             f"({len(order)} rows, {len(set(order))} distinct, of {n})")
        rates.append(n / secs)
        spreads.append(float(np.mean(blocks)) if blocks else float("nan"))
    out = {"rates": rates, "first": first, "spread": spreads[-1]}
    if builder is None:  # the tensor pages of the store's current version
        import cellshard

        out["disk"] = cellshard.Dataset(path, batch_size=g).bytes_to_read
    print(json.dumps(out))


def tree_pss(root):
    """Summed PSS (bytes) of `root` and its descendants."""
    kids = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(p))
            except (OSError, ValueError, IndexError):
                pass
    total, todo = 0, [root]
    while todo:
        p = todo.pop()
        todo.extend(kids.get(p, []))
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def drop_page_cache():
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3")
        return True
    except OSError:
        return False


def du(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs
               if not f.startswith("."))


def measure(a, name, stores):
    cmd = [sys.executable, __file__, a.work, "--one", name, "--epochs", str(a.epochs),
           "--batch-size", str(a.batch_size)]
    for k, v in stores.items():
        cmd += ["--store", f"{k}={v}"]
    cold = drop_page_cache()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, done = [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], tree_pss(p.pid))
            time.sleep(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = p.communicate()
    done.set()
    th.join()
    if p.returncode != 0:
        raise SystemExit(f"{name} failed:\n{err[-3000:]}")
    r = json.loads(out.strip().splitlines()[-1])
    r["peak"], r["cold"] = peak[0], cold
    return r


def uniform_spread(n, g, rounds=200):
    rng = np.random.default_rng(0)
    return float(np.mean([len({int(i) // BLOCK for i in rng.permutation(n)[:g]})
                          for _ in range(rounds)]))


def versions():
    out = []
    for p in ("cellshard", "litdata", "webdataset", "mosaicml-streaming", "pylance", "torch",
              "numpy"):
        try:
            out.append(f"{p} {metadata.version(p)}")
        except metadata.PackageNotFoundError:
            out.append(f"{p} (not installed)")
    return ", ".join(out)


def machine():
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({model}), {mem:.0f} GiB, Linux {platform.release()}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("--store", action="append", required=True, metavar="CODEC=PATH",
                    help="a cellshard store and its tensor codec; the first is the source")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--only", action="append", default=[],
                    help="run only configurations whose name contains this")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    stores = dict(s.split("=", 1) for s in a.store)
    os.makedirs(a.work, exist_ok=True)
    if a.one:
        return run_one(a.work, a.one, stores, a.epochs, a.batch_size)

    m = export_rows(next(iter(stores.values())), a.work, a.batch_size)
    n, g = m["n"], a.batch_size
    names = [k for k in configs(stores) if not a.only or any(o in k for o in a.only)]
    with contextlib.redirect_stdout(sys.stderr):  # build every format before any timing
        for k in names:
            _, _, _, builder, codec, _, _ = configs(stores)[k]
            if builder is not None:
                builder(a.work, codec)
    res = {k: [] for k in names}
    for r in range(a.rounds):
        for k in names:
            res[k].append(measure(a, k, stores))
            x = res[k][-1]
            print(f"round {r + 1}, {k}: {x['rates'][0]:.0f} / {x['rates'][-1]:.0f} tensors/s",
                  file=sys.stderr, flush=True)
    cold = all(x["cold"] for v in res.values() for x in v)
    uni = uniform_spread(n, g)
    print(f"feed_compare: {datetime.date.today()}, {machine()}")
    print(versions())
    print(f"{n} rows of {'x'.join(map(str, m['shape']))} uint8, batches of {g}, "
          f"{a.epochs} epochs, median of {a.rounds} interleaved rounds; page cache "
          f"{'dropped before each configuration' if cold else 'NOT dropped (no permission)'}; "
          f"every row exactly once in every epoch")
    print()
    print("| configuration | system, settings | disk MiB | epoch 1 tensors/s | "
          f"epoch {a.epochs} tensors/s | first batch s | peak memory MiB | "
          f"shuffle spread (uniform = {uni:.1f}) |")
    print("|---|---|---|---|---|---|---|---|")
    table = {}
    for k in names:
        system, settings, shuffle, builder, codec, _, _ = configs(stores)[k]
        disk = res[k][0]["disk"] if builder is None else du(format_path(a.work, builder, codec))
        med = lambda f: statistics.median(f(x) for x in res[k])  # noqa: E731
        e1, e2 = med(lambda x: x["rates"][0]), med(lambda x: x["rates"][-1])
        table[k] = (system, shuffle, e1, e2)
        print(f"| {k} | {system}, {settings} | {disk / 2**20:,.0f} | {e1:,.0f} | {e2:,.0f} | "
              f"{med(lambda x: x['first']):.2f} | {med(lambda x: x['peak']) / 2**20:,.0f} | "
              f"{med(lambda x: x['spread']):.1f} ({shuffle}) |")
    ours = {k: v for k, v in table.items() if v[0] == "cellshard"}
    peers = {k: v for k, v in table.items() if v[0] != "cellshard"}
    if not ours or not peers:
        return
    both = lambda v: v[2] + v[3]  # noqa: E731
    picks = {"cellshard-zstd"} & set(ours) | {max(ours, key=lambda k: both(ours[k]))}
    print()
    for pick in sorted(picks):
        o = ours[pick]
        print(f"{pick}, epoch 1 / epoch {a.epochs}, against:")
        for system in sorted({v[0] for v in peers.values()}):
            mine = {k: v for k, v in peers.items() if v[0] == system}
            best = max(mine, key=lambda k: both(mine[k]))
            b = mine[best]
            print(f"- {system}'s best ({best}, {b[1]} shuffle): {o[2] / b[2]:.2f}x / "
                  f"{o[3] / b[3]:.2f}x")
        uniform = {k: v for k, v in peers.items() if v[1] == "uniform"}
        if uniform:
            e1 = max(uniform, key=lambda k: uniform[k][2])
            e2 = max(uniform, key=lambda k: uniform[k][3])
            print(f"- the best uniform-shuffle peer ({e1} / {e2}): "
                  f"{o[2] / uniform[e1][2]:.2f}x / {o[3] / uniform[e2][3]:.2f}x (goal 1.5x)")
        f1 = max(peers, key=lambda k: peers[k][2])
        f2 = max(peers, key=lambda k: peers[k][3])
        print(f"- the fastest peer configuration of any shuffle ({f1} / {f2}): "
              f"{o[2] / peers[f1][2]:.2f}x / {o[3] / peers[f2][3]:.2f}x (goal 1.0x)")

if __name__ == "__main__":
    main()
