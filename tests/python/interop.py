"""Open a cellshard store with other readers, unaided, and check it against what
cellshard wrote.

Usage: interop.py STORE EXPECTED_DIR
  STORE         the store root (a local path); its `sites` table is read
  EXPECTED_DIR  one file per site, `<site_id>.bin`, holding the tensor bytes cellshard
                returned, and `expected.json` with the row count and tensor shape/dtype

Prints one JSON object with what each reader saw; exits non-zero on any mismatch.
"""

import json
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import duckdb


def fail(msg):
    print(f"interop: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def zero_copy_tensor(binary_chunk, i, shape, dtype):
    """Row i of a pyarrow BinaryArray as an ndarray of `shape` over the Arrow buffer."""
    offsets = np.frombuffer(binary_chunk.buffers()[1], dtype=np.int32,
                            count=len(binary_chunk) + 1 + binary_chunk.offset)
    start = int(offsets[binary_chunk.offset + i])
    end = int(offsets[binary_chunk.offset + i + 1])
    data = binary_chunk.buffers()[2]
    itemsize = np.dtype(dtype).itemsize
    check((end - start) == int(np.prod(shape)) * itemsize,
          f"tensor of {end - start} bytes is not {shape} {dtype}")
    arr = np.frombuffer(data, dtype=dtype, count=int(np.prod(shape)), offset=start)
    arr = arr.reshape(shape)  # a view: no copy
    check(not arr.flags.owndata, "reshape copied the tensor")
    check(np.shares_memory(arr, np.frombuffer(data, dtype=np.uint8)),
          "the tensor does not share memory with the Arrow buffer")
    return arr


def main():
    store, expected_dir = sys.argv[1], sys.argv[2]
    with open(os.path.join(expected_dir, "expected.json")) as f:
        exp = json.load(f)
    shape, dtype, rows = tuple(exp["shape"]), np.dtype(exp["dtype"]), exp["rows"]
    expected = {}
    for name in os.listdir(expected_dir):
        if name.endswith(".bin"):
            with open(os.path.join(expected_dir, name), "rb") as f:
                expected[name[:-4]] = np.frombuffer(f.read(), dtype=dtype).reshape(shape)
    check(len(expected) == rows, f"{len(expected)} expected tensors for {rows} rows")
    out = {}

    # pyarrow: a dataset over the Parquet files, partitions from the hive directory names.
    # Files and directories starting with '_' (the Delta log) are skipped by default.
    sites = os.path.join(store, "sites")
    dataset = ds.dataset(sites, format="parquet", partitioning="hive")
    table = dataset.to_table()
    check(table.num_rows == rows, f"pyarrow read {table.num_rows} rows, expected {rows}")
    for col in ("cell_type", "experiment", "site_id", "tensor"):
        check(col in table.column_names, f"pyarrow: no column {col}")
    meta = dataset.schema.field("tensor").metadata or {}
    check(meta.get(b"cellshard.dtype") == exp["dtype"].encode(),
          f"tensor field metadata: {meta}")
    ids = table.column("site_id").to_pylist()
    tensors = table.column("tensor").combine_chunks()
    if isinstance(tensors, pa.ChunkedArray):
        tensors = tensors.chunk(0)
    if tensors.type == pa.large_binary():
        tensors = tensors.cast(pa.binary())
    for i, sid in enumerate(ids):
        arr = zero_copy_tensor(tensors, i, shape, dtype)
        check(np.array_equal(arr, expected[sid]), f"pyarrow: tensor of {sid} differs")
    by_cell = table.group_by("cell_type").aggregate([("site_id", "count")]).to_pylist()
    out["pyarrow"] = {"rows": table.num_rows,
                      "by_cell_type": {r["cell_type"]: r["site_id_count"] for r in by_cell},
                      "tensors_equal": len(ids)}

    # DuckDB: read_parquet with hive partitioning, straight from the files.
    con = duckdb.connect()
    glob = os.path.join(sites, "**", "*.parquet")
    n, n_exp = con.execute(
        "SELECT count(*), count(DISTINCT experiment) FROM "
        "read_parquet(?, hive_partitioning = true)", [glob]).fetchone()
    check(n == rows, f"duckdb counted {n} rows, expected {rows}")
    equal = 0
    for sid, blob in con.execute(
            "SELECT site_id, tensor FROM read_parquet(?, hive_partitioning = true) "
            "ORDER BY site_id", [glob]).fetchall():
        arr = np.frombuffer(blob, dtype=dtype).reshape(shape)
        check(np.array_equal(arr, expected[sid]), f"duckdb: tensor of {sid} differs")
        equal += 1
    out["duckdb"] = {"rows": n, "experiments": n_exp, "tensors_equal": equal}

    # deltalake (optional): the Delta table itself, through its log.
    try:
        from deltalake import DeltaTable
    except ImportError:
        out["deltalake"] = "not installed"
    else:
        dt = DeltaTable(sites)
        t = pa.table(dt.to_pyarrow_dataset().to_table())
        check(t.num_rows == rows, f"deltalake read {t.num_rows} rows, expected {rows}")
        equal = 0
        for sid, blob in zip(t.column("site_id").to_pylist(), t.column("tensor").to_pylist()):
            arr = np.frombuffer(blob, dtype=dtype).reshape(shape)
            check(np.array_equal(arr, expected[sid]), f"deltalake: tensor of {sid} differs")
            equal += 1
        out["deltalake"] = {"rows": t.num_rows, "version": dt.version(),
                            "tensors_equal": equal}

    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
