"""Read a cellshard store whose partition values are odd names, with each reader unaided.

Usage: names.py STORE
Prints one JSON object: for each reader, the sorted distinct (cell_type, experiment)
pairs it sees and its row count. Readers that decode Hive partition directories (pyarrow,
DuckDB, Polars) and those that read the Delta log (deltalake) must all agree.
"""

import json
import os
import sys

import duckdb
import polars as pl
import pyarrow.dataset as ds


def pairs(rows):
    return sorted({(c, e) for c, e in rows})


def main():
    sites = os.path.join(sys.argv[1], "sites")
    out = {}

    t = ds.dataset(sites, format="parquet", partitioning="hive").to_table(
        columns=["cell_type", "experiment"])
    out["pyarrow"] = {"pairs": pairs(zip(t.column("cell_type").to_pylist(),
                                         t.column("experiment").to_pylist())),
                      "rows": t.num_rows}

    glob = os.path.join(sites, "**", "*.parquet")
    con = duckdb.connect()
    rows = con.execute(
        "SELECT cell_type, experiment FROM read_parquet(?, hive_partitioning = true)",
        [glob]).fetchall()
    con.close()
    out["duckdb"] = {"pairs": pairs(rows), "rows": len(rows)}

    df = pl.scan_parquet(glob, hive_partitioning=True).select(
        ["cell_type", "experiment"]).collect()
    out["polars"] = {"pairs": pairs(df.iter_rows()), "rows": df.height}

    from deltalake import DeltaTable
    t = DeltaTable(sites).to_pyarrow_dataset().to_table(columns=["cell_type", "experiment"])
    out["deltalake"] = {"pairs": pairs(zip(t.column("cell_type").to_pylist(),
                                           t.column("experiment").to_pylist())),
                        "rows": t.num_rows}

    print(json.dumps(out, sort_keys=True, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
    # Every reader has answered. Leave without the interpreter's teardown, where the native
    # thread pools of several readers in one process (Polars, DuckDB, deltalake) can
    # abort ("terminate called without an active exception") after the work is done.
    os._exit(0)
