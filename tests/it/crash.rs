//! Crash safety: `run` is killed with SIGKILL at a dozen points of a two-plate run (after
//! listing, in phase 1 and phase 2 of each plate, before, between and after the publish
//! commits), on local disk and on the S3 test server, and on local disk also at fixed
//! delays from its start (landing inside listing, uploads or commits). After each kill a reader sees whole
//! plate builds only; a rerun with `--incremental` makes the store equal a clean run's.
//!
//! The run that is killed is a real process: this test binary again, running only
//! [`child_run`] with the run described in the environment.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::*;
use cellshard_tests::s3::S3Server;

/// Where to kill: the pause point and its occurrence (plate order).
const POINTS: [&str; 12] = [
    "after-listing#1",
    "in-phase1#1",
    "in-phase1#2",
    "in-phase2#1",
    "in-phase2#2",
    "before-publish#1",
    "after-stats#1",
    "after-rejects#1",
    "after-sites#1",
    "before-publish#2",
    "after-stats#2",
    "after-sites#2",
];

/// The tiny pipeline (`a`) or the same with other percentiles (`b`): every tensor differs.
fn variant(name: &str) -> Pipeline {
    let text = std::fs::read_to_string(repo().join("pipelines/tiny.toml")).unwrap();
    let text = match name {
        "a" => text,
        _ => text.replace("kind = \"normalize\"", "kind = \"normalize\"\nlow = 5.0"),
    };
    let mut p = Pipeline::from_toml(name, &text).unwrap();
    p.name = format!("tiny-{name}");
    p
}

pub(crate) fn run_options(spec: &serde_json::Value) -> RunOptions {
    let s = |k: &str| spec[k].as_str().unwrap().to_string();
    let options: BTreeMap<String, String> =
        serde_json::from_value(spec["options"].clone()).unwrap_or_default();
    let mut p = variant(&s("pipeline"));
    p.source.options = options.clone();
    p.sink.options = options;
    RunOptions {
        source: Some(s("source")),
        metadata: vec![format!("{}/metadata.csv", s("source"))],
        sink: Some(s("sink")),
        threads: 2,
        incremental: spec["incremental"].as_bool().unwrap_or(false),
        scratch: spec["scratch"].as_str().map(Into::into),
        selection: cellshard_runtime::discover::PlateSelection {
            index: spec["plate_index"]
                .as_u64()
                .map(|i| usize::try_from(i).unwrap()),
            ..Default::default()
        },
        ..RunOptions::new(p)
    }
}

/// The process that gets killed; does nothing unless the parent describes a run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by crash tests in a child process"]
async fn child_run() {
    let Ok(spec) = std::env::var("CELLSHARD_CHILD_RUN") else {
        return;
    };
    let spec: serde_json::Value = serde_json::from_str(&spec).unwrap();
    cellshard_runtime::run(run_options(&spec)).await.unwrap();
}

/// A child process running `spec`, paused at `point` if given.
pub(crate) fn spawn(spec: &serde_json::Value, point: Option<&str>) -> std::process::Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["crash::child_run", "--exact", "--ignored", "--nocapture"])
        .env("CELLSHARD_CHILD_RUN", spec.to_string())
        .env_remove("CELLSHARD_PAUSE_AT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(p) = point {
        cmd.env("CELLSHARD_PAUSE_AT", p);
    }
    cmd.spawn().unwrap()
}

/// Run `spec` in a child process paused at `point`, and SIGKILL it there.
fn kill_at(point: &str, spec: &serde_json::Value) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["crash::child_run", "--exact", "--ignored", "--nocapture"])
        .env("CELLSHARD_CHILD_RUN", spec.to_string());
    let line = cellshard_tests::kill::kill_when_paused(cmd, point);
    assert_eq!(line, format!("cellshard: paused at {point}"));
}

/// A store's content: per plate, its pipeline and site tensors; and the statistics.
#[derive(Debug, PartialEq)]
pub(crate) struct Content {
    pub(crate) plates: BTreeMap<String, (String, BTreeMap<String, Vec<u8>>)>,
    stats: Vec<String>,
}

pub(crate) async fn content(store: &str, options: &BTreeMap<String, String>) -> Content {
    let ctx = cellshard_sql::open_session(store, options, cellshard_sql::AsOf::Latest)
        .await
        .unwrap();
    let q = |sql: &'static str| {
        let ctx = &ctx;
        async move { cellshard_sql::query(ctx, sql).await.unwrap() }
    };
    // Whole builds: one build per plate, each with its own statistics and nothing else's.
    let torn = q(
        "SELECT count(*) FROM (SELECT experiment, plate FROM sites GROUP BY 1, 2 \
                  HAVING count(DISTINCT build_id) > 1)",
    )
    .await;
    assert_eq!(strings(&torn, 0), ["0"], "a plate mixes builds");
    let crossed = q(
        "SELECT count(*) FROM sites s JOIN plate_stats p ON s.build_id = p.build_id \
                     WHERE s.pipeline_hash <> p.pipeline_hash OR s.plate <> p.plate",
    )
    .await;
    assert_eq!(
        strings(&crossed, 0),
        ["0"],
        "tensors beside another build's statistics"
    );
    let unpaired = q(
        "SELECT count(*) FROM sites s LEFT JOIN (SELECT DISTINCT build_id FROM plate_stats) p \
                      ON s.build_id = p.build_id WHERE p.build_id IS NULL",
    )
    .await;
    assert_eq!(
        strings(&unpaired, 0),
        ["0"],
        "tensors without their statistics"
    );
    let rows = q(
        "SELECT concat(experiment, '/', CAST(plate AS VARCHAR)), pipeline, site_id, tensor \
                  FROM sites ORDER BY site_id",
    )
    .await;
    let mut plates: BTreeMap<String, (String, BTreeMap<String, Vec<u8>>)> = BTreeMap::new();
    let (plate, pipe, site) = (strings(&rows, 0), strings(&rows, 1), strings(&rows, 2));
    for (i, tensor) in binaries(&rows, 3).into_iter().enumerate() {
        let e = plates
            .entry(plate[i].clone())
            .or_insert_with(|| (pipe[i].clone(), BTreeMap::new()));
        assert_eq!(e.0, pipe[i], "plate {} mixes pipelines", plate[i]);
        e.1.insert(site[i].clone(), tensor);
    }
    let stats = q(
        "SELECT concat(experiment, '/', CAST(plate AS VARCHAR), ' w', CAST(channel AS VARCHAR), \
                   ' ', CAST(low_value AS VARCHAR), '..', CAST(high_value AS VARCHAR)) AS s \
                   FROM site_normalization GROUP BY 1 ORDER BY 1",
    )
    .await;
    Content {
        plates,
        stats: strings(&stats, 0),
    }
}

/// Kill a run at every point, alternating the pipeline, against `raw` and `store`.
async fn kill_loop(
    raw: &str,
    store: &str,
    options: &BTreeMap<String, String>,
    refs: &[Content; 2],
) {
    let scratch = tempfile::tempdir().unwrap();
    let spec = |pipeline: &str, incremental: bool| {
        serde_json::json!({
            "source": raw, "sink": store, "pipeline": pipeline,
            "options": options, "incremental": incremental,
            "scratch": scratch.path().display().to_string(),
        })
    };
    // The store starts with pipeline a's builds.
    cellshard_runtime::run(run_options(&spec("a", false)))
        .await
        .unwrap();
    for (i, point) in POINTS.iter().enumerate() {
        let (pipeline, reference) = if i % 2 == 0 {
            ("b", &refs[1])
        } else {
            ("a", &refs[0])
        };
        kill_at(point, &spec(pipeline, false));
        // The killed run's spill files went with it.
        let left = std::fs::read_dir(scratch.path()).unwrap().count();
        assert_eq!(
            left, 0,
            "{point}: the killed run left files in its scratch directory"
        );
        // Every plate the reader sees is one whole build, of either pipeline.
        let seen = content(store, options).await;
        for (plate, (pipe, tensors)) in &seen.plates {
            let r = &refs[usize::from(pipe == "tiny-b")];
            assert_eq!(
                Some(tensors),
                r.plates.get(plate).map(|p| &p.1),
                "{point}: {plate}"
            );
        }
        let done = cellshard_runtime::run(run_options(&spec(pipeline, true)))
            .await
            .unwrap();
        assert_eq!(
            done.plates_built + done.plates_unchanged,
            2,
            "{point}: {done:?}"
        );
        assert_eq!(
            &content(store, options).await,
            reference,
            "{point}: after the rerun"
        );
    }
}

/// Kill runs at fixed delays from their start instead of at named points, so kills also land
/// inside listing, uploads and commits; then the same checks as [`kill_loop`].
async fn timed_kills(raw: &str, store: &str, refs: &[Content; 2]) {
    let spec = |pipeline: &str, incremental: bool| {
        serde_json::json!({
            "source": raw, "sink": store, "pipeline": pipeline, "incremental": incremental,
        })
    };
    for (i, ms) in [30u64, 120, 250, 400, 600, 900].iter().enumerate() {
        let pipeline = if i % 2 == 0 { "a" } else { "b" };
        let mut child = spawn(&spec(pipeline, false), None);
        std::thread::sleep(Duration::from_millis(*ms));
        let _ = child.kill();
        child.wait().unwrap();
        let seen = content(store, &BTreeMap::new()).await;
        for (plate, (pipe, tensors)) in &seen.plates {
            let r = &refs[usize::from(pipe == "tiny-b")];
            assert_eq!(
                Some(tensors),
                r.plates.get(plate).map(|p| &p.1),
                "{ms} ms: {plate}"
            );
        }
        cellshard_runtime::run(run_options(&spec(pipeline, true)))
            .await
            .unwrap();
        let reference = &refs[usize::from(pipeline == "b")];
        assert_eq!(
            &content(store, &BTreeMap::new()).await,
            reference,
            "{ms} ms"
        );
    }
}

pub(crate) async fn references(raw: &str, dir: &std::path::Path) -> [Content; 2] {
    let mut out = Vec::new();
    for name in ["a", "b"] {
        let store = dir.join(format!("ref-{name}")).display().to_string();
        let spec = serde_json::json!({"source": raw, "sink": store, "pipeline": name});
        cellshard_runtime::run(run_options(&spec)).await.unwrap();
        out.push(content(&store, &BTreeMap::new()).await);
    }
    assert_ne!(out[0].plates, out[1].plates);
    [out.remove(0), out.remove(0)]
}

pub(crate) async fn synth(url: &str, options: &BTreeMap<String, String>) {
    let loc = cellshard_store::Location::parse(url, options).unwrap();
    cellshard_synth::write_dataset(
        loc.store.clone(),
        &loc.prefix,
        &design(),
        &tiny_synth(3),
        None,
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_runs_on_local_disk_leave_whole_builds_and_reruns_repair_them() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw").display().to_string();
    synth(&raw, &BTreeMap::new()).await;
    let refs = references(&raw, dir.path()).await;
    let store = dir.path().join("store").display().to_string();
    kill_loop(&raw, &store, &BTreeMap::new(), &refs).await;
    timed_kills(&raw, &store, &refs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_runs_on_s3_leave_whole_builds_and_reruns_repair_them() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw").display().to_string();
    synth(&raw, &BTreeMap::new()).await;
    let refs = references(&raw, dir.path()).await;
    let server = S3Server::start(&["raw", "lake"]).await;
    let options = server.options();
    synth("s3://raw/rxrx1", &options).await;
    kill_loop("s3://raw/rxrx1", "s3://lake/store", &options, &refs).await;
}

/// The Kubernetes Job rehearsed: four worker processes, one per plate index as
/// `JOB_COMPLETION_INDEX` gives them, at once against the S3 server; one is killed mid-plate
/// and its index rerun. The store equals a single process's run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_indexed_job_rehearsal_with_a_killed_worker_equals_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let four_plates = cellshard_synth::SynthConfig {
        experiments: Some(vec!["HUVEC-01".into(), "RPE-01".into()]),
        ..tiny_synth(9)
    };
    let raw = dir.path().join("raw").display().to_string();
    let server = S3Server::start(&["raw", "lake"]).await;
    let options = server.options();
    for (url, opts) in [
        (raw.as_str(), BTreeMap::new()),
        ("s3://raw/rxrx1", options.clone()),
    ] {
        let loc = cellshard_store::Location::parse(url, &opts).unwrap();
        let r = cellshard_synth::write_dataset(
            loc.store.clone(),
            &loc.prefix,
            &design(),
            &four_plates,
            None,
        )
        .await
        .unwrap();
        assert_eq!(r.sites, 24);
    }
    let reference = dir.path().join("ref").display().to_string();
    let spec = serde_json::json!({"source": raw, "sink": reference, "pipeline": "a"});
    cellshard_runtime::run(run_options(&spec)).await.unwrap();
    let reference = content(&reference, &BTreeMap::new()).await;
    assert_eq!(reference.plates.len(), 4);

    let worker = |index: u64| {
        serde_json::json!({
            "source": "s3://raw/rxrx1", "sink": "s3://lake/store", "pipeline": "a",
            "options": options, "incremental": true, "plate_index": index,
        })
    };
    let mut workers: Vec<_> = [0, 1, 3].iter().map(|&i| spawn(&worker(i), None)).collect();
    kill_at("in-phase2#1", &worker(2));
    for w in &mut workers {
        assert!(w.wait().unwrap().success());
    }
    let partial = content("s3://lake/store", &options).await;
    assert_eq!(
        partial.plates.len(),
        3,
        "index 2 was killed before it published"
    );
    // The Job retries the failed index.
    let mut retry = spawn(&worker(2), None);
    assert!(retry.wait().unwrap().success());
    assert_eq!(content("s3://lake/store", &options).await, reference);
}
