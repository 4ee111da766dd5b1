//! The S3 protocol end to end against a real S3 server on 127.0.0.1 (s3s over a local
//! directory, SigV4 authentication on), with a fault layer in front of it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use cellshard_tests::s3::{S3Server, SECRET_KEY};

use cellshard_runtime::discover::WorkerShare;

use crate::*;

async fn synth_to(url: &str, options: &BTreeMap<String, String>) {
    let loc = cellshard_store::Location::parse(url, options).unwrap();
    let r = cellshard_synth::write_dataset(
        loc.store.clone(),
        &loc.prefix,
        &design(),
        &tiny_synth(11),
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.sites, 12);
}

async fn run_with(
    p: &Pipeline,
    raw: &str,
    store: &str,
    options: &BTreeMap<String, String>,
) -> RunSummary {
    run_worker(p, raw, store, options, WorkerShare::ALL).await
}

async fn run_worker(
    p: &Pipeline,
    raw: &str,
    store: &str,
    options: &BTreeMap<String, String>,
    worker: WorkerShare,
) -> RunSummary {
    try_run(p, raw, store, options, worker).await.unwrap()
}

async fn try_run(
    p: &Pipeline,
    raw: &str,
    store: &str,
    options: &BTreeMap<String, String>,
    worker: WorkerShare,
) -> cellshard_runtime::Result<RunSummary> {
    let mut p = p.clone();
    p.source.options = options.clone();
    p.sink.options = options.clone();
    cellshard_runtime::run(RunOptions {
        source: Some(raw.to_string()),
        metadata: vec![format!("{raw}/metadata.csv")],
        sink: Some(store.to_string()),
        worker,
        threads: 2,
        ..RunOptions::new(p)
    })
    .await
}

/// An S3 server holding the tiny synthetic set ingested into `s3://lake/store`.
async fn tiny_store_on_s3() -> (S3Server, BTreeMap<String, String>) {
    let server = S3Server::start(&["raw", "lake"]).await;
    let opts = server.options();
    synth_to("s3://raw/rxrx1", &opts).await;
    run_with(
        &pipeline("tiny.toml"),
        "s3://raw/rxrx1",
        "s3://lake/store",
        &opts,
    )
    .await;
    (server, opts)
}

async fn tensors(store: &str, options: &BTreeMap<String, String>) -> (Vec<String>, Vec<Vec<u8>>) {
    let ctx = cellshard_sql::open_session(store, options, cellshard_sql::AsOf::Latest)
        .await
        .unwrap();
    let rows = cellshard_sql::query(&ctx, "SELECT site_id, tensor FROM sites ORDER BY site_id")
        .await
        .unwrap();
    (strings(&rows, 0), binaries(&rows, 1))
}

/// The same synthetic data ingested from local disk into a local store.
async fn local_reference(dir: &Path) -> (Vec<String>, Vec<Vec<u8>>) {
    let raw = dir.join("raw").display().to_string();
    let store = dir.join("store").display().to_string();
    synth_to(&raw, &BTreeMap::new()).await;
    let s = run_with(&pipeline("tiny.toml"), &raw, &store, &BTreeMap::new()).await;
    assert_eq!(s.sites.stored, 12);
    tensors(&store, &BTreeMap::new()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_source_and_sink_equal_local_and_survive_faults() {
    let dir = tempfile::tempdir().unwrap();
    let local = local_reference(dir.path()).await;

    // Clean server: synth -> S3 -> run -> Delta on S3 -> sql.
    let server = S3Server::start(&["raw", "lake"]).await;
    let opts = server.options();
    synth_to("s3://raw/rxrx1", &opts).await;
    let s = run_with(
        &pipeline("tiny.toml"),
        "s3://raw/rxrx1",
        "s3://lake/store",
        &opts,
    )
    .await;
    assert_eq!(
        (s.objects.discovered, s.objects.stored, s.objects.ignored),
        (73, 72, 1)
    );
    assert!(s.requests > 0);
    assert_eq!(s.retries, 0, "no faults, no retries");
    assert!(s.peak_inflight_bytes > 0 && s.peak_inflight_bytes <= 512 << 20);
    assert_eq!(
        tensors("s3://lake/store", &opts).await,
        local,
        "S3 output must equal the local run"
    );
    let json = serde_json::to_string(&s).unwrap();
    assert!(!json.contains(SECRET_KEY));

    // Two workers writing the same S3 tables at the same time: conditional-put commits.
    let p = pipeline("tiny.toml");
    let (a, b) = tokio::join!(
        run_worker(
            &p,
            "s3://raw/rxrx1",
            "s3://lake/shared",
            &opts,
            WorkerShare { index: 0, count: 2 }
        ),
        run_worker(
            &p,
            "s3://raw/rxrx1",
            "s3://lake/shared",
            &opts,
            WorkerShare { index: 1, count: 2 }
        )
    );
    assert_eq!((a.plates, b.plates), (1, 1));
    assert_eq!(a.objects.stored + b.objects.stored, 72);
    assert_eq!(
        tensors("s3://lake/shared", &opts).await,
        local,
        "two concurrent workers give the same table"
    );

    // 30% transient faults (503, 500, connection resets) on every request, uploads included.
    server
        .faults
        .transient_per_mille
        .store(300, Ordering::Relaxed);
    synth_to("s3://raw/faulty", &opts).await;
    let s = run_with(
        &pipeline("tiny.toml"),
        "s3://raw/faulty",
        "s3://lake/faulty-store",
        &opts,
    )
    .await;
    let injected = server.faults.injected.load(Ordering::Relaxed);
    eprintln!(
        "30% faults: {} requests, {} faults injected in total, {} retries counted by the run",
        s.requests, injected, s.retries
    );
    assert!(s.retries > 0, "{s:?}");
    assert_eq!((s.objects.stored, s.objects.rejected), (72, 0));
    server
        .faults
        .transient_per_mille
        .store(0, Ordering::Relaxed);
    assert_eq!(
        tensors("s3://lake/faulty-store", &opts).await,
        local,
        "faults must not change the output"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_fault_rejects_exactly_that_site_and_never_leaks_the_secret() {
    let server = S3Server::start(&["raw", "lake"]).await;
    let opts = server.options();
    synth_to("s3://raw/rxrx1", &opts).await;
    server
        .faults
        .forbidden
        .lock()
        .unwrap()
        .push("Plate2/B02_s1_w3.png".into());
    let s = run_with(
        &pipeline("tiny.toml"),
        "s3://raw/rxrx1",
        "s3://lake/store",
        &opts,
    )
    .await;
    assert_eq!((s.sites.stored, s.sites.rejected), (11, 1));
    assert_eq!(s.rejects_by_reason.get("read_failed"), Some(&6));
    let ctx = cellshard_sql::open_session("s3://lake/store", &opts, cellshard_sql::AsOf::Latest)
        .await
        .unwrap();
    let rows = cellshard_sql::query(&ctx, "SELECT DISTINCT site_id, message FROM rejects")
        .await
        .unwrap();
    assert_eq!(strings(&rows, 0), ["HUVEC-01_2_B02_1"]);
    let msg = &strings(&rows, 1)[0];
    assert!(
        msg.contains("s3://raw/rxrx1/train/HUVEC-01/Plate2/B02_s1_w3.png"),
        "{msg}"
    );
    assert!(
        msg.contains("403")
            || msg.to_lowercase().contains("denied")
            || msg.to_lowercase().contains("forbidden"),
        "{msg}"
    );

    // Nothing the user sees carries the secret: summary, reject rows, errors, debug output.
    let all = cellshard_sql::query(&ctx, "SELECT * FROM rejects")
        .await
        .unwrap();
    let text = cellshard_sql::format(&all, cellshard_sql::OutputFormat::Json).unwrap();
    assert!(!text.contains(SECRET_KEY));
    assert!(!serde_json::to_string(&s).unwrap().contains(SECRET_KEY));
    let loc = cellshard_store::Location::parse("s3://raw/rxrx1", &opts).unwrap();
    assert!(!format!("{loc:?} {}", loc.store).contains(SECRET_KEY));
    let mut bad = opts.clone();
    bad.insert("secret_access_key".into(), format!("{SECRET_KEY}-wrong"));
    let err = cellshard_runtime::run::read_object("s3://raw/rxrx1/metadata.csv", &bad)
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(SECRET_KEY), "{shown}");
    bad.insert("no_such_option".into(), SECRET_KEY.into());
    let err = cellshard_store::Location::parse("s3://raw/x", &bad)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no_such_option") && !err.contains(SECRET_KEY),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_after_retries_fails_the_run_and_commits_nothing_of_that_plate() {
    let server = S3Server::start(&["raw", "lake"]).await;
    let mut opts = server.options();
    synth_to("s3://raw/rxrx1", &opts).await;
    // One object of plate 2 answers 503 to every GET, past a short retry policy.
    server
        .faults
        .unavailable
        .lock()
        .unwrap()
        .push("Plate2/B02_s1_w3.png".into());
    opts.insert("max_retries".into(), "2".into());
    opts.insert("retry_timeout".into(), "5".into());
    let tiny = pipeline("tiny.toml");
    let err = try_run(
        &tiny,
        "s3://raw/rxrx1",
        "s3://lake/store",
        &opts,
        WorkerShare::ALL,
    )
    .await
    .expect_err("an outage must fail the run, not become rejects");
    assert!(
        matches!(err, cellshard_runtime::Error::External(_)),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("s3://raw/rxrx1/train/HUVEC-01/Plate2/B02_s1_w3.png") && msg.contains("503"),
        "{msg}"
    );
    assert!(!msg.contains(SECRET_KEY));
    // Nothing of plate 2 is in any table; no reject was recorded for the outage.
    let ctx = cellshard_sql::open_session("s3://lake/store", &opts, cellshard_sql::AsOf::Latest)
        .await
        .unwrap();
    for table in ["sites", "plate_stats", "rejects"] {
        let rows = cellshard_sql::query(
            &ctx,
            &format!("SELECT count(*) FROM {table} WHERE experiment = 'HUVEC-01' AND plate = 2"),
        )
        .await
        .unwrap();
        let n = rows[0]
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap()
            .value(0);
        assert_eq!(n, 0, "{table} holds rows of the plate whose read failed");
    }
    // The failed run still has its row in `runs`, saying why it failed.
    let rows = cellshard_sql::query(&ctx, "SELECT run_id, summary FROM runs")
        .await
        .unwrap();
    let summaries = strings(&rows, 1);
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    let summary: serde_json::Value = serde_json::from_str(&summaries[0]).unwrap();
    let why = summary["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("Plate2/B02_s1_w3.png") && why.contains("503"),
        "{summary}"
    );
    assert!(!summaries[0].contains(SECRET_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plate_whose_every_object_is_refused_fails_the_run_and_keeps_its_build() {
    let server = S3Server::start(&["raw", "lake"]).await;
    let opts = server.options();
    synth_to("s3://raw/rxrx1", &opts).await;
    let first = run_with(
        &pipeline("tiny.toml"),
        "s3://raw/rxrx1",
        "s3://lake/store",
        &opts,
    )
    .await;
    assert_eq!(first.sites.stored, 12);
    let before = tensors("s3://lake/store", &opts).await;
    // A bucket policy that now refuses every object of plate 2 (403).
    server
        .faults
        .forbidden
        .lock()
        .unwrap()
        .push("HUVEC-01/Plate2/".into());
    let tiny = pipeline("tiny.toml");
    let err = try_run(
        &tiny,
        "s3://raw/rxrx1",
        "s3://lake/store",
        &opts,
        WorkerShare::ALL,
    )
    .await
    .expect_err("a plate with no readable object must not replace its build with rejects");
    let msg = err.to_string();
    assert!(
        matches!(err, cellshard_runtime::Error::PlateUnreadable { .. })
            && msg.contains("HUVEC-01/2")
            && msg.contains("Plate2/"),
        "{msg}"
    );
    assert_eq!(tensors("s3://lake/store", &opts).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_training_feed_reads_an_s3_store_through_faults_and_names_a_refused_file() {
    use cellshard_feed::{Feed, FeedOptions};
    use std::collections::BTreeSet;

    let (server, opts) = tiny_store_on_s3().await;
    let (ids, stored) = tensors("s3://lake/store", &opts).await;
    let stored: BTreeMap<String, Vec<u8>> = ids.into_iter().zip(stored).collect();

    // Every batch of an epoch, read ahead by ranged GETs while 1 request in 10 fails.
    server
        .faults
        .transient_per_mille
        .store(100, Ordering::Relaxed);
    let feed = Arc::new(
        Feed::open(FeedOptions {
            options: opts.clone(),
            global_batch: 5,
            threads: 2,
            ..FeedOptions::new("s3://lake/store")
        })
        .await
        .unwrap(),
    );
    let len = feed.tensor_bytes();
    let mut stream = feed.stream(1, (0..feed.steps(0)).map(|t| t * 5).collect());
    let mut seen = BTreeSet::new();
    while let Some(b) = stream.next().await {
        let b = b.unwrap();
        for (slot, site) in b.site_ids.iter().enumerate() {
            if let Some(site) = site {
                assert_eq!(&b.tensors[slot * len..(slot + 1) * len], &stored[site][..]);
                assert!(seen.insert(site.clone()), "{site} twice");
            }
        }
    }
    assert_eq!(seen.len(), 12);
    assert!(server.faults.injected.load(Ordering::Relaxed) > 0);

    // A data file the store refuses: a clear error naming it, when the feed opens.
    server
        .faults
        .transient_per_mille
        .store(0, Ordering::Relaxed);
    server
        .faults
        .forbidden
        .lock()
        .unwrap()
        .push(".zstd.parquet".into());
    let e = Feed::open(FeedOptions {
        options: opts.clone(),
        ..FeedOptions::new("s3://lake/store")
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("s3://lake/store/sites/") && e.contains(".zstd.parquet"),
        "{e}"
    );
}

/// GET `path` from the viewer at `addr`: (status, head, body).
async fn viewer_get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_lowercase(), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_answers_503_while_its_store_is_out_and_recovers() {
    let (server, opts) = tiny_store_on_s3().await;
    // No retries: the outage is final for each request.
    let mut no_retry = opts.clone();
    no_retry.insert("max_retries".into(), "0".into());
    let (ids, _) = tensors("s3://lake/store", &opts).await;
    let session =
        cellshard_sql::open_session("s3://lake/store", &no_retry, cellshard_sql::AsOf::Latest)
            .await
            .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let serve_opts = cellshard_view::serve::ServeOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        query_threads: 1,
        ..Default::default()
    };
    tokio::spawn(cellshard_view::serve::serve(
        session,
        serve_opts,
        move |a| {
            let _ = tx.send(a);
        },
    ));
    let addr = rx.await.unwrap();
    let query = "/sql?q=SELECT%20sum(length(site_id))%20AS%20n%20FROM%20sites";
    let (status, _, body) = viewer_get(addr, query).await;
    assert_eq!(status, 200, "{body}");
    let site = format!("/site/{}", ids[0]);
    assert_eq!(viewer_get(addr, &site).await.0, 200);

    // The data files answer 503 (an outage that outlasts the retries): 503, with
    // Retry-After, and the page says the store failed.
    server
        .faults
        .unavailable
        .lock()
        .unwrap()
        .push(".parquet".into());
    let (status, head, body) = viewer_get(addr, query).await;
    assert_eq!(status, 503, "{body}");
    assert!(head.contains("retry-after: "), "{head}");
    assert!(
        body.contains("s3://lake/store") || body.contains(".parquet"),
        "{body}"
    );
    assert_eq!(viewer_get(addr, &site).await.0, 503);
    // Once the store is back, the query answers again; an unknown site is 404.
    server.faults.unavailable.lock().unwrap().clear();
    assert_eq!(viewer_get(addr, query).await.0, 200);
    assert_eq!(viewer_get(addr, "/site/HUVEC-01_1_Z99_1").await.0, 404);
}
