//! `cellshard vacuum`, `history` and `restore`: keeping a store.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use cellshard_store::Location;
use cellshard_store::maintain;

use crate::sql::parse_kv;

/// The store a maintenance command works on.
#[derive(clap::Args)]
pub(crate) struct StoreArgs {
    /// Store root URL or path.
    #[arg(long)]
    store: String,
    /// Object store option for the store, KEY=VALUE (repeatable).
    #[arg(long = "store-option", value_parser = parse_kv)]
    store_options: Vec<(String, String)>,
}

impl StoreArgs {
    fn root(&self) -> Result<Location> {
        let options: BTreeMap<String, String> = self.store_options.iter().cloned().collect();
        let root = Location::parse(&self.store, &options)?;
        root.require_local_dir()?;
        Ok(root)
    }
}

/// `cellshard validate`.
#[derive(clap::Args)]
pub(crate) struct ValidateArgs {
    /// Pipeline TOML file.
    pipeline: Option<std::path::PathBuf>,
    /// A store to check: each published plate's live build must have its statistics
    /// (exit 1 naming the plates that do not; `run --incremental` rebuilds them).
    #[arg(long)]
    store: Option<String>,
    /// Object store option for the store, KEY=VALUE (repeatable).
    #[arg(long = "store-option", value_parser = parse_kv)]
    store_options: Vec<(String, String)>,
}

/// `cellshard validate`: the pipeline, the store, or both.
pub(crate) async fn validate(a: ValidateArgs) -> Result<()> {
    if a.pipeline.is_none() && a.store.is_none() {
        return Err(crate::exit::invalid(
            "validate: give a pipeline file, --store URL, or both",
        ));
    }
    if let Some(p) = &a.pipeline {
        validate_pipeline(p)?;
    }
    let Some(store) = a.store else {
        return Ok(());
    };
    let root = StoreArgs {
        store,
        store_options: a.store_options,
    }
    .root()?;
    let check = maintain::check_store(&root).await?;
    if check.incomplete.is_empty() {
        println!(
            "ok: store {}: {} plate(s), each live build with its statistics",
            root.url, check.plates
        );
        return Ok(());
    }
    let names: Vec<String> = check
        .incomplete
        .iter()
        .map(|p| {
            format!(
                "{} plate {} (build {})",
                p.experiment,
                p.plate,
                p.builds.join(", ")
            )
        })
        .collect();
    anyhow::bail!(
        "store {}: {} of {} plate(s) have tensors without their statistics: {}; \
         `cellshard run --incremental` rebuilds them",
        root.url,
        check.incomplete.len(),
        check.plates,
        names.join("; ")
    )
}

/// `cellshard vacuum`.
#[derive(clap::Args)]
pub(crate) struct VacuumArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Keep files that versions of this age or younger need (e.g. 7d, 12h, 30m, 0s).
    #[arg(long, default_value = "7d", value_parser = parse_duration)]
    retention: Duration,
    /// Also remove files no commit added (uploads of killed runs) older than the retention.
    #[arg(long)]
    full: bool,
    /// Count what would be removed; remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Vacuum with a retention under the table's `delta.deletedFileRetentionDuration`
    /// (7 days by default), removing files that readers at older versions may need.
    #[arg(long)]
    force: bool,
}

/// `cellshard history`.
#[derive(clap::Args)]
pub(crate) struct HistoryArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Table: sites, plate_stats, rejects or runs.
    #[arg(long, default_value = "sites")]
    table: String,
    /// Newest commits only.
    #[arg(long)]
    limit: Option<usize>,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

/// `cellshard restore`.
#[derive(clap::Args)]
pub(crate) struct RestoreArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The `sites` version to go back to (see `cellshard history`).
    #[arg(long)]
    version: i64,
}

/// A duration as a number and a unit: s, m, h or d.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and a unit, e.g. 7d"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d")),
    };
    Ok(Duration::from_secs(n * secs))
}

pub(crate) async fn vacuum(a: VacuumArgs) -> Result<()> {
    let root = a.store.root()?;
    let reports = maintain::vacuum(&root, a.retention, a.full, a.dry_run, a.force).await?;
    let verb = if a.dry_run { "would remove" } else { "removed" };
    for r in &reports {
        println!(
            "{:<12} {verb} {} files, {} bytes",
            r.table, r.files, r.bytes
        );
    }
    let (files, bytes) = reports
        .iter()
        .fold((0, 0), |(f, b), r| (f + r.files, b + r.bytes));
    println!("total        {verb} {files} files, {bytes} bytes");
    Ok(())
}

pub(crate) async fn history(a: HistoryArgs) -> Result<()> {
    let root = a.store.root()?;
    let rows = maintain::history(&root, &a.table, a.limit).await?;
    for r in rows {
        if a.json {
            println!("{}", serde_json::to_string(&r)?);
            continue;
        }
        let time = r
            .timestamp
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        println!(
            "{:>6}  {time}  {:<14} {}  {}",
            r.version,
            r.operation,
            r.predicate.unwrap_or_default(),
            r.run_id.unwrap_or_default()
        );
    }
    Ok(())
}

pub(crate) async fn restore(a: RestoreArgs) -> Result<()> {
    let root = a.store.root()?;
    let report = maintain::restore(&root, a.version).await?;
    for (table, version, removed, restored) in report.tables {
        println!("{table:<12} now version {version}: {removed} files removed, {restored} restored");
    }
    Ok(())
}

/// Check a pipeline file and print what it does.
pub(crate) fn validate_pipeline(path: &std::path::PathBuf) -> Result<()> {
    let p = crate::load_pipeline(path)?;
    let t = p.transform();
    let (h, w) = t.output_shape();
    let mut steps = vec![format!(
        "decode {}-bit{}",
        t.bit_depth,
        match (t.width, t.height) {
            (Some(w), Some(h)) => format!(" {w}x{h}"),
            _ => String::new(),
        }
    )];
    if let Some(i) = t.illumination {
        steps.push(match p.illumination_files() {
            Some(f) => format!("illumination from {f}"),
            None => format!(
                "illumination computed (block {}, median {}, robust minimum p{})",
                i.block, i.filter_fraction, i.robust_min_percentile
            ),
        });
    }
    if t.factor > 1 {
        steps.push(format!("downsample {}x", t.factor));
    }
    if let Some(c) = t.crop {
        steps.push(format!("center_crop {c}"));
    }
    steps.push(format!(
        "normalize {} ({}) -> {}",
        match t.method {
            cellshard_core::NormalizeMethod::Percentile =>
                format!("percentile {}/{}", t.low, t.high),
            cellshard_core::NormalizeMethod::Zscore => "zscore".into(),
        },
        t.reference.as_str(),
        t.output.numpy_name()
    ));
    println!(
        "ok: pipeline {:?} (hash {}): {}; tensor {}x{}x{} {}; channels {}; layout {}",
        p.name,
        p.hash(),
        steps.join(" -> "),
        p.source.channels.count(),
        h,
        w,
        t.output.numpy_name(),
        p.source.channels.names().join(","),
        p.source.layout
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert!(parse_duration("7").unwrap_err().contains("unit"));
        assert!(parse_duration("d").is_err());
    }
}
