//! The command-line contract: exit codes, error messages, output formats.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::path::PathBuf;
use std::process::{Command, Output};

use cellshard_tests::repo;

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
        "pipelines/rxrx3.toml",
        "pipelines/jump-cpg0016.toml",
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
    assert_eq!(out.status.code(), Some(2));
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

/// `--store-option`s for an S3 store on a loopback port where nothing listens, with no
/// retries: every request is refused at once, an outage that outlasts the retry policy.
fn unreachable_s3() -> Vec<String> {
    [
        "endpoint=http://127.0.0.1:9",
        "allow_http=true",
        "region=us-east-1",
        "access_key_id=cellshard-test",
        "secret_access_key=cellshard-test-secret",
        "max_retries=0",
        "retry_timeout=1",
    ]
    .iter()
    .flat_map(|o| ["--store-option".to_string(), o.to_string()])
    .collect()
}

/// A pipeline whose source is the unreachable S3 store, and whose sink is `sink`.
fn unreachable_source_pipeline(dir: &std::path::Path, sink: &str) -> String {
    let text = std::fs::read_to_string(repo().join("pipelines/rxrx1-release.toml")).unwrap();
    let text = text
        .replace("url = \"tests/data/rxrx1/images\"", "url = \"s3://cellshard-none/raw\"")
        .replace(
            "channels = 6\n",
            "channels = 6\n[source.options]\nendpoint = \"http://127.0.0.1:9\"\nallow_http = \"true\"\nregion = \"us-east-1\"\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\nmax_retries = \"0\"\nretry_timeout = \"1\"\n",
        )
        .replace("url = \"demo-out/release-store\"", &format!("url = \"{sink}\""));
    let path = dir.join("unreachable.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn every_subcommand_exits_2_for_an_invalid_request_and_1_for_a_failure() {
    // One invalid request (exit 2) and one failure of the world around it (exit 1) per
    // subcommand; each prints an `error:` line naming the cause.
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).display().to_string();
    let store = view_store().to_string();
    // Under a character device nothing can be created: an I/O failure, not a bad request.
    let blocked = "/dev/null/cellshard".to_string();
    let s3 = "s3://cellshard-none/store".to_string();
    let bad_pipeline = d("bad.toml");
    std::fs::write(&bad_pipeline, "name = \"x\"\nnot_a_key = 1\n").unwrap();
    let unreachable = unreachable_source_pipeline(dir.path(), &d("sink"));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port().to_string();
    let taken_addr = format!("127.0.0.1:{taken_port}");
    let with = |base: &[&str], extra: Vec<String>| -> Vec<String> {
        base.iter().map(|s| s.to_string()).chain(extra).collect()
    };
    let cases: Vec<(&str, i32, Vec<String>, &str)> = vec![
        (
            "synth",
            2,
            with(&["synth", "--out", &d("raw"), "--bit-depth", "12"], vec![]),
            "8 or 16",
        ),
        (
            "synth",
            1,
            with(
                &[
                    "synth", "--out", &blocked, "--wells", "1", "--size", "64", "--sites", "1",
                ],
                vec![],
            ),
            "/dev/null",
        ),
        (
            "run",
            2,
            with(
                &[
                    "run",
                    "pipelines/rxrx1-release.toml",
                    "--max-reject-fraction",
                    "2",
                ],
                vec![],
            ),
            "max-reject-fraction",
        ),
        (
            "run",
            1,
            with(
                &["run", "pipelines/rxrx1-release.toml", "--sink", &blocked],
                vec![],
            ),
            "/dev/null",
        ),
        (
            "plan",
            2,
            with(&["plan", &bad_pipeline], vec![]),
            "not_a_key",
        ),
        (
            "plan",
            1,
            with(&["plan", &unreachable], vec![]),
            "127.0.0.1:9",
        ),
        (
            "deploy",
            2,
            with(
                &[
                    "deploy",
                    "k8s",
                    &bad_pipeline,
                    "--image",
                    "x",
                    "--out",
                    &d("k8s"),
                    "--plate-count",
                    "1",
                ],
                vec![],
            ),
            "not_a_key",
        ),
        (
            "deploy",
            1,
            with(
                &[
                    "deploy",
                    "k8s",
                    "pipelines/rxrx1.toml",
                    "--image",
                    "x",
                    "--out",
                    &blocked,
                    "--plate-count",
                    "1",
                ],
                vec![],
            ),
            "/dev/null",
        ),
        (
            "feed",
            2,
            with(
                &["feed", "plan", "--store", &store, "--where", "foo = 1"],
                vec![],
            ),
            "foo",
        ),
        (
            "feed",
            1,
            with(&["feed", "plan", "--store", &s3], unreachable_s3()),
            "127.0.0.1:9",
        ),
        (
            "vacuum",
            2,
            with(&["vacuum", "--store", &d("no-store")], vec![]),
            "no-store",
        ),
        (
            "vacuum",
            1,
            with(&["vacuum", "--store", &s3], unreachable_s3()),
            "127.0.0.1:9",
        ),
        (
            "history",
            2,
            with(
                &["history", "--store", &store, "--table", "no_such_table"],
                vec![],
            ),
            "no_such_table",
        ),
        (
            "history",
            1,
            with(&["history", "--store", &s3], unreachable_s3()),
            "127.0.0.1:9",
        ),
        (
            "restore",
            2,
            with(
                &["restore", "--store", &d("no-store"), "--version", "0"],
                vec![],
            ),
            "no-store",
        ),
        (
            "restore",
            1,
            with(
                &["restore", "--store", &s3, "--version", "0"],
                unreachable_s3(),
            ),
            "127.0.0.1:9",
        ),
        (
            "validate",
            2,
            with(&["validate", &bad_pipeline], vec![]),
            "not_a_key",
        ),
        (
            "validate",
            1,
            with(&["validate", "pipelines"], vec![]),
            "pipelines",
        ),
        (
            "sql",
            2,
            with(
                &["sql", "--store", &store, "-c", "SELECT nope FROM sites"],
                vec![],
            ),
            "nope",
        ),
        (
            "sql",
            1,
            with(&["sql", "--store", &s3, "-c", "SELECT 1"], unreachable_s3()),
            "127.0.0.1:9",
        ),
        (
            "export",
            2,
            with(
                &[
                    "export",
                    "--store",
                    &store,
                    "--query",
                    "SELEC 1",
                    "--to",
                    &d("out"),
                ],
                vec![],
            ),
            "SELEC",
        ),
        (
            "export",
            1,
            with(
                &[
                    "export",
                    "--store",
                    &store,
                    "--query",
                    "SELECT site_id FROM sites",
                    "--to",
                    &blocked,
                    "--format",
                    "parquet",
                ],
                vec![],
            ),
            "/dev/null",
        ),
        (
            "render",
            2,
            with(
                &[
                    "render",
                    "--store",
                    &store,
                    "--site",
                    "HEPG2-01_1_Z99_1",
                    "--output",
                    &d("x.png"),
                ],
                vec![],
            ),
            "Z99",
        ),
        (
            "render",
            1,
            with(
                &[
                    "render",
                    "--store",
                    &s3,
                    "--site",
                    "HEPG2-01_1_B02_1",
                    "--output",
                    &d("x.png"),
                ],
                unreachable_s3(),
            ),
            "127.0.0.1:9",
        ),
        (
            "serve",
            2,
            with(&["serve", "--store", &store, "--bind", "0.0.0.0:0"], vec![]),
            "without --token",
        ),
        (
            "serve",
            1,
            with(&["serve", "--store", &store, "--bind", &taken_addr], vec![]),
            &taken_addr,
        ),
        (
            "scheduler",
            2,
            with(&["scheduler", "--port", "not-a-port"], vec![]),
            "not-a-port",
        ),
        (
            "scheduler",
            1,
            with(&["scheduler", "--port", &taken_port], vec![]),
            &taken_port,
        ),
        (
            "executor",
            2,
            with(&["executor", "--scheduler", "http://nowhere"], vec![]),
            "df://",
        ),
        (
            "executor",
            1,
            with(
                &[
                    "executor",
                    "--scheduler",
                    "df://127.0.0.1:9",
                    "--work-dir",
                    &blocked,
                ],
                vec![],
            ),
            "/dev/null",
        ),
        (
            "demo",
            2,
            with(
                &[
                    "demo",
                    "--pipeline",
                    &d("missing.toml"),
                    "--out",
                    &d("demo"),
                ],
                vec![],
            ),
            "missing.toml",
        ),
        (
            "demo",
            1,
            with(
                &["demo", "--out", &blocked, "--plates", "1", "--wells", "1"],
                vec![],
            ),
            "/dev/null",
        ),
    ];
    let mut wrong = Vec::new();
    for (name, code, args, says) in &cases {
        let out = cellshard(args);
        let err = text(&out.stderr);
        if out.status.code() != Some(*code) || !err.contains("error") || !err.contains(says) {
            wrong.push(format!(
                "{name} {args:?}: exit {:?}, expected {code} naming {says:?}: {err}",
                out.status.code()
            ));
        }
    }
    drop(taken);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn sql_is_read_only_unless_writes_are_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out.csv").display().to_string();
    let store = view_store();
    for statement in [
        format!("COPY (SELECT site_id FROM sites) TO '{target}' STORED AS CSV"),
        "CREATE EXTERNAL TABLE pw STORED AS CSV LOCATION '/etc/passwd'".into(),
        "INSERT INTO sites SELECT * FROM sites".into(),
        "DROP VIEW controls".into(),
    ] {
        let out = cellshard(["sql", "--store", store, "-c", &statement]);
        assert_eq!(out.status.code(), Some(2), "{statement}");
        assert!(
            text(&out.stderr).contains("read-only"),
            "{}",
            text(&out.stderr)
        );
    }
    assert!(!std::path::Path::new(&target).exists());
    let copy = format!("COPY (SELECT site_id FROM sites) TO '{target}' STORED AS CSV");
    let out = cellshard(["sql", "--store", store, "--allow-writes", "-c", &copy]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(std::path::Path::new(&target).exists());
}

#[test]
fn sql_stops_a_statement_at_its_timeout() {
    // A cross join whose match never yields: the command still ends at the timeout.
    let cross = "SELECT count(*) FROM generate_series(1, 100000) a, generate_series(1, 100000) b \
                 WHERE a.value + b.value = 7";
    let t = std::time::Instant::now();
    let out = cellshard_within(
        &[
            "sql",
            "--store",
            view_store(),
            "--query-timeout",
            "2",
            "-c",
            cross,
        ],
        60,
    );
    eprintln!("sql --query-timeout 2 ended after {:?}", t.elapsed());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        error_line(&out).contains("stopped after 2 s"),
        "{}",
        text(&out.stderr)
    );
    for bad in ["0", "-1", "nan"] {
        let out = cellshard([
            "sql",
            "--store",
            view_store(),
            "--query-timeout",
            bad,
            "-c",
            "SELECT 1",
        ]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", text(&out.stderr));
    }
}

/// Run `cellshard ARGS`, killing it if it has not ended within `secs` seconds (a hang).
fn cellshard_within(args: &[&str], secs: u64) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cellshard"))
        .args(args)
        .current_dir(repo())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > until {
            child.kill().unwrap();
            panic!("cellshard {args:?} did not end within {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn out_of_range_versions_are_refused_at_once() {
    let store = view_store();
    for (args, says) in [
        (
            vec!["sql", "--store", store, "--version=-1", "-c", "SELECT 1"],
            "0 or more",
        ),
        (
            vec![
                "sql",
                "--store",
                store,
                "--version=99999999999",
                "-c",
                "SELECT 1",
            ],
            "no version 99999999999",
        ),
        (
            vec!["feed", "plan", "--store", store, "--version=-1"],
            "0 or more",
        ),
        (
            vec!["restore", "--store", store, "--version=-1"],
            "0 or more",
        ),
        (
            vec!["restore", "--store", store, "--version=99999999999"],
            "no version",
        ),
        // Counts past what a machine can run refuse at once instead of starting them.
        (
            vec!["feed", "bench", "--store", store, "--threads", "99999"],
            "at most 1024",
        ),
        (
            vec!["run", "pipelines/tiny.toml", "--threads", "99999"],
            "at most 1024",
        ),
        (
            vec![
                "feed",
                "plan",
                "--store",
                store,
                "--batch-size",
                "99999999999999",
            ],
            "memory budget",
        ),
        (
            vec!["synth", "--out", "/nonexistent/x", "--plates", "0"],
            "plates is 0",
        ),
    ] {
        let out = cellshard_within(&args, 60);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn synth_run_and_sql_reach_an_s3_store_through_their_options() {
    // A real S3-protocol server on loopback; every command gets its endpoint and keys as
    // options on the command line, none from the environment or the pipeline file.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(cellshard_tests::s3::S3Server::start(&["raw", "lake"]));
    let kv: Vec<String> = server
        .options()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let with = |flag: &str, args: &[&str]| -> Vec<String> {
        let mut out: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        for o in &kv {
            out.extend([flag.to_string(), o.clone()]);
        }
        out
    };
    let synth = with(
        "--store-option",
        &[
            "synth",
            "--out",
            "s3://raw/set",
            "--wells",
            "2",
            "--sites",
            "1",
            "--size",
            "256",
        ],
    );
    let out = cellshard(&synth);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut run = with(
        "--source-option",
        &[
            "run",
            "pipelines/tiny.toml",
            "--source",
            "s3://raw/set",
            "--metadata",
            "s3://raw/set/metadata.csv",
            "--sink",
            "s3://lake/store",
        ],
    );
    for o in &kv {
        run.extend(["--sink-option".to_string(), o.clone()]);
    }
    let out = cellshard(&run);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stored = summary["sites"]["stored"].as_u64().unwrap();
    assert!(stored >= 2, "{summary}");
    let sql = with(
        "--store-option",
        &[
            "sql",
            "--store",
            "s3://lake/store",
            "--format",
            "csv",
            "-c",
            "SELECT count(*) AS n FROM sites",
        ],
    );
    let out = cellshard(&sql);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("n\n{stored}\n"));
    // The secret is never printed.
    assert!(!text(&out.stderr).contains(cellshard_tests::s3::SECRET_KEY));
    drop(server);
}

#[test]
fn a_metadata_column_named_like_a_store_column_is_refused_before_any_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw").display().to_string();
    let out = cellshard([
        "synth", "--out", &raw, "--wells", "1", "--sites", "1", "--size", "256",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let csv = std::fs::read_to_string(dir.path().join("raw/metadata.csv")).unwrap();
    let with_tensor: String = csv
        .lines()
        .enumerate()
        .map(|(i, l)| format!("{l},{}\n", if i == 0 { "tensor" } else { "x" }))
        .collect();
    let meta = dir.path().join("meta.csv");
    std::fs::write(&meta, with_tensor).unwrap();
    let store = dir.path().join("store");
    let out = cellshard([
        "run",
        "pipelines/tiny.toml",
        "--source",
        &raw,
        "--metadata",
        meta.to_str().unwrap(),
        "--sink",
        store.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("tensor") && err.contains("rename"), "{err}");
    assert!(!store.exists());
}

/// The one line a failed command prints: `error: ...`, and nothing else on stderr.
fn error_line(out: &Output) -> String {
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected:\n{err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    lines[0].to_string()
}

#[test]
fn errors_are_one_line_with_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    // A missing design file: object_store's error repeats its source twice over.
    let missing = dir.path().join("nowhere/metadata.csv");
    let out = cellshard([
        "synth",
        "--out",
        &dir.path().join("raw").display().to_string(),
        "--design",
        &missing.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let line = error_line(&out);
    assert!(line.contains("cannot read the design"), "{line}");
    assert_eq!(
        line.matches("No such file or directory").count(),
        1,
        "{line}"
    );
    assert_eq!(line.matches("not found").count(), 1, "{line}");

    // SQL that does not parse: DataFusion's error, the parser's message said once.
    let s = real_store(dir.path());
    let out = cellshard(["sql", "--store", &s, "-c", "SELEC 1"]);
    assert!(!out.status.success());
    let line = error_line(&out);
    assert!(line.contains("SELEC"), "{line}");
    assert_eq!(line.matches("Expected").count(), 1, "{line}");

    // A feed predicate over an unknown column lists the store's columns, never the feed's
    // internal ones.
    let out = cellshard(["feed", "plan", "--store", &s, "--where", "foo = 1"]);
    assert!(!out.status.success());
    let line = error_line(&out);
    assert!(line.contains("foo"), "{line}");
    assert!(line.contains("well_type"), "{line}");
    for internal in ["_file", "_row", "_site", "cellshard_positions"] {
        assert!(!line.contains(internal), "{internal} in {line}");
    }
}

#[test]
fn nothing_in_the_repository_reads_beside_it() {
    // A user has the repository alone: no code, test, pipeline, script or default may
    // reach for a folder next to it.
    let beside = format!("{}/shared", "..");
    let mut dirs: Vec<PathBuf> = ["crates", "tests", "pipelines", ".ci", "deploy", "sql"]
        .iter()
        .map(|d| repo().join(d))
        .collect();
    let mut checked = 0;
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("target") && !path.ends_with("data") {
                    dirs.push(path);
                }
            } else if let Ok(body) = std::fs::read_to_string(&path) {
                checked += 1;
                assert!(
                    !body.contains(&beside),
                    "{} mentions {beside}",
                    path.display()
                );
            }
        }
    }
    assert!(checked > 100, "only {checked} files read");
    for file in ["README.md", "Cargo.toml"] {
        let body = std::fs::read_to_string(repo().join(file)).unwrap();
        assert!(!body.contains(&beside), "{file} mentions {beside}");
    }
}

#[test]
fn the_demo_needs_nothing_beside_the_binary() {
    // An empty working directory: no pipelines/, no design file, nothing beside it.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cellshard"))
        .args(["demo", "--out", "demo", "--plates", "1", "--wells", "2"])
        .env_remove("CELLSHARD_DESIGN")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary = text(&out.stdout);
    // Two wells of HUVEC-01 plate 1, two sites each, drawn from the built-in real design.
    assert!(summary.contains("\"stored\": 4"), "{summary}");
    assert!(summary.contains("HUVEC"), "{summary}");
    let md = std::fs::read_to_string(dir.path().join("demo/raw/metadata.csv")).unwrap();
    assert_eq!(md.lines().count(), 5, "{md}");
    assert!(
        md.lines().skip(1).all(|l| l.starts_with("HUVEC-01_1_")),
        "{md}"
    );
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
    assert_eq!(out.status.code(), Some(2));
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
        assert_eq!(again.status.code(), Some(2), "{format}");
        assert!(
            text(&again.stderr).contains("export to a new location"),
            "{}",
            text(&again.stderr)
        );
    }
}

/// One scalar of a one-row, one-column query, as CSV text.
fn sql_one(store: &str, query: &str) -> String {
    let out = cellshard(["sql", "--store", store, "--format", "csv", "-c", query]);
    assert!(out.status.success(), "{query}: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    stdout.lines().nth(1).unwrap_or("").to_string()
}

/// Run `args` paused at `point`, and SIGKILL it there.
fn kill_at(point: &str, args: &[String]) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cellshard"));
    cmd.args(args).current_dir(repo());
    let line = cellshard_tests::kill::kill_when_paused(cmd, point);
    assert_eq!(line, format!("cellshard: paused at {point}#1"));
}

#[test]
fn a_run_killed_between_the_publish_commits_never_pairs_tensors_with_other_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store").display().to_string();
    let other = dir.path().join("other.toml");
    let pipeline = std::fs::read_to_string(repo().join("pipelines/rxrx1-release.toml")).unwrap();
    // The same images, other percentiles: every plate's statistics and tensors change.
    let changed = pipeline.replace("low = 0.1", "low = 5.0");
    assert_ne!(changed, pipeline);
    std::fs::write(&other, changed).unwrap();
    let run = |p: &str| -> Vec<String> {
        ["run", p, "--sink", &store, "--max-reject-fraction", "1"]
            .map(String::from)
            .to_vec()
    };
    let out = cellshard(run("pipelines/rxrx1-release.toml"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plates = sql_one(&store, "SELECT count(DISTINCT build_id) FROM sites");
    assert_eq!(plates, "4");
    // What a reader pairs: each site's tensor with the statistics of its own build. A pair
    // across builds would show a pipeline hash differing between the two sides.
    let mismatched = "SELECT count(*) FROM sites s JOIN plate_stats p ON s.build_id = p.build_id \
                      WHERE s.pipeline_hash <> p.pipeline_hash";
    let unpaired = "SELECT count(*) FROM sites s LEFT JOIN (SELECT DISTINCT build_id FROM plate_stats) p \
                    ON s.build_id = p.build_id WHERE p.build_id IS NULL";
    let other = other.display().to_string();
    for point in ["after-stats", "after-rejects", "after-sites"] {
        kill_at(point, &run(&other));
        // The kill left two builds' statistics of one plate side by side.
        let builds = sql_one(&store, "SELECT count(DISTINCT build_id) FROM plate_stats");
        assert!(
            builds.parse::<u32>().unwrap() > 4,
            "{point}: {builds} builds"
        );
        assert_eq!(sql_one(&store, mismatched), "0", "{point}");
        assert_eq!(sql_one(&store, unpaired), "0", "{point}");
        let per_site = sql_one(
            &store,
            "SELECT count(*) = 6 * (SELECT count(*) FROM sites) FROM site_normalization",
        );
        assert_eq!(per_site, "true", "{point}");
    }
    // A clean rerun leaves one build per plate in all three tables.
    let out = cellshard(run(&other));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(sql_one(&store, mismatched), "0");
    assert_eq!(
        sql_one(&store, "SELECT count(DISTINCT build_id) FROM plate_stats"),
        "4"
    );
    assert_eq!(
        sql_one(
            &store,
            "SELECT count(*) FROM rejects WHERE build_id IS NOT NULL AND build_id NOT IN \
             (SELECT DISTINCT build_id FROM plate_stats)"
        ),
        "0"
    );
    assert_eq!(sql_one(&store, "SELECT min(p_low) FROM plate_stats"), "5.0");
}

#[test]
fn synth_writes_an_rxrx3_shaped_plate() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r3").display().to_string();
    let args = [
        "synth",
        "--dataset",
        "rxrx3",
        "--out",
        &out,
        "--wells",
        "3",
        "--sites",
        "1",
    ];
    let o = cellshard(args.iter().copied().chain(["--size", "64"]));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let csv = std::fs::read_to_string(dir.path().join("r3/metadata.csv")).unwrap();
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with(",gene,treatment,SMILES,concentration,perturbation_type"),
        "{csv}"
    );
    assert!(dir.path().join("r3/gene-001/Plate1/A01_s1_w6.png").exists());
    // Full-size RxRx3-shaped originals through the shipped pipeline.
    let big = dir.path().join("big").display().to_string();
    let o = cellshard([
        "synth",
        "--dataset",
        "rxrx3",
        "--out",
        &big,
        "--wells",
        "2",
        "--sites",
        "1",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let store = dir.path().join("store").display().to_string();
    let md = format!("{big}/metadata.csv");
    let o = cellshard([
        "run",
        "pipelines/rxrx3.toml",
        "--source",
        &big,
        "--metadata",
        &md,
        "--sink",
        &store,
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        sql_one(
            &store,
            "SELECT count(*) FROM sites WHERE experiment = 'gene-001' AND channels = 6"
        ),
        "2"
    );
}

#[test]
fn a_jump_plate_runs_and_draws_by_channel_name_in_render_and_the_viewer() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw").display().to_string();
    let o = cellshard([
        "synth",
        "--dataset",
        "jump",
        "--out",
        &raw,
        "--wells",
        "2",
        "--sites",
        "1",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let store = dir.path().join("store").display().to_string();
    let md = format!("{raw}/load_data.csv");
    let o = cellshard([
        "run",
        "pipelines/jump-cpg0016.toml",
        "--source",
        &raw,
        "--metadata",
        &md,
        "--sink",
        &store,
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        sql_one(
            &store,
            "SELECT count(*) FROM sites WHERE channels = 5 AND height = 512 AND tensor_mean(tensor, 'Mito') = tensor_mean(tensor, 5)"
        ),
        "2"
    );
    let site = "BR00117035_1_A01_1";
    let out = dir.path().join("dna-mito.png");
    let o = cellshard([
        "render",
        "--store",
        &store,
        "--site",
        site,
        "--channels",
        "DNA,Mito",
        "-o",
        &out.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // DNA is drawn blue and Mito magenta: no green anywhere, red and blue somewhere.
    let mut r = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&out).unwrap()))
        .read_info()
        .unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    r.next_frame(&mut buf).unwrap();
    assert_eq!((r.info().width, r.info().height), (512, 512));
    let px: Vec<&[u8]> = buf.chunks_exact(3).collect();
    assert!(px.iter().all(|p| p[1] == 0));
    assert!(px.iter().any(|p| p[0] > 100) && px.iter().any(|p| p[2] > 100));
    std::fs::copy(&out, screenshots().join("jump-dna-mito.png")).unwrap();
    let o = cellshard([
        "render",
        "--store",
        &store,
        "--site",
        site,
        "--channels",
        "DNA,Golgi",
        "-o",
        &out.display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(
        error_line(&o).contains("DNA, ER, RNA, AGP, Mito"),
        "{}",
        error_line(&o)
    );
    let grid = dir.path().join("grid.png");
    let o = cellshard([
        "render",
        "--store",
        &store,
        "--site",
        site,
        "--grid",
        "--size",
        "128",
        "-o",
        &grid.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // Five channel tiles and the composite, four a row.
    let (gw, gh) = png_size(&grid);
    assert!(gw >= 4 * 128 && gh >= 2 * 128, "{gw}x{gh}");

    // The viewer on a 5-channel store: every channel labelled by name, images by name.
    let srv = Server::start(&["--store", &store, "--bind", "127.0.0.1:0"]);
    let (status, _, body) = srv.get(&format!("/site/{site}"), "");
    assert_eq!(status, 200, "{body}");
    for label in ["1 DNA", "2 ER", "3 RNA", "4 AGP", "5 Mito"] {
        assert!(body.contains(label), "{label} missing");
    }
    assert!(body.contains("channels=5&amp;gray=1"), "{body}");
    assert!(!body.contains("channels=6"), "{body}");
    let (status, head, _) = srv.get(&format!("/img/site/{site}?channels=DNA,Mito&size=64"), "");
    assert_eq!(status, 200);
    assert!(head.to_lowercase().contains("image/png"), "{head}");
    let (status, _, body) = srv.get("/plate/BR00117035/1?stat=mean&channel=5", "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("5 Mito"), "{body}");
}

/// A store of synthetic HUVEC-01 sites (two per well, 256 px, `synth_args` added) ingested
/// by tiny.toml on whole images (no downsample or crop) plus `extra` pipeline text.
fn whole_image_store(dir: &std::path::Path, synth_args: &[&str], extra: &str) -> String {
    let raw = dir.join("raw").display().to_string();
    let mut args = vec![
        "synth",
        "--out",
        &raw,
        "--experiments",
        "HUVEC-01",
        "--sites",
        "2",
        "--size",
        "256",
    ];
    args.extend_from_slice(synth_args);
    let o = cellshard(&args);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let tiny = std::fs::read_to_string(repo().join("pipelines/tiny.toml")).unwrap();
    let whole = tiny
        .replace("[[stages]]\nkind = \"downsample\"\nfactor = 2\n\n", "")
        .replace("[[stages]]\nkind = \"center_crop\"\nsize = 64\n\n", "")
        + extra;
    assert!(!whole.contains("center_crop"), "{whole}");
    let pipeline = dir.join("whole.toml");
    std::fs::write(&pipeline, whole).unwrap();
    let store = dir.join("store").display().to_string();
    let o = cellshard([
        "run",
        &pipeline.display().to_string(),
        "--source",
        &raw,
        "--metadata",
        &format!("{raw}/metadata.csv"),
        "--sink",
        &store,
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    store
}

#[test]
fn qc_reports_the_blurred_wells_their_sites_and_the_plate() {
    let dir = tempfile::tempdir().unwrap();
    let store = whole_image_store(
        dir.path(),
        &[
            "--wells",
            "6",
            "--blur-wells",
            "B03,B05",
            "--blur-sigma",
            "3",
        ],
        "\n[qc]\nfocus_mads = 3\n",
    );
    let report = dir.path().join("qc.json");
    let o = cellshard([
        "qc",
        "--store",
        &store,
        "--format",
        "json",
        "--plate-fraction",
        "0.1",
        "-o",
        &report.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |level: &str| -> Vec<&serde_json::Value> {
        rows.iter().filter(|r| r["level"] == level).collect()
    };
    // One plate (4 of its 12 sites fail), the two blurred wells, their four sites.
    assert_eq!(of("plate").len(), 1, "{rows:?}");
    assert_eq!(of("plate")[0]["reasons"], "out_of_focus:4", "{rows:?}");
    let wells: Vec<&str> = of("well")
        .iter()
        .map(|r| r["well"].as_str().unwrap())
        .collect();
    assert_eq!(wells, ["B03", "B05"], "{rows:?}");
    let sites = of("site");
    assert_eq!(sites.len(), 4, "{rows:?}");
    assert!(
        sites.iter().all(|r| r["reasons"] == "out_of_focus"),
        "{rows:?}"
    );
    // Without --plate-fraction the plate (4 of 12 > a quarter) is still flagged; CSV works.
    let o = cellshard(["qc", "--store", &store, "--format", "csv"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).starts_with("level,experiment,plate,well,site_id,reasons,failed,sites")
    );
    let o = cellshard(["qc", "--store", &store, "--plate-fraction", "2"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    // The new statistics as heatmaps: render, and the viewer's plate page.
    let png = dir.path().join("focus.png").display().to_string();
    let o = cellshard([
        "render",
        "--store",
        &store,
        "--plate",
        "HUVEC-01/1",
        "--stat",
        "focus",
        "-o",
        &png,
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // A site page shows its nearest neighbours once the store has embeddings.
    let ids: Vec<String> = sql_csv(&store, None, "SELECT site_id FROM sites ORDER BY site_id")
        .stdout
        .split(|b| *b == b'\n')
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| String::from_utf8_lossy(l).to_string())
        .collect();
    let vectors = {
        use arrow::array::{Float32Builder, ListBuilder, StringArray};
        let mut lists = ListBuilder::new(Float32Builder::new());
        for i in 0..ids.len() {
            (0..4).for_each(|d| {
                lists
                    .values()
                    .append_value(((i * 7 + d * 3) % 11) as f32 + 1.0)
            });
            lists.append(true);
        }
        arrow::record_batch::RecordBatch::try_from_iter(vec![
            (
                "site_id",
                std::sync::Arc::new(StringArray::from(ids.clone())) as arrow::array::ArrayRef,
            ),
            ("vector", std::sync::Arc::new(lists.finish())),
        ])
        .unwrap()
    };
    let file = dir.path().join("vectors.parquet");
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&file).unwrap(),
        vectors.schema(),
        None,
    )
    .unwrap();
    w.write(&vectors).unwrap();
    w.close().unwrap();
    let o = cellshard([
        "embeddings",
        "import",
        "--store",
        &store,
        "--model",
        "toy",
        &file.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains(&format!("\"rows\":{}", ids.len())),
        "{}",
        text(&o.stdout)
    );
    let srv = Server::start(&["--store", &store, "--bind", "127.0.0.1:0"]);
    let (status, _, body) = srv.get(&format!("/site/{}?model=toy", ids[0]), "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Nearest neighbours"), "{body}");
    assert_eq!(
        body.matches("class=\"tile neighbour\"").count(),
        8,
        "{body}"
    );
    assert!(
        !body.contains(&format!("alt=\"{}\"", ids[0])),
        "the site is not its own neighbour"
    );
    for stat in ["focus", "saturation", "foreground", "nuclei", "qc_fail"] {
        let (status, _, body) = srv.get(&format!("/plate/HUVEC-01/1?stat={stat}&channel=1"), "");
        assert_eq!(status, 200, "{stat}: {body}");
        assert!(
            body.contains(&format!("<option value=\"{stat}\" selected")),
            "{stat}"
        );
        let (status, _, _) = srv.get(&format!("/img/plate/HUVEC-01/1?stat={stat}&channel=1"), "");
        assert_eq!(status, 200, "{stat}");
    }
}

/// The rows of a CSV query after its header, split at commas.
fn csv_rows(store: &str, query: &str) -> Vec<Vec<String>> {
    let out = cellshard(["sql", "--store", store, "--format", "csv", "-c", query]);
    assert!(out.status.success(), "{query}: {}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn profiles_find_the_positive_controls_and_center_scale_matches_them() {
    let dir = tempfile::tempdir().unwrap();
    // Plate 1's first 100 wells: the negative control, 9 positive controls (a strong
    // per-siRNA phenotype), the rest treatments (a weak one); two sites each.
    let store = whole_image_store(dir.path(), &["--wells", "100"], "");
    let o = cellshard([
        "profile",
        "--store",
        &store,
        "--control",
        "well_type = 'treatment'",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["sites"], 200, "{report}");
    assert_eq!(report["wells"], 100, "{report}");
    assert_eq!(report["dim"], 6 * 16, "{report}");
    assert_eq!(report["features"][0], "w1_mean", "{report}");
    // Treatments are the plate's reference: each normalised feature has mean 0 over them.
    let off = sql_one(
        &store,
        "SELECT max(abs(m)) FROM (SELECT i, avg(vector[i]) AS m
         FROM (SELECT unnest(range(1, 97)) AS i, vector
               FROM profiles p JOIN sites s USING (site_id) WHERE s.well_type = 'treatment')
         GROUP BY i)",
    );
    assert!(off.parse::<f64>().unwrap() < 1e-3, "{off}");
    // Well rows are the medians of their two sites (the mean, for two).
    let wells = sql_one(
        &store,
        "SELECT count(*) FROM profiles w JOIN (SELECT well, avg(features[1]) AS m FROM profiles
         WHERE level = 'site' GROUP BY well) s USING (well)
         WHERE w.level = 'well' AND w.sites = 2 AND abs(w.features[1] - s.m) < 1e-6",
    );
    assert_eq!(wells, "100");
    // Replicates of each positive control find each other among the treatments; the
    // negative control's two sites do not stand out; shuffled labels score near chance.
    let map = |group: &str| -> Vec<(String, f64, f64)> {
        csv_rows(
            &store,
            &format!(
                "SELECT \"group\", mean_average_precision, p_value FROM replicate_map('profiles',
                 'vector', '{group}', 'well_type = ''treatment''') ORDER BY 1"
            ),
        )
        .into_iter()
        .map(|r| (r[0].clone(), r[1].parse().unwrap(), r[2].parse().unwrap()))
        .collect()
    };
    let by_sirna = map("CASE WHEN well_type <> ''treatment'' THEN sirna_id END");
    assert_eq!(by_sirna.len(), 10, "{by_sirna:?}");
    let (neg, pos): (Vec<_>, Vec<_>) = by_sirna.iter().partition(|g| g.0 == "1138");
    let mean = |v: &[&(String, f64, f64)]| v.iter().map(|g| g.1).sum::<f64>() / v.len() as f64;
    let pos_map = mean(&pos);
    let significant = pos.iter().filter(|g| g.2 < 0.05).count();
    assert!(pos_map > 0.5 && significant * 2 > pos.len(), "{by_sirna:?}");
    assert!(neg[0].1 < pos_map - 0.3, "{by_sirna:?}");
    // Labels shuffled: the positive-control sites in groups across wells.
    let shuffled = map(
        "CASE WHEN well_type = ''positive_control'' THEN (CAST(substr(well, 2) AS INT) + site) % 6 END",
    );
    let shuffled_map = mean(&shuffled.iter().collect::<Vec<_>>());
    assert!(shuffled_map < 0.25, "{shuffled:?}");
    // center_scale in SQL equals the stored normalisation.
    let diff = sql_one(
        &store,
        "SELECT max(abs(c[5] - vector[5])) FROM (SELECT p.vector, center_scale(p.features,
           s.well_type = 'treatment') OVER (PARTITION BY s.experiment, s.plate) AS c
         FROM profiles p JOIN sites s USING (site_id))",
    );
    assert!(diff.parse::<f64>().unwrap() < 1e-4, "{diff}");
    // A second run of one plate replaces its rows; a bad option is a usage error.
    let o = cellshard([
        "profile",
        "--store",
        &store,
        "--plate",
        "1",
        "--scaling",
        "robust",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(sql_one(&store, "SELECT count(*) FROM profiles"), "300");
    let o = cellshard(["profile", "--store", &store, "--scaling", "median"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
}

#[test]
fn validate_store_names_plates_whose_tensors_lack_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let store = real_store(dir.path());
    let out = cellshard(["validate", "--store", &store]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("ok: store"),
        "{}",
        text(&out.stdout)
    );
    let both = cellshard([
        "validate",
        "pipelines/rxrx1-release.toml",
        "--store",
        &store,
    ]);
    assert!(both.status.success(), "{}", text(&both.stderr));
    assert_eq!(text(&both.stdout).lines().count(), 2);

    // A store whose statistics are gone (as a lost publish race once left a plate).
    std::fs::remove_dir_all(dir.path().join("store/plate_stats")).unwrap();
    let out = cellshard(["validate", "--store", &store]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = error_line(&out);
    assert!(
        err.contains("4 of 4 plate(s) have tensors without their statistics")
            && err.contains("plate 1 (build ")
            && err.contains("run --incremental"),
        "{err}"
    );

    let none = cellshard(["validate"]);
    assert_eq!(none.status.code(), Some(2), "{}", text(&none.stderr));
    let missing = cellshard([
        "validate",
        "--store",
        &dir.path().join("nothing").display().to_string(),
    ]);
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing.stderr));
}

#[test]
fn plan_lists_plates_and_incremental_runs_skip_unchanged_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store").display().to_string();
    let base = ["pipelines/rxrx1-release.toml", "--sink", &store];
    let with = |cmd: &str, extra: &[&str]| -> Vec<String> {
        std::iter::once(cmd)
            .chain(base)
            .chain(extra.iter().copied())
            .map(String::from)
            .collect()
    };
    // Before any run: every plate is new, and planning creates nothing.
    let out = cellshard(with("plan", &["--json"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let plates = plan["plates"].as_array().unwrap();
    assert_eq!(plates.len(), 4);
    assert!(plates.iter().all(|p| p["action"] == "new"), "{plan}");
    assert!(!dir.path().join("store").exists());

    let out = cellshard(with("run", &["--max-reject-fraction", "1"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cellshard(with("plan", &["--json", "--incremental"]));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["plates_to_build"], 0, "{plan}");
    let out = cellshard(with(
        "run",
        &["--incremental", "--max-reject-fraction", "1"],
    ));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["plates_unchanged"], 4);
    assert_eq!(summary["plates_built"], 0);
    assert_eq!(summary["bytes_in"], 0);

    // A targeted run: the named plate only; unknown names exit 2 naming them.
    let out = cellshard(with(
        "run",
        &["--plates", "HUVEC-01/1", "--max-reject-fraction", "1"],
    ));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["plates_built"], 1, "{}", text(&out.stderr));
    let out = cellshard(with("plan", &["--experiments", "HUVEC-01,NOPE-07"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("experiment NOPE-07"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn reading_a_store_never_creates_anything_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let s = store.display().to_string();
    let out = cellshard([
        "run",
        "pipelines/rxrx1-release.toml",
        "--sink",
        &s,
        "--max-reject-fraction",
        "1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // A store of sites alone (the other tables were never written, or were removed).
    for t in ["plate_stats", "rejects", "runs"] {
        std::fs::remove_dir_all(store.join(t)).unwrap();
    }
    let listing = |p: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let before = listing(&store);
    let out = cellshard(["sql", "--store", &s, "-c", "SELECT count(*) FROM sites"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        listing(&store),
        before,
        "a query created folders in the store"
    );
    assert_eq!(before, ["sites"]);
    // The training feed reads the same store, and writes nothing either.
    let out = cellshard(["feed", "plan", "--store", &s, "--batch-size", "3"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan = text(&out.stdout);
    assert!(
        plan.contains("rows selected    4") && plan.contains("steps per epoch  2"),
        "{plan}"
    );
    assert_eq!(
        listing(&store),
        before,
        "the feed created folders in the store"
    );
}

#[test]
fn history_restore_and_vacuum_keep_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let s = store.display().to_string();
    let other = dir.path().join("other.toml");
    let pipeline = std::fs::read_to_string(repo().join("pipelines/rxrx1-release.toml")).unwrap();
    std::fs::write(&other, pipeline.replace("low = 0.1", "low = 5.0")).unwrap();
    for p in ["pipelines/rxrx1-release.toml", other.to_str().unwrap()] {
        let out = cellshard(["run", p, "--sink", &s, "--max-reject-fraction", "1"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let p_low = |s: &str| sql_one(s, "SELECT min(p_low) FROM site_normalization");
    assert_eq!(p_low(&s), "5.0");

    // History: one table creation, then one WRITE per plate build, newest first.
    let out = cellshard(["history", "--store", &s, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 9, "{rows:?}");
    assert_eq!(rows[0]["version"], 8);
    assert!(
        rows[..8]
            .iter()
            .all(|r| r["operation"] == "WRITE" && r["build_id"].is_string())
    );
    assert!(rows[0]["predicate"].as_str().unwrap().contains("plate = 1"));

    // Nothing is young enough to go under the default retention.
    let out = cellshard(["vacuum", "--store", &s, "--dry-run"]);
    assert!(
        text(&out.stdout).contains("total        would remove 0 files"),
        "{}",
        text(&out.stdout)
    );

    // Back to the first run's builds: tensors and their own statistics.
    let out = cellshard(["restore", "--store", &s, "--version", "4"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(p_low(&s), "0.1");
    assert_eq!(
        sql_one(
            &s,
            "SELECT count(*) = 6 * (SELECT count(*) FROM sites) FROM site_normalization"
        ),
        "true"
    );

    // An orphan (the upload of a killed run) goes only with --full.
    let orphan = store.join("sites/cell_type=HUVEC/experiment=HUVEC-01/part-orphan.zstd.parquet");
    std::fs::write(&orphan, b"not committed").unwrap();
    // Under the tables' 7-day floor only with --force, and nothing goes without it.
    let out = cellshard(["vacuum", "--store", &s, "--retention", "0s"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--force"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(sql_one(&s, "SELECT count(*) FROM sites"), "4");
    let out = cellshard(["vacuum", "--store", &s, "--retention", "0s", "--force"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let removed = text(&out.stdout);
    assert!(
        !removed.contains("total        removed 0 files"),
        "{removed}"
    );
    assert!(orphan.exists());
    let out = cellshard([
        "vacuum",
        "--store",
        &s,
        "--retention",
        "0s",
        "--full",
        "--force",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!orphan.exists());
    assert_eq!(sql_one(&s, "SELECT count(*) FROM sites"), "4");
    assert_eq!(p_low(&s), "0.1");
}

fn python() -> PathBuf {
    let p = std::env::var_os("CELLSHARD_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/pyenv/bin/python"));
    assert!(
        p.exists(),
        "{} is missing: run `bash tests/run.sh` (it installs PyYAML and hadolint there)",
        p.display()
    );
    p
}

#[test]
fn the_python_package_installs_the_same_command_line() {
    // `pip install ./crates/cellshard-python` puts a `cellshard` console command beside the
    // interpreter: the clap CLI, run inside the extension module.
    let console = python().with_file_name("cellshard");
    assert!(console.exists(), "{} is missing", console.display());
    let run = |args: &[&str]| {
        Command::new(&console)
            .args(args)
            .current_dir(repo())
            .output()
            .unwrap()
    };
    let version = run(&["--version"]);
    assert!(version.status.success(), "{}", text(&version.stderr));
    assert_eq!(
        text(&version.stdout),
        text(&cellshard(["--version"]).stdout)
    );
    // Every subcommand of the binary.
    let help = text(&run(&["--help"]).stdout);
    assert_eq!(help, text(&cellshard(["--help"]).stdout));

    let dir = tempfile::tempdir().unwrap();
    let s = real_store(dir.path());
    let out = run(&[
        "sql",
        "--store",
        &s,
        "--format",
        "csv",
        "-c",
        "SELECT cell_type, count(*) AS n FROM sites GROUP BY 1 ORDER BY 1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        "cell_type,n\nHEPG2,1\nHUVEC,1\nRPE,1\nU2OS,1"
    );
    // Errors and exit codes are the binary's.
    let bad = run(&["sql", "--store", &s, "-c", "SELEC 1"]);
    assert_eq!(
        bad.status.code(),
        cellshard(["sql", "--store", &s, "-c", "SELEC 1"])
            .status
            .code()
    );
    error_line(&bad);
    let usage = run(&["run", "pipelines/tiny.toml", "--worker", "3/2"]);
    assert_eq!(usage.status.code(), Some(2));
    // The viewer starts its query workers as `python -m cellshard query-worker`.
    let srv = Server::start_program(&console, &["--store", &s, "--bind", "127.0.0.1:0"], &[]);
    let (status, _, body) = srv.get(
        &format!("/sql?q={}", q("SELECT count(*) AS n FROM sites")),
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(">4<"), "{body}");
    let workers: Vec<String> = tree_cpu(srv.child.id())
        .into_keys()
        .filter_map(|p| std::fs::read(format!("/proc/{p}/cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("query-worker"))
        .collect();
    assert!(
        workers
            .iter()
            .any(|c| c.contains("-m cellshard query-worker")),
        "{workers:?}"
    );
}

#[test]
fn deploy_k8s_writes_an_indexed_job_whose_command_the_cli_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("k8s");
    let out = cellshard([
        "deploy",
        "k8s",
        "pipelines/rxrx1-release.toml",
        "--out",
        out_dir.to_str().unwrap(),
        "--parallelism",
        "3",
        "--threads",
        "2",
        "--max-reject-fraction",
        "1",
        "--sink",
        "s3://lake/store",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let check = Command::new(python())
        .arg(repo().join("tests/python/check_k8s.py"))
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", text(&check.stderr));
    let m: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();

    // One index per plate of the plan, a bad pipeline fails the Job, rejects fail the index.
    let plan = cellshard(["plan", "pipelines/rxrx1-release.toml", "--json"]);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let plates = plan["plates"].as_array().unwrap();
    assert_eq!(m["completions"], plates.len());
    assert_eq!(m["parallelism"], 3);
    assert_eq!(m["fail_job_on"], serde_json::json!([2]));
    assert_eq!(m["fail_index_on"], serde_json::json!([3]));
    assert_eq!(m["run_as_non_root"], true);
    assert_eq!(m["configmap"], m["configmap_name"]);
    let args: Vec<&str> = m["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        args.windows(2).any(|w| w == ["--sink", "s3://lake/store"]),
        "{args:?}"
    );
    // Memory: at least the measured peak of a 2-thread worker (586 MiB, README), requests
    // = limits; scratch: two plates of cropped u16 planes.
    let limit = m["memory_limit_mib"].as_u64().unwrap();
    assert!(limit >= 586, "{limit}");
    // The bound of deploy/README.md: 256 MiB + source.max_inflight (default 512 MiB) +
    // 160 MiB per thread + two row groups (32 MiB here) per shard writer (one per thread).
    assert_eq!(limit, 256 + 512 + 2 * 160 + 2 * 2 * 32);
    assert_eq!(m["memory_request_mib"], m["memory_limit_mib"]);
    let max_sites = plates
        .iter()
        .map(|p| p["sites"].as_u64().unwrap())
        .max()
        .unwrap();
    let scratch = (2 * max_sites * 6 * 512 * 512 * 2).div_ceil(1 << 20);
    assert_eq!(m["scratch_mib"], scratch);

    // The container's command line, as the Job runs it for each index, is accepted.
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(&pipeline, m["configmap_text"].as_str().unwrap()).unwrap();
    let scratch_dir = dir.path().join("scratch");
    std::fs::create_dir(&scratch_dir).unwrap();
    let args = |index: usize| -> Vec<String> {
        let mut a: Vec<String> = m["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .map(|v| match v.as_str() {
                "$(JOB_COMPLETION_INDEX)" => index.to_string(),
                "/scratch" => scratch_dir.display().to_string(),
                p if p.starts_with("/etc/cellshard/") => pipeline.display().to_string(),
                "s3://lake/store" => dir.path().join("store").display().to_string(),
                _ => v,
            })
            .collect();
        a.push("--dry-run".into());
        a
    };
    for i in 0..plates.len() {
        let out = cellshard(args(i));
        assert!(out.status.success(), "index {i}: {}", text(&out.stderr));
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(s["plates"], 1, "index {i}");
    }
    let out = cellshard(args(plates.len()));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    // The Dockerfile passes hadolint (no container engine runs here to build it).
    let hadolint = python().with_file_name("hadolint");
    let lint = Command::new(hadolint)
        .arg(repo().join("deploy/Dockerfile"))
        .output()
        .unwrap();
    assert!(
        lint.status.success(),
        "{}{}",
        text(&lint.stdout),
        text(&lint.stderr)
    );
}

#[test]
fn the_python_package_feeds_each_row_once_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store").display().to_string();
    let out = cellshard([
        "run",
        "pipelines/rxrx1-release.toml",
        "--sink",
        &store,
        "--max-reject-fraction",
        "1",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The guarantee tests (pytest), forked and spawned workers included.
    let out = Command::new(python())
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"])
        .arg(repo().join("tests/python/test_feed.py"))
        .env("CELLSHARD_FEED_STORE", &store)
        .output()
        .unwrap();
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "{report}\n(the package is installed by `bash tests/run.sh`)"
    );
    assert!(
        report.contains(" passed") && !report.contains("failed"),
        "{report}"
    );
    println!("{report}");
}

/// A two-plate synthetic store, every well with one site, built once for the viewer tests.
fn view_store() -> &'static str {
    static STORE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    STORE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let raw = dir.join("raw").display().to_string();
        let store = dir.join("store").display().to_string();
        let out = cellshard([
            "synth",
            "--out",
            &raw,
            "--plates",
            "2",
            "--size",
            "256",
            "--sites",
            "1",
            "--compression",
            "fast",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let meta = format!("{raw}/metadata.csv");
        let out = cellshard([
            "run",
            "pipelines/tiny.toml",
            "--source",
            &raw,
            "--metadata",
            &meta,
            "--sink",
            &store,
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        store
    })
}

/// Where tests leave pictures and screenshots (the README's come from here).
fn screenshots() -> PathBuf {
    let d = repo().join("target/screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Width and height of a PNG file.
fn png_size(path: &std::path::Path) -> (u32, u32) {
    let r = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()))
        .read_info()
        .unwrap();
    (r.info().width, r.info().height)
}

#[test]
fn render_draws_sites_contact_sheets_and_plate_heatmaps() {
    let store = view_store();
    let dir = tempfile::tempdir().unwrap();
    let o = |name: &str| dir.path().join(name).display().to_string();
    let render = |args: &[&str], out: &str| {
        let mut a = vec!["render", "--store", store, "-o", out];
        a.extend_from_slice(args);
        cellshard(a)
    };
    let ok = |args: &[&str], name: &str| {
        let out = render(args, &o(name));
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        png_size(&dir.path().join(name))
    };
    // A composite is the tensor's size; a channel subset draws; the grid adds tiles.
    assert_eq!(ok(&["--site", "HEPG2-01_1_B02_1"], "site.png"), (64, 64));
    assert_eq!(
        ok(
            &["--site", "HEPG2-01_1_B02_1", "--channels", "1,2,5"],
            "sub.png"
        ),
        (64, 64)
    );
    assert_ne!(
        std::fs::read(dir.path().join("site.png")).unwrap(),
        std::fs::read(dir.path().join("sub.png")).unwrap()
    );
    let (gw, gh) = ok(&["--site", "HEPG2-01_1_B02_1", "--grid"], "grid.png");
    assert!(gw > 4 * 64 && gh > 2 * 64, "{gw}x{gh}");
    // Contact sheet of a query, labelled; past the cap it is refused, saying so.
    let q = "SELECT site_id, well, sirna_id, tensor FROM controls ORDER BY site_id LIMIT 16";
    let (sw, sh) = ok(&["--query", q, "--size", "64"], "sheet.png");
    assert!(sw >= 4 * 64 && sh >= 4 * 64, "{sw}x{sh}");
    let out = render(
        &[
            "--query",
            "SELECT site_id, tensor FROM sites",
            "--max-sites",
            "10",
        ],
        &o("x.png"),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("more than 10 sites"),
        "{}",
        text(&out.stderr)
    );
    let out = render(
        &["--query", "SELECT site_id FROM sites LIMIT 2"],
        &o("x.png"),
    );
    assert!(
        text(&out.stderr).contains("must return the `tensor` column"),
        "{}",
        text(&out.stderr)
    );
    let out = render(&["--site", "HEPG2-01_1_Z99_1"], &o("x.png"));
    assert!(
        !out.status.success() && text(&out.stderr).contains("no site \"HEPG2-01_1_Z99_1\""),
        "{}",
        text(&out.stderr)
    );
    let out = render(
        &["--site", "HEPG2-01_1_B02_1", "--channels", "2,9"],
        &o("x.png"),
    );
    assert!(
        text(&out.stderr).contains("channel 9 is outside 1..=6"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !dir.path().join("x.png").exists(),
        "a failed render wrote a file"
    );
    // Plate heatmaps: a statistic, flags, counts, and the before/after pair.
    for stat in ["mean", "z_mean", "outlier", "raw_mean", "sites", "rejected"] {
        let (w, h) = ok(
            &["--plate", "HEPG2-01/1", "--stat", stat, "--channel", "2"],
            "plate.png",
        );
        assert!(w >= 24 * 22 && h >= 16 * 22, "{stat}: {w}x{h}");
    }
    let (w, _) = ok(
        &["--plate", "HEPG2-01/1", "--before-after", "--channel", "2"],
        "ba.png",
    );
    assert!(w >= 2 * 24 * 22, "{w}");
    let out = render(&["--plate", "HEPG2-01/7"], &o("x.png"));
    assert!(
        text(&out.stderr).contains("no sites of plate 7 of HEPG2-01"),
        "{}",
        text(&out.stderr)
    );
    let out = render(&["--plate", "HEPG2-01/1", "--stat", "median"], &o("x.png"));
    assert!(
        text(&out.stderr).contains("unknown statistic \"median\""),
        "{}",
        text(&out.stderr)
    );
    // The README's pictures: plates from this store, cells from the real RxRx1 images.
    let shots = screenshots();
    let keep = |args: &[&str], name: &str, s: &str| {
        let mut a = vec!["render", "--store", s, "-o"];
        let path = shots.join(name).display().to_string();
        a.push(&path);
        a.extend_from_slice(args);
        let out = cellshard(a);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    };
    keep(
        &["--plate", "HEPG2-01/1", "--stat", "mean", "--channel", "2"],
        "render-plate.png",
        store,
    );
    keep(
        &["--plate", "HEPG2-01/2", "--before-after", "--channel", "2"],
        "render-before-after.png",
        store,
    );
    let real = tempfile::tempdir().unwrap();
    let real_store = real_store(real.path());
    let first = sql_one(&real_store, "SELECT min(site_id) AS s FROM sites");
    keep(
        &[
            "--site",
            first.trim(),
            "--grid",
            "--size",
            "192",
            "--contrast",
            "auto",
        ],
        "render-site.png",
        &real_store,
    );
    keep(
        &[
            "--query",
            "SELECT site_id, well, sirna_id, tensor FROM sites ORDER BY site_id",
            "--size",
            "192",
            "--contrast",
            "auto",
        ],
        "render-sheet.png",
        &real_store,
    );
}

/// A `cellshard serve` process on a free loopback port, killed when dropped.
struct Server {
    child: std::process::Child,
    addr: String,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        Server::start_with_env(args, &[])
    }

    fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_program(env!("CARGO_BIN_EXE_cellshard").as_ref(), args, env)
    }

    fn start_program(program: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        use std::io::BufRead;
        let mut child = Command::new(program)
            .arg("serve")
            .args(args)
            .envs(env.iter().copied())
            .current_dir(repo())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .trim_end_matches('/')
            .to_string();
        Server { child, addr }
    }

    fn get(&self, path: &str, headers: &str) -> (u16, String, String) {
        http_get(&self.addr, path, headers)
    }
}

/// GET `path` from `addr` with extra header lines: (status, headers, body).
fn http_get(addr: &str, path: &str, headers: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds so far of process `pid` and each of its children, by pid (Linux).
fn tree_cpu(pid: u32) -> std::collections::BTreeMap<u32, f64> {
    let ticks = 100.0; // USER_HZ on Linux
    let mut out = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let ppid: u32 = fields[1].parse().unwrap();
        if p == pid || ppid == pid {
            let t: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
            out.insert(p, t / ticks);
        }
    }
    out
}

/// Percent-encode a query string value.
fn q(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[test]
fn the_viewer_is_read_only_capped_and_timed() {
    let store = view_store();
    let srv = Server::start(&[
        "--store",
        store,
        "--bind",
        "127.0.0.1:0",
        "--max-rows",
        "5",
        "--query-timeout",
        "3",
    ]);
    let (status, _, body) = srv.get("/", "");
    assert_eq!(status, 200);
    assert!(
        body.contains("Plates") && body.contains("HEPG2-01"),
        "{body}"
    );
    // Row cap.
    let (status, _, body) = srv.get(&format!("/sql?q={}", q("SELECT site_id FROM sites")), "");
    assert_eq!(status, 200);
    assert!(body.contains("cut at the row cap of 5"), "{body}");
    assert_eq!(body.matches("<tr>").count(), 6, "{body}");
    // Read-only: every writing statement is refused with the reason.
    let copy_target = tempfile::tempdir().unwrap();
    let target = copy_target.path().join("out.csv");
    for bad in [
        "DROP TABLE sites".to_string(),
        "DROP VIEW controls".into(),
        "CREATE VIEW v AS SELECT 1".into(),
        "CREATE TABLE t AS SELECT * FROM sites".into(),
        format!(
            "CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '{}'",
            target.display()
        ),
        "INSERT INTO sites SELECT * FROM sites".into(),
        "DELETE FROM sites".into(),
        format!("COPY (SELECT site_id FROM sites) TO '{}'", target.display()),
        "SET datafusion.execution.batch_size = 1".into(),
        "SELECT 1; DROP TABLE sites".into(),
    ] {
        let (status, _, body) = srv.get(&format!("/sql?q={}", q(&bad)), "");
        assert_eq!(status, 400, "{bad}");
        assert!(
            body.contains("read-only") || body.contains("one statement at a time"),
            "{bad}: {body}"
        );
    }
    assert!(!target.exists(), "COPY wrote a file");
    // EXPLAIN ANALYZE runs (the row cap does not wrap it).
    let (status, _, body) = srv.get(
        &format!("/sql?q={}", q("EXPLAIN ANALYZE SELECT count(*) FROM sites")),
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Plan with Metrics"), "{body}");
    let (_, _, body) = srv.get(
        &format!("/sql?q={}", q("SELECT count(*) AS n FROM sites")),
        "",
    );
    assert!(body.contains(">616<"), "the tables changed: {body}");
    // A slow query is stopped at the timeout, and other pages answer meanwhile.
    let slow_addr = srv.addr.clone();
    let slow = std::thread::spawn(move || {
        let t = std::time::Instant::now();
        let r = http_get(
            &slow_addr,
            &format!(
                "/sql?q={}",
                q("SELECT sum(value % 7) FROM generate_series(1, 100000000000)")
            ),
            "",
        );
        (r, t.elapsed())
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    let t = std::time::Instant::now();
    let (status, _, _) = srv.get("/plate/HEPG2-01/1?stat=mean&channel=2", "");
    let fast = t.elapsed();
    assert_eq!(status, 200);
    let ((status, _, body), slow_took) = slow.join().unwrap();
    assert_eq!(status, 504);
    assert!(body.contains("stopped after 3 s"), "{body}");
    assert!(
        fast + std::time::Duration::from_millis(500) < slow_took,
        "the plate page ({fast:?}) waited for the slow query ({slow_took:?})"
    );
    // A query that never yields (a cross join's match) is killed with its worker process:
    // one second after the 504, the server and its workers use no CPU.
    let (status, _, body) = srv.get(
        &format!(
            "/sql?q={}",
            q("SELECT count(*) FROM generate_series(1, 100000) a, generate_series(1, 100000) b WHERE a.value + b.value = 7")
        ),
        "",
    );
    assert_eq!(status, 504, "{body}");
    std::thread::sleep(std::time::Duration::from_secs(1));
    let before = tree_cpu(srv.child.id());
    std::thread::sleep(std::time::Duration::from_secs(3));
    let after = tree_cpu(srv.child.id());
    let used: f64 = after
        .iter()
        .filter_map(|(pid, t)| before.get(pid).map(|b| t - b))
        .sum();
    eprintln!("viewer: CPU seconds used 1-4 s after a timed-out query: {used:.2}");
    assert!(
        used < 0.5,
        "the timed-out query kept running: {used:.2} CPU s"
    );
    // Another site's page may not use the viewer, on loopback too; scripts (no Origin, no
    // Sec-Fetch-Site) and the viewer's own pages may. Every answer carries the policy.
    let port = srv.addr.rsplit(':').next().unwrap().to_string();
    for (headers, want) in [
        ("Origin: http://evil.example\r\n".to_string(), 403),
        ("Sec-Fetch-Site: cross-site\r\n".to_string(), 403),
        (
            format!("Origin: http://127.0.0.1:{port}\r\nSec-Fetch-Site: same-origin\r\n"),
            200,
        ),
        (String::new(), 200),
    ] {
        let (status, head, _) = srv.get("/sql?q=SELECT%201", &headers);
        assert_eq!(status, want, "{headers}");
        let head = head.to_lowercase();
        for policy in [
            "content-security-policy: default-src 'self'",
            "frame-ancestors 'none'",
            "x-content-type-options: nosniff",
            "referrer-policy: no-referrer",
        ] {
            assert!(head.contains(policy), "{policy} missing: {head}");
        }
    }
    // A query past --query-memory fails alone (503, resources exhausted); the server and
    // the next query go on.
    let small = Server::start(&[
        "--store",
        store,
        "--bind",
        "127.0.0.1:0",
        "--query-memory",
        "1",
    ]);
    let big =
        "SELECT length(string_agg(repeat('x', 1000), ',')) AS n FROM generate_series(1, 200000)";
    let (status, head, body) = small.get(&format!("/sql?q={}", q(big)), "");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.to_lowercase().contains("resources exhausted"),
        "{body}"
    );
    assert!(head.to_lowercase().contains("retry-after"), "{head}");
    assert_eq!(small.get("/health", "").0, 200);
    let (status, _, body) = small.get(
        &format!("/sql?q={}", q("SELECT count(*) AS n FROM sites")),
        "",
    );
    assert_eq!(status, 200, "{body}");
    drop(small);
    // Not found, and pictures.
    assert_eq!(srv.get("/site/HEPG2-01_1_Z99_1", "").0, 404);
    // Without a token, only requests for localhost (no DNS rebinding).
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(&srv.addr).unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: evil.example:8080\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 403"), "{raw}");
    assert_eq!(srv.get("/plate/HEPG2-01/9", "").0, 404);
    let (status, head, body) = srv.get("/img/site/HEPG2-01_1_B02_1?size=32", "");
    assert_eq!(status, 200);
    assert!(head.to_lowercase().contains("content-type: image/png") && body.len() > 8);
    // Beyond loopback only with a token; with one, every request needs it.
    let out = cellshard(["serve", "--store", store, "--bind", "0.0.0.0:0"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("without --token"),
        "{}",
        text(&out.stderr)
    );
    let out = cellshard([
        "serve",
        "--store",
        store,
        "--bind",
        "127.0.0.1:0",
        "--token",
        "",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("at least 8 characters"),
        "{}",
        text(&out.stderr)
    );
    let tok = Server::start(&[
        "--store",
        store,
        "--bind",
        "127.0.0.1:0",
        "--token",
        "s3cret-token",
    ]);
    assert_eq!(tok.get("/", "").0, 401);
    assert_eq!(tok.get("/?token=wrong", "").0, 401);
    let (status, head, _) = tok.get("/?token=s3cret-token", "");
    assert_eq!(status, 200);
    assert!(head.contains("cellshard_token=s3cret-token"), "{head}");
    assert_eq!(
        tok.get("/sql", "Cookie: cellshard_token=s3cret-token\r\n")
            .0,
        200
    );
    assert_eq!(
        tok.get("/sql", "Authorization: Bearer s3cret-token\r\n").0,
        200
    );
}

/// Debian's Chromium, where installed.
fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|n| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|d| d.join(n))
                .find(|p| p.exists())
        })
}

#[test]
fn the_viewer_works_in_a_real_browser() {
    let Some(browser) = chromium() else {
        cellshard_tests::missing_part("Debian's chromium");
        return;
    };
    let store = view_store();
    let srv = Server::start(&["--store", store, "--bind", "127.0.0.1:0"]);
    let shots = screenshots();
    let started = std::time::Instant::now();
    let out = Command::new(python())
        .arg(repo().join("tests/browser/drive.py"))
        .arg(&browser)
        .arg(format!("http://{}", srv.addr))
        .arg(&shots)
        .output()
        .unwrap();
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{report}");
    for name in [
        "viewer-store.png",
        "viewer-sql.png",
        "viewer-plate.png",
        "viewer-site.png",
    ] {
        let (w, h) = png_size(&shots.join(name));
        assert!(w >= 1000 && h >= 600, "{name}: {w}x{h}");
    }
    println!(
        "{report}browser test: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn the_viewer_manifest_starts_the_viewer_it_describes() {
    // The Deployment's args and token variable, and the Service's target port, as JSON.
    let parse = r#"
import json, sys, yaml
docs = list(yaml.safe_load_all(open(sys.argv[1])))
dep = next(d for d in docs if d["kind"] == "Deployment")
svc = next(d for d in docs if d["kind"] == "Service")
c = dep["spec"]["template"]["spec"]["containers"][0]
print(json.dumps({"args": c["args"], "env": [e["name"] for e in c.get("env", [])],
                  "ports": c["ports"], "target": svc["spec"]["ports"][0]["targetPort"],
                  "selector": svc["spec"]["selector"],
                  "labels": dep["spec"]["template"]["metadata"]["labels"]}))
"#;
    let out = Command::new(python())
        .args(["-c", parse])
        .arg(repo().join("deploy/k8s/viewer.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["selector"], m["labels"]);
    assert_eq!(m["target"], m["ports"][0]["name"]);
    assert_eq!(m["env"], serde_json::json!(["CELLSHARD_VIEWER_TOKEN"]));
    let mut args: Vec<String> = m["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(args[0], "serve");
    let bind = args.iter().position(|a| a == "--bind").unwrap() + 1;
    assert_eq!(
        args[bind].rsplit(':').next().unwrap(),
        m["ports"][0]["containerPort"].to_string()
    );
    // The same command on this machine: our store, a free loopback port, the token from
    // the environment as the Secret would set it.
    let store = args.iter().position(|a| a == "--store").unwrap() + 1;
    args[store] = view_store().to_string();
    args[bind] = "127.0.0.1:0".into();
    let refs: Vec<&str> = args[1..].iter().map(String::as_str).collect();
    let srv = Server::start_with_env(&refs, &[("CELLSHARD_VIEWER_TOKEN", "manifest-token")]);
    assert_eq!(srv.get("/", "").0, 401);
    assert_eq!(srv.get("/?token=manifest-token", "").0, 200);
}

/// A free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills its process when dropped (a failed assertion leaves no cluster behind).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// Start `cellshard ARGS`, its standard error to `log`.
fn spawn(args: &[String], log: &std::path::Path) -> Child {
    Child(
        Command::new(env!("CARGO_BIN_EXE_cellshard"))
            .args(args)
            .current_dir(repo())
            .env("CELLSHARD_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

/// Replace the value after `flag` in `args`.
fn set_arg(args: &mut [String], flag: &str, value: &str) {
    let i = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} missing from {args:?}"))
        + 1;
    args[i] = value.to_string();
}

fn sql_csv(store: &str, cluster: Option<&str>, query: &str) -> Output {
    let mut args = vec!["sql", "--store", store, "--format", "csv", "-c", query];
    if let Some(c) = cluster {
        args.extend(["--cluster", c]);
    }
    cellshard(args)
}

#[test]
fn the_cluster_manifest_runs_sql_from_the_same_binary_and_survives_a_lost_executor() {
    // The scheduler's and executors' args, ports and Service, as JSON.
    let parse = r#"
import json, sys, yaml
docs = list(yaml.safe_load_all(open(sys.argv[1])))
deps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
svc = next(d for d in docs if d["kind"] == "Service")
c = lambda n: deps[n]["spec"]["template"]["spec"]["containers"][0]
print(json.dumps({
    "scheduler": c("cellshard-scheduler")["args"],
    "executor": c("cellshard-executor")["args"],
    "replicas": deps["cellshard-executor"]["spec"]["replicas"],
    "secrets": [e["secretRef"]["name"] for n in deps for e in c(n)["envFrom"]],
    "executor_env": [e["name"] for e in c("cellshard-executor").get("env", [])],
    "scheduler_ports": c("cellshard-scheduler")["ports"],
    "service": svc["spec"], "service_name": svc["metadata"]["name"],
    "labels": deps["cellshard-scheduler"]["spec"]["template"]["metadata"]["labels"]}))
"#;
    let out = Command::new(python())
        .args(["-c", parse])
        .arg(repo().join("deploy/k8s/sql-cluster.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["service"]["selector"], m["labels"]);
    assert_eq!(
        m["service"]["ports"][0]["targetPort"],
        m["scheduler_ports"][0]["name"]
    );
    assert!(m["replicas"].as_u64().unwrap() >= 2);
    assert_eq!(
        m["secrets"],
        serde_json::json!(["cellshard-credentials", "cellshard-credentials"])
    );
    assert_eq!(
        m["executor_env"],
        serde_json::json!(["CELLSHARD_EXTERNAL_HOST"])
    );
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    };
    let mut scheduler = strings(&m["scheduler"]);
    let executor = strings(&m["executor"]);
    assert_eq!(
        (scheduler[0].as_str(), executor[0].as_str()),
        ("scheduler", "executor")
    );
    let service_port = m["service"]["ports"][0]["port"].to_string();
    assert_eq!(
        executor[executor.iter().position(|a| a == "--scheduler").unwrap() + 1],
        format!(
            "df://{}:{service_port}",
            m["service_name"].as_str().unwrap()
        )
    );

    // The same commands on loopback: one scheduler, two executors of one task each (so a
    // query's tasks are spread), a short executor timeout so a lost one is noticed soon.
    let port = free_port().to_string();
    for (flag, value) in [
        ("--bind", "127.0.0.1"),
        ("--port", &port),
        ("--external-host", "127.0.0.1"),
        ("--executor-timeout", "6"),
    ] {
        set_arg(&mut scheduler, flag, value);
    }
    let url = format!("df://127.0.0.1:{port}");
    let work = tempfile::tempdir().unwrap();
    let _scheduler = spawn(&scheduler, &work.path().join("scheduler.log"));
    let mut executors: Vec<Child> = (0..2)
        .map(|i| {
            let mut a = executor.clone();
            let dir = work.path().join(i.to_string()).display().to_string();
            std::fs::create_dir_all(&dir).unwrap();
            for (flag, value) in [
                ("--scheduler", url.clone()),
                ("--bind", "127.0.0.1".into()),
                ("--port", free_port().to_string()),
                ("--grpc-port", free_port().to_string()),
                ("--concurrency", "1".into()),
                ("--work-dir", dir),
                ("--heartbeat-interval", "2".into()),
            ] {
                set_arg(&mut a, flag, &value);
            }
            a.extend(["--external-host".into(), "127.0.0.1".into()]);
            spawn(&a, &work.path().join(format!("executor-{i}.log")))
        })
        .collect();

    // Local and cluster answers are the same, tensor functions included.
    let store = view_store();
    let q = "SELECT plate, count(*), round(sum(tensor_mean(tensor, 1)), 6), round(sum(tensor_mean(tensor, 'w1')), 6), min(tensor_percentile(tensor, 'w5', 99)) FROM sites GROUP BY plate ORDER BY plate";
    let local = sql_csv(store, None, q);
    assert!(local.status.success(), "{}", text(&local.stderr));
    let remote = sql_csv(store, Some(&url), q);
    assert!(remote.status.success(), "{}", text(&remote.stderr));
    assert_eq!(text(&remote.stdout), text(&local.stdout));

    // An executor killed mid-query: the scheduler reruns its tasks on the other one, or
    // the query fails saying so; either way within the executor timeout and retries.
    let values: Vec<String> = (0..150).map(|i| format!("({i})")).collect();
    let slow = format!(
        "SELECT count(*), round(sum(tensor_percentile(tensor, c % 6 + 1, 50)), 3) FROM sites CROSS JOIN (VALUES {}) v(c)",
        values.join(",")
    );
    eprintln!(
        "cluster answers like the local session; logs in {}",
        work.path().display()
    );
    let expected = sql_csv(store, None, &slow);
    assert!(expected.status.success(), "{}", text(&expected.stderr));
    let started = std::time::Instant::now();
    let query = Command::new(env!("CARGO_BIN_EXE_cellshard"))
        .args([
            "sql",
            "--store",
            store,
            "--format",
            "csv",
            "--cluster",
            &url,
            "-c",
            &slow,
        ])
        .current_dir(repo())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    executors[0].0.kill().unwrap();
    let out = query.wait_with_output().unwrap();
    let took = started.elapsed();
    eprintln!("query with a lost executor: {:?} in {took:?}", out.status);
    if out.status.success() {
        assert_eq!(text(&out.stdout), text(&expected.stdout));
    } else {
        let e = text(&out.stderr);
        assert!(e.to_lowercase().contains("executor"), "{e}");
    }
    assert!(took < std::time::Duration::from_secs(240), "{took:?}");
    drop(executors);

    // No scheduler there: the address and the reason, within the timeout.
    let nobody = format!("df://127.0.0.1:{}", free_port());
    let started = std::time::Instant::now();
    let out = cellshard([
        "sql",
        "--store",
        store,
        "--cluster",
        &nobody,
        "--cluster-timeout",
        "3",
        "-c",
        "SELECT 1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out.stderr);
    assert!(
        e.contains("cannot reach the Ballista scheduler") && e.contains(&nobody),
        "{e}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let out = cellshard([
        "sql",
        "--store",
        store,
        "--cluster",
        "localhost:50050",
        "-c",
        "SELECT 1",
    ]);
    assert!(
        text(&out.stderr).contains("expected df://HOST[:PORT]"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_shipped_command_carries_no_benchmark_lab() {
    let out = Command::new(env!("CARGO_BIN_EXE_cellshard"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    assert!(
        !help.lines().any(|l| l.trim_start().starts_with("bench")),
        "{help}"
    );
    let bench = Command::new(env!("CARGO_BIN_EXE_cellshard"))
        .arg("bench")
        .output()
        .unwrap();
    assert_eq!(bench.status.code(), Some(2));
}
