//! `cellshard-bench s3`: ingest throughput from local disk against S3 over loopback (the
//! tests' S3-protocol server, s3s over a local directory) on the same raw sites.

use std::collections::BTreeMap;

use anyhow::Result;
use cellshard_core::Pipeline;
use cellshard_runtime::{RunOptions, RunSummary};
use cellshard_store::Location;
use cellshard_tests::s3::S3Server;

/// The shipped RxRx1 pipeline, compiled in.
const RXRX1_PIPELINE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../pipelines/rxrx1.toml"
));

/// Options of `cellshard-bench s3`.
#[derive(clap::Args)]
pub struct S3Args {
    /// Wells of HUVEC-01 plate 1 (two raw 2048x2048 16-bit sites each).
    #[arg(long, default_value_t = 8)]
    pub wells: u32,
}

async fn ingest(raw: &str, store: &str, options: &BTreeMap<String, String>) -> Result<RunSummary> {
    let mut p = Pipeline::from_toml("pipelines/rxrx1.toml", RXRX1_PIPELINE)?;
    p.source.options = options.clone();
    p.sink.options = options.clone();
    Ok(cellshard_runtime::run(RunOptions {
        source: Some(raw.to_string()),
        metadata: vec![format!("{raw}/metadata.csv")],
        sink: Some(store.to_string()),
        ..RunOptions::new(p)
    })
    .await?)
}

/// Write the same raw sites to disk and to the S3 server, ingest each, print both rates.
pub async fn s3(a: S3Args) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = cellshard_synth::SynthConfig {
        experiments: Some(vec!["HUVEC-01".into()]),
        plates: 1,
        wells: Some(a.wells),
        sites: 2,
        size: 2048,
        bit_depth: 16,
        seed: 3,
        ..Default::default()
    };
    let design = cellshard_synth::rxrx1_design()?;
    let raw = dir.path().join("raw").display().to_string();
    let local = Location::parse(&raw, &BTreeMap::new())?;
    local.create_local_dir()?;
    eprintln!("s3: synthesizing {} wells to disk and to S3", a.wells);
    cellshard_synth::write_dataset(local.store.clone(), &local.prefix, &design, &cfg, None).await?;
    let server = S3Server::start(&["raw", "lake"]).await;
    let opts = server.options();
    let remote = Location::parse("s3://raw/bench", &opts)?;
    cellshard_synth::write_dataset(remote.store.clone(), &remote.prefix, &design, &cfg, None)
        .await?;
    let store = dir.path().join("store").display().to_string();
    let l = ingest(&raw, &store, &BTreeMap::new()).await?;
    let s = ingest("s3://raw/bench", "s3://lake/store", &opts).await?;
    println!(
        "local: {} sites in {:.2} s = {:.2} sites/s\nS3 over loopback: {} sites in {:.2} s = {:.2} sites/s ({} requests)",
        l.sites.stored,
        l.seconds.total,
        l.sites_per_second,
        s.sites.stored,
        s.seconds.total,
        s.sites_per_second,
        s.requests
    );
    Ok(())
}
