"""The training feed's guarantees through the installed ``cellshard`` package (pytest).

The store comes from CELLSHARD_FEED_STORE (the Rust test that runs this file builds one of
4 sites from the real RxRx1 images); `bash tests/run.sh` installs the package.
"""

import multiprocessing as mp
import os
import pickle

import numpy as np
import pyarrow as pa
import pytest

import cellshard

STORE = os.environ.get("CELLSHARD_FEED_STORE")
pytestmark = pytest.mark.skipif(not STORE, reason="CELLSHARD_FEED_STORE is not set")


def samples_of(batches):
    return [list(b.samples) for b in batches]


def ranks(g, w, e, **kw):
    sets = [cellshard.Dataset(STORE, batch_size=g, world_size=w, rank=r, seed=3, **kw)
            for r in range(w)]
    return [samples_of(ds.epoch(e)) for ds in sets]


def test_exactly_once_over_ranks_with_fixed_shapes_and_masked_padding():
    one = cellshard.Dataset(STORE, batch_size=3, seed=3)
    assert one.rows == 4 and len(one) == 2
    seen = []
    for r in range(2):
        ds = cellshard.Dataset(STORE, batch_size=3, world_size=2, rank=r, seed=3)
        steps = list(ds.epoch(0))
        assert len(steps) == 2, "every rank runs the same number of steps"
        for b in steps:
            assert b.tensors.dtype == np.uint8 and b.tensors.shape == (2, 6, 512, 512)
            assert b.valid.dtype == np.bool_ and b.valid.shape == (2,)
            assert b.tensors.base is not None, "the array wraps Rust memory"
            for slot, s in enumerate(b.samples):
                if s is None:
                    assert not b.valid[slot] and not b.tensors[slot].any()
                else:
                    assert b.valid[slot] and b.tensors[slot].any()
                    seen.append(s)
    assert sorted(seen) == [0, 1, 2, 3]


def test_the_global_order_does_not_depend_on_the_world_size():
    for e in range(3):
        whole = [s for step in ranks(2, 1, e)[0] for s in step if s is not None]
        for w in (2, 3):
            per_rank = ranks(2, w, e)
            glued = [s for t in range(len(per_rank[0])) for r in per_rank for s in r[t]
                     if s is not None]
            assert glued == whole, (e, w)
        assert sorted(whole) == [0, 1, 2, 3]


def test_tail_policies():
    drop = ranks(3, 1, 0, tail="drop")[0]
    assert len(drop) == 1 and None not in drop[0]
    rep = ranks(3, 1, 0, tail="repeat")[0]
    assert len(rep) == 2 and None not in rep[1]
    assert sorted(set(rep[0] + rep[1])) == [0, 1, 2, 3]


def test_a_cursor_resumes_the_rest_of_the_epoch_on_another_world_size():
    ds = cellshard.Dataset(STORE, batch_size=2, seed=3)
    it = ds.epoch(1)
    first = next(it)
    state = ds.state_dict()
    assert isinstance(state, bytes) and len(state) < 100
    assert cellshard.read_state(state)["position"] == 2
    rest = [s for b in it for s in b.samples if s is not None]
    resumed = [cellshard.Dataset.from_state(state, STORE, batch_size=2, world_size=2, rank=r)
               for r in range(2)]
    again = []
    for step in zip(*[list(r.epoch(1)) for r in resumed]):
        again.extend(s for b in step for s in b.samples if s is not None)
    assert again == rest
    assert sorted(again + [s for s in first.samples if s is not None]) == [0, 1, 2, 3]
    # Another global batch size: every sample not yet consumed, once.
    other = cellshard.Dataset.from_state(state, STORE, batch_size=1)
    assert sorted(s for b in other.epoch(1) for s in b.samples) == sorted(rest)


def test_a_cursor_from_another_selection_is_refused():
    ds = cellshard.Dataset(STORE, batch_size=2)
    with pytest.raises(ValueError, match="another predicate"):
        cellshard.Dataset.from_state(ds.state_dict(), STORE, where="site = 1")


def worker_samples(ds, epoch, worker, workers):
    return samples_of(ds.epoch(epoch, worker=worker, workers=workers))


def round_robin(parts):
    out, t = [], 0
    while any(t < len(p) for p in parts):
        out.extend(p[t] for p in parts if t < len(p))
        t += 1
    return out


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_the_same_stream_for_any_worker_count_with_fork_and_spawn(method):
    whole = samples_of(cellshard.Dataset(STORE, batch_size=1, seed=5).epoch(2))
    assert len(whole) == 4
    ds = cellshard.Dataset(STORE, batch_size=1, seed=5)
    # Touch the feed in the parent first: a forked child must not use its threads.
    assert len(next(iter(ds.epoch(0))).samples) == 1
    ctx = mp.get_context(method)
    for n in (1, 2, 4):
        with ctx.Pool(n) as pool:
            parts = pool.starmap(worker_samples, [(ds, 2, k, n) for k in range(n)])
        assert round_robin(parts) == whole, (method, n)


def test_a_pickled_dataset_reads_the_same_stream_at_the_same_version():
    ds = cellshard.Dataset(STORE, batch_size=2, seed=9, columns=["well"])
    copy = pickle.loads(pickle.dumps(ds))
    assert copy.version == ds.version
    assert samples_of(copy.epoch(0)) == samples_of(ds.epoch(0))


def test_torch_dataloader_workers_fork_and_spawn_give_one_stream():
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    from cellshard.torch import CellshardIterable

    ds = cellshard.Dataset(STORE, batch_size=1, seed=7)
    ref = None
    for method in ("fork", "spawn"):
        for n in (0, 1, 2, 4):
            loader = DataLoader(CellshardIterable(ds, epoch=1), batch_size=None, num_workers=n,
                                multiprocessing_context=method if n else None)
            got = [ids for _, _, ids in loader]
            ref = ref or got
            assert got == ref and len(got) == 4, (method, n)
    t, valid, _ = next(iter(CellshardIterable(ds)))
    assert t.dtype == torch.uint8 and t.shape == (1, 6, 512, 512) and valid.all()
    # Resumed after one step: every worker count continues with the same three batches.
    resumed = cellshard.Dataset.from_state(ds.state_at(1, 1), STORE, batch_size=1)
    for n in (0, 2):
        loader = DataLoader(CellshardIterable(resumed, epoch=1), batch_size=None, num_workers=n)
        assert [ids for _, _, ids in loader] == ref[1:], n


def test_metadata_columns_arrive_as_arrow_one_row_per_slot():
    ds = cellshard.Dataset(STORE, batch_size=3, columns=["well", "site", "plate"])
    b = next(iter(ds.epoch(0)))
    t = pa.table(b.metadata)
    assert t.num_rows == 3 and t.column_names == ["well", "site", "plate"]
    for slot, site_id in enumerate(b.site_ids):
        well = t.column("well")[slot].as_py()
        assert site_id.split("_")[2] == well
    last = cellshard.Dataset(STORE, batch_size=3, columns=["well"])
    padded = list(last.epoch(0))[1]
    assert pa.table(padded.metadata).column("well").null_count == 2


def test_channels_are_picked_by_name_or_number_in_the_order_asked():
    full = cellshard.Dataset(STORE, batch_size=2, seed=3)
    assert full.channel_names == ["w1", "w2", "w3", "w4", "w5", "w6"]
    picked = cellshard.Dataset(STORE, batch_size=2, seed=3, channels=["w5", 1])
    n = 0
    for a, b in zip(full.epoch(0), picked.epoch(0)):
        assert b.tensors.shape == (2, 2, 512, 512)
        assert np.array_equal(b.tensors, a.tensors[:, [4, 0]])
        n += 1
    assert n == 2
    again = pickle.loads(pickle.dumps(picked))
    assert next(iter(again.epoch(1))).tensors.shape[1] == 2
    for bad in (["Golgi"], [0], [7], ["w1", "W1"], [], [True]):
        with pytest.raises(cellshard.InvalidInput):
            cellshard.Dataset(STORE, channels=bad)


def test_sql_returns_arrow_from_the_same_session_as_the_cli():
    out = cellshard.sql(STORE, "SELECT count(*) AS n, count(DISTINCT well) AS wells FROM sites")
    assert out.num_rows == 1 and out.column_names == ["n", "wells"]
    t = out.to_pyarrow()
    assert t.column("n")[0].as_py() == 4
    # The views and tensor functions are there too.
    qc = pa.table(cellshard.sql(STORE, "SELECT DISTINCT site_id FROM site_qc ORDER BY site_id"))
    assert qc.num_rows == 4
    empty = pa.table(cellshard.sql(STORE, "SELECT site_id FROM sites WHERE false"))
    assert empty.num_rows == 0 and empty.column_names == ["site_id"]
    with pytest.raises(cellshard.InvalidInput, match="no_such_table"):
        cellshard.sql(STORE, "SELECT * FROM no_such_table")


@pytest.mark.parametrize("kwargs, message", [
    (dict(where="no_such_column = 1"), "no_such_column"),
    (dict(where="well = "), "predicate"),
    (dict(tail="sometimes"), "tail"),
    (dict(batch_size=0), "batch size"),
    (dict(rank=2, world_size=2), "rank"),
    (dict(version=-1), "0 or more"),
    (dict(batch_size=10**9), "memory budget"),
    (dict(batch_size=4, memory_budget=1 << 20), "memory budget"),
    (dict(clump=0), "clump"),
    # Numbers out of their type's range are InvalidInput too, never OverflowError.
    (dict(batch_size=-1), "batch_size"),
    (dict(batch_size=10**30), "batch_size"),
    (dict(rank=-1), "rank"),
    (dict(world_size=0), "world_size"),
    (dict(threads=-1), "threads"),
    (dict(threads=10**6), "threads"),
    (dict(seed=-1), "seed"),
    (dict(version=10**30), "version"),
    (dict(memory_budget=-1), "memory_budget"),
    (dict(batch_size=2.5), "integer"),
])
def test_bad_input_is_a_clear_error_at_construction(kwargs, message):
    with pytest.raises(cellshard.InvalidInput, match=message) as e:
        cellshard.Dataset(STORE, **kwargs)
    assert isinstance(e.value, ValueError) and isinstance(e.value, cellshard.Error)


def test_a_store_or_version_that_does_not_exist_is_not_found(tmp_path):
    missing = str(tmp_path / "no-store")
    with pytest.raises(cellshard.NotFound, match="no-store") as e:
        cellshard.Dataset(missing)
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, cellshard.Error)
    with pytest.raises(cellshard.NotFound, match="999"):
        cellshard.Dataset(STORE, version=999)
    with pytest.raises(cellshard.NotFound, match="no-store"):
        cellshard.sql(missing, "SELECT 1")
    with pytest.raises(cellshard.InvalidInput):
        cellshard.Dataset.from_state(b"not a cursor", STORE)


def test_an_unreachable_store_is_a_store_error():
    # Nothing listens on port 9 (discard) of loopback: the connection is refused at once,
    # and no retries are allowed, so the outage is final.
    opts = {"endpoint": "http://127.0.0.1:9", "allow_http": "true", "region": "us-east-1",
            "access_key_id": "k", "secret_access_key": "s", "max_retries": "0",
            "retry_timeout": "1"}
    with pytest.raises(cellshard.StoreError) as e:
        cellshard.Dataset("s3://bucket/store", store_options=opts)
    assert isinstance(e.value, OSError) and isinstance(e.value, cellshard.Error)
    assert "\n" not in str(e.value)
    with pytest.raises(cellshard.StoreError):
        cellshard.sql("s3://bucket/store", "SELECT 1", store_options=opts)


def test_every_error_class_is_a_cellshard_error_and_its_builtin():
    for cls, builtin in [(cellshard.InvalidInput, ValueError),
                         (cellshard.NotFound, FileNotFoundError),
                         (cellshard.StoreError, OSError),
                         (cellshard.InternalError, RuntimeError)]:
        assert issubclass(cls, cellshard.Error) and issubclass(cls, builtin)
        assert cls.__module__ == "cellshard.errors"


def test_library_sql_is_read_only_unless_writes_are_allowed(tmp_path):
    target = tmp_path / "out.csv"
    for statement in [f"COPY (SELECT site_id FROM sites) TO '{target}'",
                      "CREATE EXTERNAL TABLE pw STORED AS CSV LOCATION '/etc/passwd'",
                      "CREATE VIEW v AS SELECT 1",
                      "DROP TABLE sites"]:
        with pytest.raises(cellshard.InvalidInput, match="read-only"):
            cellshard.sql(STORE, statement)
    assert not target.exists()
    out = cellshard.sql(STORE, f"COPY (SELECT site_id FROM sites) TO '{target}' STORED AS CSV",
                        allow_writes=True)
    assert target.exists() and out.num_rows == 1


def test_a_query_past_its_memory_bound_fails_alone():
    big = ("SELECT length(string_agg(repeat('x', 1000), ',')) AS n "
           "FROM generate_series(1, 200000)")
    with pytest.raises(cellshard.StoreError, match="(?i)resources exhausted"):
        cellshard.sql(STORE, big, query_memory=1 << 20)
    assert pa.table(cellshard.sql(STORE, "SELECT count(*) AS n FROM sites",
                                  query_memory=1 << 20)).column("n")[0].as_py() == 4


def query_workers():
    """This process's children that are query workers."""
    me, out = str(os.getpid()), []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = f.read().rsplit(")", 1)[1].split()[1]
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if ppid == me and b"query-worker" in cmd:
            out.append(pid)
    return out


def test_a_query_past_its_timeout_is_stopped_with_its_process():
    cross = ("SELECT count(*) FROM generate_series(1, 100000) a, "
             "generate_series(1, 100000) b WHERE a.value + b.value = 7")
    with pytest.raises(cellshard.StoreError, match="stopped after 2 s"):
        cellshard.sql(STORE, cross, timeout=2)
    assert query_workers() == [], "the worker outlived its query"
    rows = pa.table(cellshard.sql(STORE, "SELECT count(*) AS n FROM sites", timeout=60))
    assert rows.column("n")[0].as_py() == 4
    empty = pa.table(cellshard.sql(STORE, "SELECT site_id FROM sites WHERE false", timeout=60))
    assert empty.num_rows == 0 and empty.column_names == ["site_id"]
    for bad in [dict(timeout=0), dict(timeout=-1), dict(timeout=5, allow_writes=True)]:
        with pytest.raises(cellshard.InvalidInput):
            cellshard.sql(STORE, "SELECT 1", **bad)


def test_embeddings_from_numpy_and_parquet_side_by_side(tmp_path):
    import shutil
    import subprocess
    import sys

    import pyarrow.parquet as pq

    store = str(tmp_path / "store")
    shutil.copytree(STORE, store)
    ids = pa.table(cellshard.sql(store, "SELECT site_id FROM sites ORDER BY site_id")) \
        .column(0).to_pylist()
    v = np.random.default_rng(0).normal(size=(len(ids), 16)).astype(np.float32)
    r = cellshard.write_embeddings(store, "resnet", ids, v)
    assert (r["model"], r["rows"], r["dim"]) == ("resnet", len(ids), 16)
    t = pa.table(cellshard.sql(
        store, "SELECT site_id, vector FROM embeddings WHERE model = 'resnet' ORDER BY site_id"))
    assert t.column("site_id").to_pylist() == ids
    assert np.array_equal(np.array(t.column("vector").to_pylist(), dtype=np.float32), v)
    # cosine_similarity in SQL ranks as numpy does.
    q = v[0].astype(float)
    arr = ", ".join(repr(float(x)) for x in q)
    t = pa.table(cellshard.sql(store, f"SELECT site_id, cosine_similarity(vector, make_array({arr})) "
                                      "AS c FROM embeddings WHERE model = 'resnet' ORDER BY c DESC"))
    want = v.astype(float) @ q / (np.linalg.norm(v.astype(float), axis=1) * np.linalg.norm(q))
    assert t.column("site_id").to_pylist() == [ids[i] for i in np.argsort(-want)]
    assert np.allclose(sorted(t.column("c").to_pylist(), reverse=True), sorted(want, reverse=True),
                       atol=1e-12)
    # nearest() equals a numpy brute force, the query site left out; `where` filters sites.
    near = pa.table(cellshard.sql(
        store, f"SELECT site_id FROM nearest('embeddings', 'resnet', '{ids[0]}', 2)"))
    sims = v.astype(float) @ q / (np.linalg.norm(v.astype(float), axis=1) * np.linalg.norm(q))
    order = [i for i in np.argsort(-sims) if i != 0]
    assert near.column("site_id").to_pylist() == [ids[i] for i in order[:2]]
    near = pa.table(cellshard.sql(
        store, f"SELECT site_id FROM nearest('embeddings', 'resnet', '{ids[0]}', 2, "
               f"'site_id <> ''{ids[order[0]]}''')"))
    assert near.column("site_id").to_pylist() == [ids[i] for i in order[1:3]]
    # Another model from a Parquet file, through the command line.
    pq.write_table(pa.table({"site_id": ids, "vector": [[float(x) for x in row] for row in v[:, :4]]}),
                   tmp_path / "e.parquet")
    subprocess.run([sys.executable, "-m", "cellshard", "embeddings", "import", "--store", store,
                    "--model", "small", str(tmp_path / "e.parquet")], check=True,
                   capture_output=True)
    t = pa.table(cellshard.sql(store, "SELECT model, count(*) AS n, min(dim) AS d FROM embeddings "
                                      "GROUP BY model ORDER BY model"))
    assert t.to_pylist() == [{"model": "resnet", "n": len(ids), "d": 16},
                             {"model": "small", "n": len(ids), "d": 4}]
    for bad in [dict(site_ids=ids[:1], vectors=v), dict(site_ids=ids, vectors=v, model="a/b"),
                dict(site_ids=ids, vectors=np.full_like(v, np.nan))]:
        args = {"model": "x", **bad}
        with pytest.raises(cellshard.InvalidInput):
            cellshard.write_embeddings(store, args["model"], args["site_ids"], args["vectors"])
