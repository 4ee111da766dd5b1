//! Other readers open the store unaided: pyarrow (a hive-partitioned Parquet dataset),
//! DuckDB (`read_parquet(..., hive_partitioning = true)`) and, where it installs, the
//! `deltalake` Python package. `tests/run.sh` installs them into `target/pyenv`.

use std::path::PathBuf;

use crate::*;

/// The Python with pyarrow, DuckDB and numpy: `$CELLSHARD_PYTHON`, else `target/pyenv`.
fn python() -> PathBuf {
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
