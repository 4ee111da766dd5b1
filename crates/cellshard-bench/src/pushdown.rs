//! `cellshard-bench pushdown`: what projection pushdown and the store layout save. One full
//! plate of release-form sites (616 sites of 6 x 512 x 512 uint8) is synthesized and
//! ingested; then the data bytes each query fetches (counted by the store's read counter,
//! Delta log excluded) are compared with a full scan.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use cellshard_core::Pipeline;
use cellshard_runtime::RunOptions;
use cellshard_sql::{AsOf, Session};
use cellshard_store::Location;

/// The release-form pipeline, compiled in.
const RELEASE_PIPELINE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../pipelines/rxrx1-release.toml"
));

/// Options of `cellshard-bench pushdown`.
#[derive(clap::Args)]
pub struct PushdownArgs {
    /// Working directory for the raw plate and the store (default: a temporary one).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Cap on wells (default: every well of the plate, 308).
    #[arg(long)]
    pub wells: Option<u32>,
}

/// Data bytes one query fetched.
async fn fetched(s: &Session, q: &str) -> Result<u64> {
    s.root.reads.reset();
    cellshard_sql::query(s, q).await?;
    Ok(s.root.reads.snapshot().data_bytes)
}

/// Ingest the plate, run the queries, print the bytes each fetched.
pub async fn pushdown(a: PushdownArgs) -> Result<()> {
    let tmp;
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => {
            tmp = std::env::temp_dir().join(format!("cellshard-pushdown-{}", std::process::id()));
            tmp.clone()
        }
    };
    let raw = dir.join("raw").display().to_string();
    let store = dir.join("store").display().to_string();
    let cfg = cellshard_synth::SynthConfig {
        experiments: Some(vec!["HUVEC-01".into()]),
        plates: 1,
        wells: a.wells,
        sites: 2,
        size: 512,
        bit_depth: 8,
        seed: 1,
        ..Default::default()
    };
    let out = Location::parse(&raw, &BTreeMap::new())?;
    out.create_local_dir()?;
    let design = cellshard_synth::rxrx1_design()?;
    eprintln!("pushdown: synthesizing one plate into {raw}");
    cellshard_synth::write_dataset(out.store.clone(), &out.prefix, &design, &cfg, None).await?;
    let pipeline = Pipeline::from_toml("pipelines/rxrx1-release.toml", RELEASE_PIPELINE)?;
    let summary = cellshard_runtime::run(RunOptions {
        source: Some(raw.clone()),
        metadata: vec![format!("{raw}/metadata.csv")],
        sink: Some(store.clone()),
        ..RunOptions::new(pipeline)
    })
    .await?;
    let table = cellshard_store::table::open_table(
        &Location::parse(&store, &BTreeMap::new())?.child("sites"),
        None,
    )
    .await?
    .context("the run wrote no sites table")?;
    let mut files = 0;
    let mut total = 0u64;
    for uri in table.get_file_uris()? {
        let path = uri.strip_prefix("file://").unwrap_or(&uri);
        total += std::fs::metadata(path)
            .with_context(|| format!("cannot stat {path}"))?
            .len();
        files += 1;
    }
    let session = cellshard_sql::open_session(&store, &BTreeMap::new(), AsOf::Latest).await?;
    session.root.reads.record_paths(false);
    let meta = fetched(&session, "SELECT cell_type, count(*) FROM sites GROUP BY 1").await?;
    let cols = fetched(
        &session,
        "SELECT well_type, count(*), avg(channel_mean[1]), max(source_paths[1]) FROM sites GROUP BY 1",
    )
    .await?;
    let full = fetched(&session, "SELECT * FROM sites").await?;
    ensure!(full > 0, "the full scan fetched no bytes");
    println!(
        "pushdown on {} sites ({files} files, {total} bytes):\n  SELECT cell_type, count(*) ... GROUP BY 1: {meta} bytes\n  a metadata-column aggregate: {cols} bytes\n  SELECT *: {full} bytes ({:.0}x the metadata-column query)",
        summary.sites.stored,
        full as f64 / cols.max(1) as f64
    );
    if a.dir.is_none() {
        std::fs::remove_dir_all(&dir).ok();
    }
    Ok(())
}
