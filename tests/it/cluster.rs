//! SQL on a Ballista cluster (a scheduler and executors in this process, over real gRPC):
//! results equal the local session's, tensors and tensor functions included; the pinned
//! version holds; bad addresses and unsupported tables are refused with the reason.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use cellshard_cluster::{ClusterUrl, DEFAULT_CONNECT_TIMEOUT, LocalCluster};
use cellshard_sql::{AsOf, Session};
use tokio::sync::OnceCell;

use crate::{pipeline, strings};

/// Raw synthetic images: HUVEC-01 and RPE-01, 2 plates each, 3 wells x 2 sites.
async fn raw() -> &'static PathBuf {
    static RAW: OnceCell<PathBuf> = OnceCell::const_new();
    RAW.get_or_init(|| async {
        let dir = tempfile::tempdir().unwrap().keep();
        let cfg = cellshard_synth::SynthConfig {
            experiments: Some(vec!["HUVEC-01".into(), "RPE-01".into()]),
            ..crate::tiny_synth(11)
        };
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
        dir
    })
    .await
}

/// Ingest the raw set's `experiments` into `store` (one commit per run).
async fn ingest(store: &str, experiments: &[&str]) {
    let src = raw().await.display().to_string();
    cellshard_runtime::run(cellshard_runtime::RunOptions {
        source: Some(src.clone()),
        metadata: vec![format!("{src}/metadata.csv")],
        sink: Some(store.to_string()),
        selection: cellshard_runtime::discover::PlateSelection {
            experiments: experiments.iter().map(|e| e.to_string()).collect(),
            ..Default::default()
        },
        ..cellshard_runtime::RunOptions::new(pipeline("tiny.toml"))
    })
    .await
    .unwrap();
}

async fn on_cluster(url: &ClusterUrl, store: &str) -> Session {
    cellshard_cluster::connect(
        url,
        DEFAULT_CONNECT_TIMEOUT,
        store,
        &BTreeMap::new(),
        AsOf::Latest,
    )
    .await
    .unwrap()
}

async fn rows(s: &Session, q: &str) -> Vec<RecordBatch> {
    cellshard_sql::query(s, q)
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}"))
}

/// Every value of a result, column by column, as text (binary as hex), so that two
/// results compare whatever their batch boundaries.
fn table(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let n = batches.first().map_or(0, |b| b.num_columns());
    (0..n)
        .map(|c| {
            let mut out = Vec::new();
            for b in batches {
                let col = b.column(c);
                let f = arrow::util::display::ArrayFormatter::try_new(
                    col.as_ref(),
                    &arrow::util::display::FormatOptions::default().with_null("NULL"),
                )
                .unwrap();
                out.extend((0..b.num_rows()).map(|r| f.value(r).to_string()));
            }
            out
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_results_equal_local_ones_tensors_included() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store").display().to_string();
    ingest(&store, &["HUVEC-01", "RPE-01"]).await;
    let cluster = LocalCluster::start(2, 2).await.unwrap();
    let local = cellshard_sql::open_session(&store, &BTreeMap::new(), AsOf::Latest)
        .await
        .unwrap();
    let remote = on_cluster(&cluster.url, &store).await;
    assert_eq!(local.versions, remote.versions);
    let queries = [
        "SELECT site_id, experiment, plate, well, tensor, tensor_shape(tensor), tensor_dtype(tensor), \
         tensor_mean(tensor, 1), tensor_std(tensor, 6), tensor_percentile(tensor, 3, 99), \
         tensor_channel(tensor, 2), tensor_thumbnail(tensor, 16), channel_mean \
         FROM sites ORDER BY site_id",
        "SELECT experiment, plate, count(*), sum(tensor_mean(tensor, 2)) FROM sites GROUP BY 1, 2 ORDER BY 1, 2",
        "SELECT s.site_id, p.channel, p.p_low FROM sites s JOIN plate_stats p \
         ON s.experiment = p.experiment AND s.plate = p.plate ORDER BY 1, 2",
        "SELECT * FROM site_qc ORDER BY site_id, channel",
        "SELECT site_id FROM sites WHERE experiment = 'RPE-01' AND tensor_mean(tensor, 1) > 0 ORDER BY 1",
    ];
    for q in queries {
        let a = rows(&local, q).await;
        let b = rows(&remote, q).await;
        let (ta, tb) = (table(&a), table(&b));
        assert!(!ta.is_empty() && !ta[0].is_empty(), "{q}: no rows");
        assert_eq!(
            ta, tb,
            "{q}: the cluster's result differs from the local one"
        );
    }
    // 24 sites in four plates: the scan stage ran as more than one task.
    assert_eq!(
        strings(&rows(&remote, "SELECT count(*) FROM sites").await, 0),
        ["24"]
    );
    let plan = strings(
        &rows(
            &remote,
            "EXPLAIN ANALYZE SELECT plate, sum(tensor_mean(tensor, 1)) FROM sites GROUP BY plate",
        )
        .await,
        1,
    )
    .join("\n");
    let tasks: Vec<usize> = plan
        .split("SuccessfulStage[")
        .skip(1)
        .filter_map(|s| {
            s.split("partitions=")
                .nth(1)?
                .split(']')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(
        tasks.len() >= 2 && tasks.iter().any(|&n| n > 1),
        "expected stages with more than one task, got {tasks:?} in:\n{plan}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_session_reads_the_version_it_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store").display().to_string();
    ingest(&store, &["HUVEC-01"]).await;
    let cluster = LocalCluster::start(1, 2).await.unwrap();
    let pinned = on_cluster(&cluster.url, &store).await;
    let v = pinned.versions["sites"];
    // A commit at v+1 (another experiment) after the session pinned v.
    ingest(&store, &["RPE-01"]).await;
    let latest = cellshard_sql::open_session(&store, &BTreeMap::new(), AsOf::Latest)
        .await
        .unwrap();
    assert!(latest.versions["sites"] > v);
    let q = "SELECT experiment, count(*) FROM sites GROUP BY 1 ORDER BY 1";
    assert_eq!(strings(&rows(&pinned, q).await, 0), ["HUVEC-01"]);
    assert_eq!(strings(&rows(&pinned, q).await, 1), ["12"]);
    assert_eq!(strings(&rows(&latest, q).await, 0), ["HUVEC-01", "RPE-01"]);
    // The same version read locally gives the same rows.
    let at_v = cellshard_sql::open_session(&store, &BTreeMap::new(), AsOf::Version(v))
        .await
        .unwrap();
    let q = "SELECT site_id, tensor_mean(tensor, 4) FROM sites ORDER BY 1";
    assert_eq!(table(&rows(&pinned, q).await), table(&rows(&at_v, q).await));
}

#[tokio::test]
async fn an_unreachable_scheduler_is_named_within_the_timeout() {
    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = ClusterUrl::parse(&format!("df://127.0.0.1:{port}")).unwrap();
    let e = cellshard_cluster::context(&url, Duration::from_secs(5))
        .await
        .err()
        .expect("nothing listens there")
        .to_string();
    assert!(
        e.contains(&format!("df://127.0.0.1:{port}")) && e.contains("cannot reach"),
        "{e}"
    );
    // An address that never answers (TEST-NET-1, RFC 5737): refused or timed out, within
    // the timeout.
    let url = ClusterUrl::parse("df://192.0.2.1:50050").unwrap();
    let started = Instant::now();
    let e = cellshard_cluster::context(&url, Duration::from_secs(2))
        .await
        .err()
        .expect("TEST-NET-1 does not answer")
        .to_string();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    assert!(e.contains("df://192.0.2.1:50050"), "{e}");
    for bad in [
        "http://localhost:50050",
        "df://",
        "localhost:50050",
        "df://h:1/path",
    ] {
        let e = ClusterUrl::parse(bad).unwrap_err().to_string();
        assert!(e.contains(bad) && e.contains("df://HOST"), "{bad}: {e}");
    }
    assert_eq!(
        ClusterUrl::parse("df://sched.example").unwrap().port,
        cellshard_cluster::DEFAULT_PORT
    );
}

/// A `sites` table written by another Delta writer, with `features` in its log.
fn foreign_table(
    protocol: &str,
    configuration: &str,
    field_meta: &str,
    add_extra: &str,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sites/_delta_log");
    std::fs::create_dir_all(&log).unwrap();
    let schema = format!(
        r#"{{"type":"struct","fields":[{{"name":"site_id","type":"string","nullable":true,"metadata":{{{field_meta}}}}}]}}"#
    );
    let commit = [
        format!(r#"{{"protocol":{protocol}}}"#),
        format!(
            r#"{{"metaData":{{"id":"5f0b8f5e-0000-4000-8000-000000000001","format":{{"provider":"parquet","options":{{}}}},"schemaString":{},"partitionColumns":[],"configuration":{{{configuration}}},"createdTime":1764547200000}}}}"#,
            serde_json::to_string(&schema).unwrap()
        ),
        format!(
            r#"{{"add":{{"path":"part-00000.parquet","partitionValues":{{}},"size":1000,"modificationTime":1764547200000,"dataChange":true{add_extra}}}}}"#
        ),
    ];
    std::fs::write(
        log.join("00000000000000000000.json"),
        commit.join("\n") + "\n",
    )
    .unwrap();
    dir
}

#[tokio::test]
async fn tables_with_deletion_vectors_or_column_mapping_are_refused() {
    let mapped = foreign_table(
        r#"{"minReaderVersion":2,"minWriterVersion":5}"#,
        r#""delta.columnMapping.mode":"name","delta.columnMapping.maxColumnId":"1""#,
        r#""delta.columnMapping.id":1,"delta.columnMapping.physicalName":"col-5f0b8f5e""#,
        "",
    );
    let dv = foreign_table(
        r#"{"minReaderVersion":3,"minWriterVersion":7,"readerFeatures":["deletionVectors"],"writerFeatures":["deletionVectors"]}"#,
        r#""delta.enableDeletionVectors":"true""#,
        "",
        r#","deletionVector":{"storageType":"u","pathOrInlineDv":"ab^-aqEH.-t@S}K{vb[*k^","offset":1,"sizeInBytes":36,"cardinality":2}"#,
    );
    let cluster = LocalCluster::start(1, 1).await.unwrap();
    for (dir, reason) in [(&mapped, "column mapping"), (&dv, "deletion vectors")] {
        let store = dir.path().display().to_string();
        let local = cellshard_sql::open_session(&store, &BTreeMap::new(), AsOf::Latest)
            .await
            .err()
            .expect("refused")
            .to_string();
        let remote = cellshard_cluster::connect(
            &cluster.url,
            DEFAULT_CONNECT_TIMEOUT,
            &store,
            &BTreeMap::new(),
            AsOf::Latest,
        )
        .await
        .err()
        .expect("refused")
        .to_string();
        for e in [local, remote] {
            assert!(
                e.contains("sites") && e.contains(reason) && e.contains("cellshard reads"),
                "{reason}: {e}"
            );
        }
    }
}
