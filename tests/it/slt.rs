//! The SQL logic tests in `sql/tests/*.slt`, each file in its own session over its own
//! scratch store built from synthetic data. Also the proofs that projection pushdown and
//! partition pruning hold, counted in bytes fetched from the object store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use cellshard_sql::{AsOf, Session};
use sqllogictest::{DBOutput, DefaultColumnType};
use tokio::sync::OnceCell;

use crate::{pipeline, repo, run};

/// The raw synthetic set shared (read-only) by every fixture: HUVEC-01 and RPE-01, one
/// plate each, 3 wells x 2 sites, 256x256 16-bit; site RPE-01_1_B02_2 lacks w6.
async fn raw() -> &'static PathBuf {
    static RAW: OnceCell<PathBuf> = OnceCell::const_new();
    RAW.get_or_init(|| async {
        let dir = tempfile::tempdir().unwrap().keep();
        let cfg = cellshard_synth::SynthConfig {
            experiments: Some(vec!["HUVEC-01".into(), "RPE-01".into()]),
            ..crate::tiny_synth(7)
        };
        let cfg = cellshard_synth::SynthConfig { plates: 1, ..cfg };
        let out =
            cellshard_store::Location::parse(dir.to_str().unwrap(), &BTreeMap::new()).unwrap();
        cellshard_synth::write_dataset(
            out.store.clone(),
            &out.prefix,
            &crate::design(),
            &cfg,
            None,
        )
        .await
        .unwrap();
        let missing: Vec<PathBuf> = crate::files(&dir)
            .into_iter()
            .filter(|p| p.ends_with("train/RPE-01/Plate1/B02_s2_w6.png"))
            .collect();
        assert_eq!(missing.len(), 1, "the synthetic set changed shape");
        std::fs::remove_file(&missing[0]).unwrap();
        dir
    })
    .await
}

/// A fresh store over the raw set, built in two runs so that it has history: worker 0/2
/// stores the first plate, then a full run adds the second (and rewrites the first).
pub async fn fixture_store() -> (tempfile::TempDir, String) {
    let raw = raw().await;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store").display().to_string();
    let src = raw.display().to_string();
    let meta = vec![format!("{src}/metadata.csv")];
    cellshard_runtime::run(cellshard_runtime::RunOptions {
        source: Some(src.clone()),
        metadata: meta.clone(),
        sink: Some(store.clone()),
        worker: cellshard_runtime::discover::WorkerShare { index: 0, count: 2 },
        ..cellshard_runtime::RunOptions::new(pipeline("tiny.toml"))
    })
    .await
    .unwrap();
    run(pipeline("tiny.toml"), &src, &meta, &store, 0).await;
    (dir, store)
}

struct Db {
    session: Session,
    store_dir: String,
}

fn column_type(t: &DataType) -> DefaultColumnType {
    if t.is_integer() {
        DefaultColumnType::Integer
    } else if t.is_floating() || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..)) {
        DefaultColumnType::FloatingPoint
    } else if matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) {
        DefaultColumnType::Text
    } else {
        DefaultColumnType::Any
    }
}

/// Rows as strings; EXPLAIN output has the scratch path and the random file names masked.
fn rows(batches: &[RecordBatch], store_dir: &str) -> Vec<Vec<String>> {
    let opts = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let fmts: Vec<ArrayFormatter> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            out.push(
                fmts.iter()
                    .map(|f| mask(&f.value(r).to_string(), store_dir))
                    .collect(),
            );
        }
    }
    out
}

fn mask(s: &str, store_dir: &str) -> String {
    let s = s.replace(store_dir.trim_start_matches('/'), "<store>");
    let mut out = String::new();
    let mut rest = s.as_str();
    // delta-rs names files part-00000-<uuid>-c000.zstd.parquet
    while let Some(i) = rest.find("part-") {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let end = tail
            .find(".parquet")
            .map_or(tail.len(), |e| e + ".parquet".len());
        out.push_str("<file>");
        rest = &tail[end..];
        // and the byte range of a file split, `:start..end`
        if let Some(r) = rest.strip_prefix(':') {
            let n = r
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(r.len());
            rest = &r[n..];
        }
    }
    out.push_str(rest);
    out
}

/// EXPLAIN output one plan line per row, numbered, indentation shown as dashes (as in
/// DataFusion's own .slt files): `physical_plan` then `01)DeltaScanExec`, `02)--...`.
fn plan_rows(rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for r in rows {
        let lines: Vec<&str> = r[1].lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.len() == 1 {
            out.push(vec![format!("{} {}", r[0], lines[0].trim())]);
            continue;
        }
        out.push(vec![r[0].clone()]);
        for (i, l) in lines.iter().enumerate() {
            let body = l.trim_start();
            let indent = l.len() - body.len();
            out.push(vec![format!("{:02}){}{body}", i + 1, "-".repeat(indent))]);
        }
    }
    out
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for Db {
    type Error = cellshard_sql::Error;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Self::Error> {
        let batches = self.session.run(sql).await?;
        let schema = batches.first().map(|b| b.schema());
        match schema {
            Some(s) if s.fields().len() == 2 && s.field(0).name() == "plan_type" => {
                Ok(DBOutput::Rows {
                    types: vec![DefaultColumnType::Text; 2],
                    rows: plan_rows(rows(&batches, &self.store_dir)),
                })
            }
            Some(s) if !s.fields().is_empty() => Ok(DBOutput::Rows {
                types: s
                    .fields()
                    .iter()
                    .map(|f| column_type(f.data_type()))
                    .collect(),
                rows: rows(&batches, &self.store_dir),
            }),
            _ => Ok(DBOutput::StatementComplete(0)),
        }
    }

    async fn shutdown(&mut self) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_logic_tests() {
    run_suite(None).await;
}

/// The same files, every query run on a Ballista cluster (a scheduler and two executors in
/// this process, over real gRPC, so every plan is serialized). Records marked
/// `onlyif cluster` / `skipif cluster` are the cluster's and the local session's variants
/// of a plan-text assertion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_logic_tests_on_a_cluster() {
    let cluster = cellshard_cluster::LocalCluster::start(2, 2).await.unwrap();
    run_suite(Some(&cluster.url)).await;
}

async fn run_suite(cluster: Option<&cellshard_cluster::ClusterUrl>) {
    let dir = repo().join("sql/tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "expected the .slt suite in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    for file in &files {
        // A file whose first line says so is run on one node only.
        let local_only = std::fs::read_to_string(file)
            .unwrap()
            .starts_with("# local only");
        if cluster.is_some() && local_only {
            continue;
        }
        if let Err(e) = run_file(file, cluster).await {
            failures.push(format!("{}:\n{e}", file.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} .slt files failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

async fn run_file(
    file: &Path,
    cluster: Option<&cellshard_cluster::ClusterUrl>,
) -> Result<(), String> {
    let (dir, store) = fixture_store().await;
    let raw = raw().await.display().to_string();
    let store_dir = std::fs::canonicalize(dir.path())
        .unwrap()
        .display()
        .to_string();
    let mut session = match cluster {
        None => cellshard_sql::open_session(&store, &BTreeMap::new(), AsOf::Latest)
            .await
            .map_err(|e| e.to_string())?,
        Some(url) => cellshard_cluster::connect(
            url,
            cellshard_cluster::DEFAULT_CONNECT_TIMEOUT,
            &store,
            &BTreeMap::new(),
            AsOf::Latest,
        )
        .await
        .map_err(|e| e.to_string())?,
    };
    // The experiment design beside the images, for joins with metadata; the tests also
    // set session options.
    session.allow_writes(true);
    session
        .run(&format!(
            "CREATE EXTERNAL TABLE design STORED AS CSV LOCATION '{raw}/metadata.csv' OPTIONS ('format.has_header' 'true')"
        ))
        .await
        .map_err(|e| e.to_string())?;
    let db = Arc::new(tokio::sync::Mutex::new(Some(Db { session, store_dir })));
    let mut runner = sqllogictest::Runner::new(move || {
        let db = db.clone();
        async move { Ok(db.lock().await.take().expect("one connection per file")) }
    });
    if cluster.is_some() {
        runner.add_label("cluster");
    }
    runner
        .run_file_async(file)
        .await
        .map_err(|e| e.display(true).to_string())
}
