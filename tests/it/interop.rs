//! Other readers open the store unaided: pyarrow (a hive-partitioned Parquet dataset),
//! DuckDB (`read_parquet(..., hive_partitioning = true)`) and, where it installs, the
//! `deltalake` Python package. `tests/run.sh` installs them into `target/pyenv`.

use std::path::PathBuf;

use crate::*;

/// The Python with pyarrow, DuckDB and numpy: `$CELLSHARD_PYTHON`, else `target/pyenv`.
pub(crate) fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("CELLSHARD_PYTHON") {
        return PathBuf::from(p);
    }
    let p = repo().join("target/pyenv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run `bash tests/run.sh` (it installs pyarrow, DuckDB and numpy there) or set CELLSHARD_PYTHON",
        p.display()
    );
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyarrow_duckdb_and_deltalake_read_the_store() {
    // The real RxRx1 PNGs: 4 complete sites of 6 x 512 x 512 uint8.
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store").display().to_string();
    let md = design_file();
    let images = test_data().join("images").display().to_string();
    let s = run(pipeline("rxrx1-release.toml"), &images, &[md], &store, 2).await;
    assert_eq!(s.sites.stored, 4);

    // What cellshard returns, one file per site.
    let expected = dir.path().join("expected");
    std::fs::create_dir_all(&expected).unwrap();
    let rows = sql(&store, "SELECT site_id, tensor FROM sites").await;
    let ids = strings(&rows, 0);
    let tensors = binaries(&rows, 1);
    for (id, t) in ids.iter().zip(&tensors) {
        assert_eq!(t.len(), 6 * 512 * 512);
        std::fs::write(expected.join(format!("{id}.bin")), t).unwrap();
    }
    std::fs::write(
        expected.join("expected.json"),
        serde_json::json!({"rows": ids.len(), "shape": [6, 512, 512], "dtype": "uint8"})
            .to_string(),
    )
    .unwrap();

    let out = std::process::Command::new(python())
        .arg(repo().join("tests/python/interop.py"))
        .arg(dir.path().join("store"))
        .arg(&expected)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "interop.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["pyarrow"]["rows"], 4, "{v}");
    assert_eq!(v["pyarrow"]["tensors_equal"], 4, "{v}");
    for cell in ["HEPG2", "HUVEC", "RPE", "U2OS"] {
        assert_eq!(v["pyarrow"]["by_cell_type"][cell], 1, "{v}");
    }
    assert_eq!(v["duckdb"]["rows"], 4, "{v}");
    assert_eq!(v["duckdb"]["experiments"], 4, "{v}");
    assert_eq!(v["duckdb"]["tensors_equal"], 4, "{v}");
    // deltalake is optional (it may not install everywhere); when present it must agree.
    if !v["deltalake"].is_object() {
        cellshard_tests::missing_part("the deltalake Python package");
    }
    if v["deltalake"].is_object() {
        assert_eq!(v["deltalake"]["rows"], 4, "{v}");
        assert_eq!(v["deltalake"]["tensors_equal"], 4, "{v}");
    }
    eprintln!("interop: {v}");
}

/// Names that are not plain: a space, `é`, `/`, `=` and `%` in the experiment (from the
/// source directory) and the cell type (from the metadata). The run stores every site;
/// DataFusion, the feed, pyarrow, DuckDB, Polars and deltalake read the names back as given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_utf8_name_is_a_partition_value_every_reader_reads_back() {
    const EXPERIMENT: &str = "HUVEC 01 é=%";
    const CELL_TYPE: &str = "HUVEC/é 1=%20";
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    let loc =
        cellshard_store::Location::parse(&raw.display().to_string(), &Default::default()).unwrap();
    cellshard_synth::write_dataset(
        loc.store.clone(),
        &loc.prefix,
        &design(),
        &tiny_synth(4),
        None,
    )
    .await
    .unwrap();
    std::fs::rename(
        raw.join("train/HUVEC-01"),
        raw.join("train").join(EXPERIMENT),
    )
    .unwrap();
    let csv = std::fs::read_to_string(raw.join("metadata.csv"))
        .unwrap()
        .replace("HUVEC-01", EXPERIMENT)
        .replace(",HUVEC,", &format!(",{CELL_TYPE},"));
    std::fs::write(raw.join("metadata.csv"), csv).unwrap();

    let store = dir.path().join("store").display().to_string();
    let source = raw.display().to_string();
    let s = run(
        pipeline("tiny.toml"),
        &source,
        &[format!("{source}/metadata.csv")],
        &store,
        2,
    )
    .await;
    assert_eq!((s.sites.stored, s.sites.rejected), (12, 0), "{s:?}");

    let seen = sql(
        &store,
        "SELECT DISTINCT cell_type, experiment, CAST(count(*) OVER () AS VARCHAR) FROM sites",
    )
    .await;
    assert_eq!(strings(&seen, 0), [CELL_TYPE]);
    assert_eq!(strings(&seen, 1), [EXPERIMENT]);
    let joined = sql(
        &store,
        &format!(
            "SELECT CAST(count(*) AS VARCHAR) FROM site_normalization \
             WHERE experiment = '{EXPERIMENT}' AND cell_type = '{CELL_TYPE}'"
        ),
    )
    .await;
    assert_eq!(strings(&joined, 0), ["72"], "6 channels of 12 sites");
    let feed = cellshard_feed::Feed::open(cellshard_feed::FeedOptions {
        predicate: Some(format!("experiment = '{EXPERIMENT}'")),
        columns: vec!["cell_type".into()],
        global_batch: 12,
        ..cellshard_feed::FeedOptions::new(&store)
    })
    .await
    .unwrap();
    let batch = feed.read(0, 0).await.unwrap();
    assert_eq!(batch.site_ids.iter().flatten().count(), 12);

    let out = std::process::Command::new(python())
        .arg(repo().join("tests/python/names.py"))
        .arg(dir.path().join("store"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "names.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    for reader in ["pyarrow", "duckdb", "polars", "deltalake"] {
        assert_eq!(v[reader]["rows"], 12, "{reader}: {v}");
        assert_eq!(
            v[reader]["pairs"],
            serde_json::json!([[CELL_TYPE, EXPERIMENT]]),
            "{reader}: {v}"
        );
    }
}
