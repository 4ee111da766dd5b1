//! The command-line contract: exit codes, error messages, output formats.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::path::PathBuf;
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cellshard<S: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = S>) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cellshard"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn validate_accepts_shipped_pipelines() {
    for p in [
        "pipelines/rxrx1.toml",
        "pipelines/rxrx1-release.toml",
        "pipelines/tiny.toml",
    ] {
        let out = cellshard(["validate", p]);
        assert!(out.status.success(), "{p}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).starts_with("ok: pipeline"),
            "{}",
            text(&out.stdout)
        );
    }
    let out = cellshard(["validate", "pipelines/rxrx1.toml"]);
    assert!(
        text(&out.stdout).contains("downsample 2x -> center_crop 512"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn validate_names_the_unknown_key_and_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let good = std::fs::read_to_string(repo().join("pipelines/tiny.toml")).unwrap();
    std::fs::write(&bad, good.replace("size = 64", "size = 64\nsise = 65")).unwrap();
    let line = good.lines().position(|l| l == "size = 64").unwrap() + 2;
    let out = cellshard(["validate", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("unknown key `sise` at line {line}")),
        "{err}"
    );

    let out = cellshard(["validate", "no/such/pipeline.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no/such/pipeline.toml"));
}

#[test]
fn run_exit_codes_follow_the_reject_fraction() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let summary = dir.path().join("summary.json");
    let args = |frac: &str| {
        vec![
            "run".to_string(),
            "pipelines/rxrx1-release.toml".into(),
            "--sink".into(),
            store.display().to_string(),
            "--summary".into(),
            summary.display().to_string(),
            "--max-reject-fraction".into(),
            frac.into(),
        ]
    };
    let out = cellshard(args("0"));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("16 of 40 objects rejected"),
        "{}",
        text(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(json["objects"]["discovered"], 40);
    assert_eq!(json["sites"]["stored"], 4);

    let out = cellshard(args("0.5"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let s = store.display().to_string();
    let out = cellshard([
        "sql",
        "--store",
        &s,
        "--format",
        "csv",
        "-c",
        "SELECT site_id, well_type FROM sites ORDER BY site_id LIMIT 2",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "site_id,well_type\nHEPG2-01_1_B02_1,negative_control\nHUVEC-01_1_B02_1,negative_control\n"
    );
    let out = cellshard([
        "sql",
        "--store",
        &s,
        "--format",
        "json",
        "SELECT count(*) AS n FROM rejects",
    ]);
    assert_eq!(text(&out.stdout).trim(), r#"{"n":16}"#);
    let out = cellshard([
        "sql",
        "--store",
        &s,
        "-c",
        "SELECT site_id, tensor FROM sites ORDER BY site_id LIMIT 1",
    ]);
    assert!(
        text(&out.stdout).contains("<1572864 bytes>"),
        "{}",
        text(&out.stdout)
    );
    let out = cellshard(["sql", "--store", &s, "-c", "SELECT nope FROM sites"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("nope"), "{}", text(&out.stderr));
}

#[test]
fn a_missing_local_source_or_store_is_an_error_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/images");
    let store = dir.path().join("store");
    let out = cellshard([
        "run",
        "pipelines/rxrx1-release.toml",
        "--source",
        missing.to_str().unwrap(),
        "--sink",
        store.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains(missing.to_str().unwrap()), "{err}");
    assert!(err.contains("is not a directory that exists"), "{err}");
    assert!(!dir.path().join("no").exists());
    assert!(!store.exists());

    let gone = dir.path().join("no/store");
    let out = cellshard(["sql", "--store", gone.to_str().unwrap(), "-c", "SELECT 1"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("is not a directory that exists"), "{err}");
    assert!(!dir.path().join("no").exists());
}

#[test]
fn usage_errors_exit_2() {
    let out = cellshard(["synth", "--out", "/tmp/x", "--bit-depth", "12"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("must be 8 or 16"),
        "{}",
        text(&out.stderr)
    );
    let out = cellshard(["run", "pipelines/tiny.toml", "--worker", "3/2"]);
    assert_eq!(out.status.code(), Some(2));
}

/// A store of the 4 complete real sites (6 x 512 x 512 uint8).
fn real_store(dir: &std::path::Path) -> String {
    let store = dir.join("store").display().to_string();
    let out = cellshard([
        "run",
        "pipelines/rxrx1-release.toml",
        "--sink",
        &store,
        "--max-reject-fraction",
        "0.5",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    store
}

#[test]
fn sql_shell_scripts_parquet_output_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let s = real_store(dir.path());

    // The shell: multi-line statements, backslash commands, history written on exit.
    let history = dir.path().join("history");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cellshard"))
        .args(["sql", "--store", &s, "--interactive", "--format", "csv"])
        .env("CELLSHARD_HISTORY", &history)
        .current_dir(repo())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"SELECT count(*) AS n\n  FROM sites\n  WHERE well_type = 'negative_control';\n\\d plate_summary\nSELECT nope;\n\\df\n\\q\n")
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("n\n4\n"), "{stdout}");
    assert!(stdout.contains("\nplate,Int32,NO\n"), "{stdout}");
    assert!(stdout.contains("tensor_thumbnail"), "{stdout}");
    assert!(
        text(&out.stderr).contains("nope"),
        "errors are shown and the shell goes on"
    );
    let h = std::fs::read_to_string(&history).unwrap();
    assert!(h.contains("FROM sites"), "{h}");

    // A script file with a meta command and two statements.
    let script = dir.path().join("q.sql");
    std::fs::write(
        &script,
        "-- counts\n\\version 0\nSELECT count(*) AS n FROM sites;\n\\latest\nSELECT count(*) AS n FROM sites;\n",
    )
    .unwrap();
    let out = cellshard([
        "sql",
        "--store",
        &s,
        "--format",
        "json",
        "-f",
        script.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    assert!(o.contains(r#"{"n":0}"#) && o.contains(r#"{"n":4}"#), "{o}");

    // Parquet output keeps the tensors and thumbnails.
    let pq = dir.path().join("thumbs.parquet");
    let out = cellshard([
        "sql",
        "--store",
        &s,
        "--format",
        "parquet",
        "-o",
        pq.to_str().unwrap(),
        "-c",
        "SELECT site_id, tensor_thumbnail(tensor, 64) AS png, tensor FROM sites ORDER BY site_id",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bytes = std::fs::read(&pq).unwrap();
    assert_eq!(&bytes[..4], b"PAR1");
    let out = cellshard([
        "sql", "--store", &s, "--format", "parquet", "-c", "SELECT 1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--output"),
        "{}",
        text(&out.stderr)
    );

    // Export a subset to Delta and to Parquet; read both back.
    for (format, to) in [("delta", "export-delta"), ("parquet", "export-parquet")] {
        let to = dir.path().join(to).display().to_string();
        let out = cellshard([
            "export",
            "--store",
            &s,
            "--query",
            "SELECT site_id, cell_type, experiment, tensor FROM sites WHERE cell_type IN ('HUVEC', 'RPE')",
            "--to",
            &to,
            "--format",
            format,
        ]);
        assert!(out.status.success(), "{format}: {}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
        assert_eq!(v["rows"], 2, "{v}");
        assert!(v["files"].as_u64().unwrap() >= 1, "{v}");
        // Exporting again over it is refused.
        let again = cellshard([
            "export",
            "--store",
            &s,
            "--query",
            "SELECT 1 AS x",
            "--to",
            &to,
            "--format",
            format,
        ]);
        assert_eq!(again.status.code(), Some(1), "{format}");
        assert!(
            text(&again.stderr).contains("export to a new location"),
            "{}",
            text(&again.stderr)
        );
    }
}
