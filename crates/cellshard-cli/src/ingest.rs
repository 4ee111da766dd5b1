//! `cellshard run` and `cellshard plan`: ingest, and what an ingest would build.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use cellshard_runtime::discover::{PlateSelection, WorkerShare};
use cellshard_runtime::{PlanAction, RunOptions, RunSummary};

use crate::exit::{self, with_code};
use crate::load_pipeline;

/// Which plates a run or plan takes.
#[derive(clap::Args)]
pub(crate) struct PlateArgs {
    /// This worker's share of the selected plates, as I/N (0-based).
    #[arg(long, default_value = "0/1", value_parser = parse_worker)]
    worker: WorkerShare,
    /// Only these plates, as EXPERIMENT/PLATE (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    plates: Vec<String>,
    /// Only the plates of these experiments (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    experiments: Vec<String>,
    /// Only the plate at this 0-based position of the selected plates, in `plan` order
    /// (for Kubernetes Indexed Jobs: `--plate-index $(JOB_COMPLETION_INDEX)`).
    #[arg(long)]
    plate_index: Option<usize>,
    /// Skip plates whose committed fingerprint (source objects, metadata, pipeline) is
    /// unchanged.
    #[arg(long)]
    incremental: bool,
}

impl PlateArgs {
    fn selection(&self) -> anyhow::Result<PlateSelection> {
        let mut s =
            PlateSelection::parse(&self.plates, &self.experiments).map_err(exit::invalid)?;
        s.index = self.plate_index;
        Ok(s)
    }
}

/// The pipeline and its location overrides.
#[derive(clap::Args)]
pub(crate) struct PipelineArgs {
    /// Pipeline TOML file.
    pipeline: PathBuf,
    /// Override the pipeline's source URL.
    #[arg(long)]
    source: Option<String>,
    /// Override the pipeline's metadata URLs (repeatable).
    #[arg(long)]
    metadata: Vec<String>,
    /// Override the pipeline's sink (store root) URL.
    #[arg(long)]
    sink: Option<String>,
    /// Object store option for the source and metadata, KEY=VALUE (repeatable; added to
    /// the pipeline's `[source.options]`, e.g. endpoint, region).
    #[arg(long = "source-option", value_parser = crate::sql::parse_kv)]
    source_options: Vec<(String, String)>,
    /// Object store option for the sink, KEY=VALUE (repeatable; added to the pipeline's
    /// `[sink.options]`).
    #[arg(long = "sink-option", value_parser = crate::sql::parse_kv)]
    sink_options: Vec<(String, String)>,
}

impl PipelineArgs {
    /// Run options for this pipeline and these plates (usage errors exit 2).
    fn options(self, plates: &PlateArgs) -> Result<RunOptions, (u8, anyhow::Error)> {
        let mut pipeline = load_pipeline(&self.pipeline).map_err(with_code)?;
        pipeline.source.options.extend(self.source_options);
        pipeline.sink.options.extend(self.sink_options);
        let selection = plates.selection().map_err(with_code)?;
        Ok(RunOptions {
            source: self.source,
            metadata: self.metadata,
            sink: self.sink,
            worker: plates.worker,
            selection,
            incremental: plates.incremental,
            ..RunOptions::new(pipeline)
        })
    }
}

#[derive(clap::Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    input: PipelineArgs,
    /// Also write the JSON run summary to this file.
    #[arg(long)]
    summary: Option<PathBuf>,
    /// Largest share of rejected objects that still exits 0.
    #[arg(long, default_value_t = 0.0)]
    max_reject_fraction: f64,
    #[command(flatten)]
    plates: PlateArgs,
    /// CPU threads (0 = one per core).
    #[arg(long, env = "CELLSHARD_THREADS", default_value_t = 0)]
    threads: usize,
    /// Sites in flight per plate (0 = twice the threads).
    #[arg(long, default_value_t = 0)]
    inflight: usize,
    /// Scratch directory for per-plate spill files.
    #[arg(long, env = "CELLSHARD_SCRATCH")]
    scratch: Option<PathBuf>,
    /// Discover and check inputs; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Never draw a progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Remove plates from the store whose source objects are all gone (a run over every
    /// plate only).
    #[arg(long)]
    prune: bool,
}

/// `cellshard plan`.
#[derive(clap::Args)]
pub(crate) struct PlanArgs {
    #[command(flatten)]
    input: PipelineArgs,
    #[command(flatten)]
    plates: PlateArgs,
    /// Print the plan as JSON (for schedulers).
    #[arg(long)]
    json: bool,
}

pub(crate) fn parse_worker(s: &str) -> Result<WorkerShare, String> {
    let (i, n) = s.split_once('/').ok_or("expected I/N, e.g. 0/4")?;
    let index: u32 = i
        .trim()
        .parse()
        .map_err(|_| format!("worker index {i:?} is not a number"))?;
    let count: u32 = n
        .trim()
        .parse()
        .map_err(|_| format!("worker count {n:?} is not a number"))?;
    if count == 0 || index >= count {
        return Err(format!("worker {index}/{count}: need 0 <= I < N"));
    }
    Ok(WorkerShare { index, count })
}

pub(crate) async fn run(a: RunArgs) -> Result<u8, (u8, anyhow::Error)> {
    if !(0.0..=1.0).contains(&a.max_reject_fraction) {
        return Err(with_code(exit::invalid(
            "--max-reject-fraction must be within 0..=1",
        )));
    }
    let base = a.input.options(&a.plates)?;
    let opts = RunOptions {
        prune: a.prune,
        threads: a.threads,
        inflight: a.inflight,
        scratch: a.scratch,
        dry_run: a.dry_run,
        progress: !a.no_progress && std::io::stderr().is_terminal(),
        ..base
    };
    let summary: RunSummary = cellshard_runtime::run(opts).await.map_err(with_code)?;
    let json = serde_json::to_string_pretty(&summary).map_err(with_code)?;
    println!("{json}");
    if let Some(path) = &a.summary {
        std::fs::write(path, &json)
            .with_context(|| format!("cannot write the summary to {}", path.display()))
            .map_err(with_code)?;
    }
    let code = summary.exit_code(a.max_reject_fraction);
    if code != 0 {
        eprintln!(
            "cellshard: {} of {} objects rejected ({:.1}%), over --max-reject-fraction {}; see the rejects table",
            summary.objects.rejected,
            summary.objects.stored + summary.objects.rejected,
            summary.reject_fraction * 100.0,
            a.max_reject_fraction
        );
        return Ok(code);
    }
    Ok(0)
}

/// Print what a run with the same arguments would build, and why.
pub(crate) async fn plan(a: PlanArgs) -> Result<u8, (u8, anyhow::Error)> {
    let opts = a.input.options(&a.plates)?;
    let plan = cellshard_runtime::plan(&opts).await.map_err(with_code)?;
    if a.json {
        let json = serde_json::to_string_pretty(&plan).map_err(with_code)?;
        println!("{json}");
        return Ok(0);
    }
    println!(
        "{:<20} {:>6} {:>8} {:>14}  {:<9} fingerprint",
        "plate", "sites", "objects", "bytes", "action"
    );
    for p in &plan.plates {
        let action = match p.action {
            PlanAction::New => "new",
            PlanAction::Changed => "changed",
            PlanAction::Forced => "forced",
            PlanAction::Unchanged => "unchanged",
            PlanAction::Incomplete => "incomplete",
        };
        println!(
            "{:<20} {:>6} {:>8} {:>14}  {:<9} {}",
            p.plate, p.sites, p.objects, p.bytes, action, p.fingerprint
        );
    }
    println!(
        "{} of {} plates to build, {} bytes to read",
        plan.plates_to_build,
        plan.plates.len(),
        plan.bytes_to_read
    );
    Ok(0)
}
