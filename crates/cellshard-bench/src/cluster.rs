//! `cellshard-bench cluster`: SQL on a Ballista cluster against the local session, and the
//! store's table provider against delta-rs' on the same files. A scheduler and executors
//! run in this process over real gRPC, so on one machine the figures are ratios, not
//! cluster throughput.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use arrow::util::pretty::pretty_format_batches;
use cellshard_cluster::{DEFAULT_CONNECT_TIMEOUT, LocalCluster};
use cellshard_core::Pipeline;
use cellshard_runtime::RunOptions;
use cellshard_sql::{AsOf, Session};
use cellshard_store::Location;

/// The small test pipeline, compiled in.
const TINY_PIPELINE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../pipelines/tiny.toml"
));

/// Options of `cellshard-bench cluster`.
#[derive(clap::Args)]
pub struct ClusterArgs {
    /// Working directory for the raw plates and the store (default: a temporary one).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Full plates of HUVEC-01 to ingest (616 sites each) at 6 x 64 x 64.
    #[arg(long, default_value_t = 4)]
    pub plates: u32,
}

/// Best of `n` wall times of `q` (all rows collected), in milliseconds.
async fn best_ms(s: &Session, q: &str, n: usize) -> Result<f64> {
    let mut best = f64::MAX;
    for _ in 0..n {
        let t = Instant::now();
        cellshard_sql::query(s, q).await?;
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(best)
}

/// The values of `q`'s result, cell by cell as text, whatever its batch boundaries and
/// column widths; the header (which names the table) is left out.
async fn result(s: &Session, q: &str) -> Result<Vec<String>> {
    let batches = cellshard_sql::query(s, q).await?;
    let text = pretty_format_batches(&batches)?.to_string();
    Ok(text
        .lines()
        .skip(3)
        .flat_map(|l| {
            l.split('|')
                .map(|c| c.trim().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|c| !c.is_empty() && !c.starts_with('+'))
        .collect())
}

/// Two results are the same, floating-point sums up to their summation order.
fn same(a: &[String], b: &[String]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x == y
                || matches!((x.parse::<f64>(), y.parse::<f64>()),
                    (Ok(x), Ok(y)) if (x - y).abs() <= 1e-9 * x.abs().max(y.abs()))
        })
}

/// Ingest, then time the queries on each provider and on the cluster.
pub async fn cluster(a: ClusterArgs) -> Result<()> {
    let dir = a.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("cellshard-cluster-{}", std::process::id()))
    });
    let raw = dir.join("raw").display().to_string();
    let store = dir.join("store").display().to_string();
    let cfg = cellshard_synth::SynthConfig {
        experiments: Some(vec!["HUVEC-01".into()]),
        plates: a.plates,
        wells: None,
        sites: 2,
        size: 256,
        bit_depth: 16,
        seed: 5,
        ..Default::default()
    };
    let out = Location::parse(&raw, &BTreeMap::new())?;
    out.create_local_dir()?;
    eprintln!("cluster: synthesizing {} plate(s) into {raw}", a.plates);
    let design = cellshard_synth::rxrx1_design()?;
    cellshard_synth::write_dataset(out.store.clone(), &out.prefix, &design, &cfg, None).await?;
    let summary = cellshard_runtime::run(RunOptions {
        source: Some(raw.clone()),
        metadata: vec![format!("{raw}/metadata.csv")],
        sink: Some(store.clone()),
        ..RunOptions::new(Pipeline::from_toml("pipelines/tiny.toml", TINY_PIPELINE)?)
    })
    .await?;
    println!("store: {} sites", summary.sites.stored);

    let heavy = "SELECT plate, avg(tensor_percentile(tensor, 1, 99)), avg(tensor_std(tensor, 3)) FROM T GROUP BY plate ORDER BY plate";
    let meta =
        "SELECT experiment, plate, well_type, count(*) FROM T GROUP BY 1, 2, 3 ORDER BY 1, 2, 3";
    let point =
        "SELECT site_id, channel_mean FROM T WHERE plate = 3 AND well = 'B02' ORDER BY site_id";

    // Both providers over the same files in one session.
    let local = cellshard_sql::open_session(&store, &BTreeMap::new(), AsOf::Latest).await?;
    let tables =
        cellshard_store::table::open_at(&local.root, cellshard_store::table::TablesAsOf::Latest)
            .await?;
    let delta = tables
        .get("sites")
        .context("the store has no sites table")?;
    delta.update_datafusion_session(&local.ctx.state())?;
    local
        .ctx
        .register_table("sites_delta", delta.table_provider().await?)?;
    for (name, q) in [
        ("tensor stats", heavy),
        ("metadata group-by", meta),
        ("point lookup", point),
    ] {
        let ours = q.replace(" T ", " sites ");
        let theirs = q.replace(" T ", " sites_delta ");
        ensure!(
            same(
                &result(&local, &ours).await?,
                &result(&local, &theirs).await?
            ),
            "{name}: the two providers disagree"
        );
        let (o, t) = (
            best_ms(&local, &ours, 5).await?,
            best_ms(&local, &theirs, 5).await?,
        );
        println!("provider, {name}: StoreTable {o:.1} ms, delta-rs {t:.1} ms");
    }

    // The cluster: overhead on a small query, then the tensor query on 1 and 2 executors.
    let heavy = heavy.replace(" T ", " sites ");
    let small = "SELECT count(*) FROM sites WHERE plate = 2";
    println!(
        "local: small {:.1} ms, tensor stats {:.1} ms",
        best_ms(&local, small, 10).await?,
        best_ms(&local, &heavy, 3).await?
    );
    for (executors, slots) in [(1, 1), (1, 2), (2, 1)] {
        let cluster = LocalCluster::start(executors, slots).await?;
        let remote = cellshard_cluster::connect(
            &cluster.url,
            DEFAULT_CONNECT_TIMEOUT,
            &store,
            &BTreeMap::new(),
            AsOf::Latest,
        )
        .await?;
        // Warm: executors registered, footers cached.
        cellshard_sql::query(&remote, small).await?;
        let small_ms = best_ms(&remote, small, 10).await?;
        let heavy_ms = best_ms(&remote, &heavy, 3).await?;
        ensure!(
            same(
                &result(&remote, &heavy).await?,
                &result(&local, &heavy).await?
            ),
            "the cluster's result differs from the local one"
        );
        println!(
            "cluster, {executors} executor(s) x {slots} task(s): small {small_ms:.1} ms, tensor stats {heavy_ms:.1} ms"
        );
    }
    if a.dir.is_none() {
        std::fs::remove_dir_all(&dir).ok();
    }
    Ok(())
}
