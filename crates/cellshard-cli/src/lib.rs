//! `cellshard`: synthesize raw Cell Painting data, ingest it into a Delta/Parquet store,
//! and query the store with SQL.
//!
//! The whole command line is [`main`], so the same CLI runs as the `cellshard` binary and
//! as the Python package's `cellshard` console command (inside its extension module).
//!
//! Exit status: 0 success; 1 the run failed (store, internal error); 2 bad usage or an
//! invalid pipeline; 3 the run finished but rejected more inputs than
//! `--max-reject-fraction` allows.

#[cfg(feature = "cluster")]
mod cluster;
mod deploy;
mod embeddings;
mod exit;
mod feed;
mod ingest;
mod maintain;
mod profile;
mod qc;
mod sql;
mod synth_jump;
mod view;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use cellshard_core::{MetadataTable, Pipeline};
use cellshard_runtime::RunOptions;
use cellshard_sql::OutputFormat;
use cellshard_store::Location;
use clap::{Parser, Subcommand, ValueEnum};
use exit::status;

/// The pipeline `demo` runs when `--pipeline` is not given (`pipelines/rxrx1.toml`).
const DEMO_PIPELINE: &str = include_str!("../../../pipelines/rxrx1.toml");

#[derive(Parser)]
#[command(
    name = "cellshard",
    version,
    about = "Raw Cell Painting images to a sharded, SQL-queryable Delta/Parquet store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write RxRx1-shaped synthetic raw images (and metadata.csv) from the real design.
    Synth(SynthArgs),
    /// Ingest raw images into the store, as a pipeline file says.
    Run(ingest::RunArgs),
    /// Training reads: the plan of a feed (rows, steps, bytes) and a read benchmark.
    #[command(subcommand)]
    Feed(feed::FeedCommand),
    /// A model's vectors per site: `import` a Parquet file into the `embeddings` table.
    #[command(subcommand)]
    Embeddings(embeddings::EmbeddingsCommand),
    /// Write the manifests to run a rebuild on a cluster.
    #[command(subcommand)]
    Deploy(DeployTarget),
    /// Remove data files that no version within the retention needs.
    Vacuum(maintain::VacuumArgs),
    /// What each commit of a table did: version, time, operation, plate, run.
    History(maintain::HistoryArgs),
    /// Go back to an earlier `sites` version (statistics and rejects follow).
    Restore(maintain::RestoreArgs),
    /// List the plates a run would build (new, changed, forced) and their sizes, without
    /// decoding anything.
    Plan(ingest::PlanArgs),
    /// Check a pipeline file without running it, and/or a store: every published plate's
    /// live build has its statistics.
    Validate(maintain::ValidateArgs),
    /// Run SQL over a store: tables sites, plate_stats, rejects, runs, the views of
    /// sql/views.sql and the tensor functions. Without a query, an interactive shell.
    Sql(sql::SqlArgs),
    /// Write the rows of a query (tensors included) to a new Delta table or Parquet files.
    Export(sql::ExportArgs),
    /// Per-site image features (intensity, texture, granularity) and well medians, raw and
    /// normalised to each plate's controls, into the `profiles` table.
    Profile(profile::ProfileArgs),
    /// Image QC: the plates, wells and sites that fail it (saturated, empty, out of focus),
    /// with their reasons.
    Qc(qc::QcArgs),
    /// Draw a site's composite (or channel grid), a contact sheet of a query's sites, or a
    /// plate heatmap of a per-site statistic, to a PNG file.
    Render(view::RenderArgs),
    /// A read-only web viewer of a store: SQL, plate and site pages (127.0.0.1 by default).
    Serve(view::ServeArgs),
    /// Run a Ballista scheduler for `cellshard sql --cluster` (with `cellshard executor`s).
    #[cfg(feature = "cluster")]
    Scheduler(cluster::SchedulerArgs),
    /// Run a Ballista executor: it registers with the scheduler and runs query tasks.
    #[cfg(feature = "cluster")]
    Executor(cluster::ExecutorArgs),
    /// Synthesize a small raw set, ingest it, and print a SQL summary (no cloud account needed).
    Demo(DemoArgs),
    /// The viewer's query worker: runs visitors' SQL in its own process (started by
    /// `serve`; frames on stdin and stdout).
    #[command(hide = true)]
    QueryWorker,
}

#[derive(Subcommand)]
enum DeployTarget {
    /// A Kubernetes Indexed Job with one index per plate, and its ConfigMap.
    K8s(deploy::K8sArgs),
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Working directory for the raw images and the store.
    #[arg(long, default_value = "demo-out")]
    out: PathBuf,
    /// Pipeline to run (default: the built-in copy of `pipelines/rxrx1.toml`).
    #[arg(long)]
    pipeline: Option<PathBuf>,
    /// The experiment design, an RxRx1 metadata.csv (plain or .zst) at a path or URL
    /// (default: the built-in real RxRx1 design).
    #[arg(long, env = "CELLSHARD_DESIGN")]
    design: Option<String>,
    /// Wells per plate to synthesize.
    #[arg(long, default_value_t = 4)]
    wells: u32,
    /// Plates to synthesize.
    #[arg(long, default_value_t = 2)]
    plates: u32,
}

#[derive(clap::Args)]
struct SynthArgs {
    /// Output URL or path (images go below it, plus metadata.csv).
    #[arg(long)]
    out: String,
    /// The dataset's shape: `rxrx1` (the real RxRx1 design, 384-well plates), `rxrx3`
    /// (1536-well plates of CRISPR, compound and control wells, RxRx3's layout and
    /// metadata columns) or `jump` (one 5-channel plate of 16-bit TIFFs in JUMP's tree and
    /// Phenix naming, with a load_data.csv and a vignetting field).
    #[arg(long, value_enum, default_value_t = SynthDataset::Rxrx1)]
    dataset: SynthDataset,
    /// The experiment design, an RxRx1 metadata.csv (plain or .zst) at a path or URL
    /// (default: the built-in real RxRx1 design).
    #[arg(long, env = "CELLSHARD_DESIGN")]
    design: Option<String>,
    /// Experiments to draw, comma separated (default: the first in the design).
    #[arg(long, value_delimiter = ',')]
    experiments: Vec<String>,
    /// Plates per experiment.
    #[arg(long, default_value_t = 1)]
    plates: u32,
    /// Cap on wells per plate (the negative control well is always kept).
    #[arg(long)]
    wells: Option<u32>,
    /// Sites per well.
    #[arg(long, default_value_t = 2)]
    sites: u32,
    /// Image side in pixels (default 2048; 1080 for jump).
    #[arg(long)]
    size: Option<u32>,
    /// jump: the vignetting strength (corners keep 1 - V of the light).
    #[arg(long, default_value_t = 0.5)]
    vignetting: f64,
    /// Wells drawn out of focus (a Gaussian blur of --blur-sigma px on every channel),
    /// comma separated.
    #[arg(long, value_delimiter = ',')]
    blur_wells: Vec<String>,
    /// Standard deviation of that blur, in pixels.
    #[arg(long, default_value_t = 3)]
    blur_sigma: u32,
    /// Bits per sample (8 or 16).
    #[arg(long, default_value_t = 16, value_parser = parse_bit_depth)]
    bit_depth: u8,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// PNG compression effort.
    #[arg(long, value_enum, default_value_t = Compression::Default)]
    compression: Compression,
    /// Object store option for the output, KEY=VALUE (repeatable; e.g. endpoint, region).
    #[arg(long = "store-option", value_parser = sql::parse_kv)]
    store_options: Vec<(String, String)>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SynthDataset {
    Rxrx1,
    Rxrx3,
    Jump,
}

#[derive(Clone, Copy, ValueEnum)]
enum Compression {
    Fast,
    Default,
    High,
}

fn parse_bit_depth(s: &str) -> Result<u8, String> {
    match s {
        "8" => Ok(8),
        "16" => Ok(16),
        _ => Err(format!("bit depth {s:?}: must be 8 or 16")),
    }
}

pub(crate) fn load_pipeline(path: &PathBuf) -> Result<Pipeline> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read pipeline {}", path.display()))?;
    Ok(Pipeline::from_toml(&path.display().to_string(), &text)?)
}

/// Run the command line `args` (the program name first) and return its exit status.
/// Errors are printed to stderr as one line, `error: <what failed>: <cause>`.
pub fn main<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print to stdout and exit 0; usage errors exit 2.
            let _ = e.print();
            return if e.use_stderr() {
                exit::INVALID
            } else {
                exit::OK
            };
        }
    };
    // A second call in one process (the Python console command) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CELLSHARD_LOG")
                // The Delta kernel logs an ERROR each time it probes a table that does not
                // exist yet (every first run), and logs the errors it also returns, which
                // the one-line error message then says again.
                .unwrap_or_else(|_| "warn,buoyant_kernel=off".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return exit::FAILED;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Synth(a) => status(synth(a).await),
            Command::Run(a) => ingest::run(a).await,
            Command::Plan(a) => ingest::plan(a).await,
            Command::Deploy(DeployTarget::K8s(a)) => status(deploy::k8s(a).await),
            Command::Feed(c) => status(feed::feed(c).await),
            Command::Embeddings(c) => status(embeddings::embeddings(c).await),
            Command::Vacuum(a) => status(maintain::vacuum(a).await),
            Command::History(a) => status(maintain::history(a).await),
            Command::Restore(a) => status(maintain::restore(a).await),
            Command::Validate(a) => status(maintain::validate(a).await),
            Command::Sql(a) => status(sql::sql(a).await),
            Command::Export(a) => status(sql::export(a).await),
            Command::Qc(a) => status(qc::qc(a).await),
            Command::Profile(a) => status(profile::profile(a).await),
            Command::Render(a) => status(view::render_cmd(a).await),
            Command::Serve(a) => status(view::serve_cmd(a).await),
            #[cfg(feature = "cluster")]
            Command::Scheduler(a) => status(cluster::scheduler(a).await),
            #[cfg(feature = "cluster")]
            Command::Executor(a) => status(cluster::executor(a).await),
            Command::Demo(a) => status(demo(a).await),
            Command::QueryWorker => status(
                cellshard_view::serve::worker_main()
                    .await
                    .map_err(Into::into),
            ),
        }
    });
    // A statement stopped at its timeout may still hold a runtime thread until its plan
    // next yields; the command ends without waiting for it.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err((code, e)) => {
            eprintln!("error: {}", error_line(&e));
            code
        }
    }
}

/// The experiment design: an RxRx1 `metadata.csv` (plain or zstd-compressed) at a URL or
/// path, or the built-in real RxRx1 design when none is given.
pub async fn load_design(url: Option<&str>) -> Result<MetadataTable> {
    let Some(url) = url else {
        return Ok(cellshard_synth::rxrx1_design()?);
    };
    let bytes = cellshard_runtime::run::read_object(url, &BTreeMap::new())
        .await
        .with_context(|| format!("cannot read the design {url} (--design or CELLSHARD_DESIGN)"))?;
    let mut design = MetadataTable::new();
    cellshard_runtime::metadata::add_metadata_file(&mut design, url, &bytes)?;
    design.finish();
    if let Some(e) = design.row_errors.first().filter(|_| design.is_empty()) {
        anyhow::bail!("the design {url} has no usable rows: {e}");
    }
    Ok(design)
}

/// Errors as one line: each cause in the chain is added only if the text so far does not
/// already say it (object_store, DataFusion and parquet errors repeat their sources).
pub fn error_line(e: &anyhow::Error) -> String {
    cellshard_core::error_line(e.as_ref())
}

async fn synth(a: SynthArgs) -> Result<()> {
    if a.dataset == SynthDataset::Jump {
        return synth_jump::synth_jump(a).await;
    }
    let rxrx3 = a.dataset == SynthDataset::Rxrx3;
    let design = match (&a.design, rxrx3) {
        (None, true) => cellshard_synth::rxrx3::rxrx3_design(a.plates)?,
        (d, _) => load_design(d.as_deref()).await?,
    };
    let layout = if rxrx3 {
        cellshard_synth::rxrx3::RXRX3_LAYOUT
    } else {
        cellshard_core::layout::RXRX1_LAYOUT
    };
    let cfg = cellshard_synth::SynthConfig {
        layout: layout.to_string(),
        experiments: (!a.experiments.is_empty()).then_some(a.experiments),
        plates: a.plates,
        wells: a.wells,
        sites: a.sites,
        size: a.size.unwrap_or(2048),
        bit_depth: a.bit_depth,
        seed: a.seed,
        blur_wells: a.blur_wells,
        blur_sigma: a.blur_sigma,
        compression: match a.compression {
            Compression::Fast => cellshard_synth::SynthCompression::Fast,
            Compression::Default => cellshard_synth::SynthCompression::Default,
            Compression::High => cellshard_synth::SynthCompression::High,
        },
        ..Default::default()
    };
    let out = Location::parse(&a.out, &a.store_options.into_iter().collect())?;
    out.create_local_dir()?;
    let total = cellshard_synth::select_sites(&design, &cfg)?.len();
    let tty = std::io::stderr().is_terminal();
    let progress = move |n: usize| {
        if tty {
            eprint!("\rsynth: {n}/{total} sites");
        }
    };
    let report = cellshard_synth::write_dataset(
        out.store.clone(),
        &out.prefix,
        &design,
        &cfg,
        Some(&progress),
    )
    .await?;
    if tty {
        eprintln!();
    }
    println!(
        "{}",
        serde_json::json!({
            "out": out.url.to_string(),
            "sites": report.sites,
            "objects": report.objects,
            "bytes": report.bytes,
            "seconds": report.seconds,
            "metadata": format!("{}metadata.csv", out.url),
        })
    );
    Ok(())
}

async fn demo(a: DemoArgs) -> Result<()> {
    let raw = a.out.join("raw").display().to_string();
    let store = a.out.join("store").display().to_string();
    let (pipeline, pipeline_name) = match &a.pipeline {
        Some(path) => (load_pipeline(path)?, path.display().to_string()),
        None => (
            Pipeline::from_toml("pipelines/rxrx1.toml (built in)", DEMO_PIPELINE)?,
            "pipelines/rxrx1.toml".to_string(),
        ),
    };
    let t = pipeline.transform();
    eprintln!(
        "demo: 1/3 synthesizing {} plate(s) x {} wells x 2 sites of raw {}x{} {}-bit PNGs into {raw}",
        a.plates,
        a.wells,
        t.width.unwrap_or(2048),
        t.height.unwrap_or(2048),
        t.bit_depth
    );
    synth(SynthArgs {
        out: raw.clone(),
        dataset: SynthDataset::Rxrx1,
        design: a.design,
        experiments: vec!["HUVEC-01".into()],
        plates: a.plates,
        wells: Some(a.wells),
        sites: 2,
        size: Some(t.width.unwrap_or(2048)),
        vignetting: 0.5,
        blur_wells: Vec::new(),
        blur_sigma: 3,
        bit_depth: t.bit_depth,
        seed: 0,
        compression: Compression::Default,
        store_options: Vec::new(),
    })
    .await?;
    eprintln!("demo: 2/3 ingesting with {pipeline_name} into {store}");
    let summary = cellshard_runtime::run(RunOptions {
        source: Some(raw.clone()),
        metadata: vec![format!("{raw}/metadata.csv")],
        sink: Some(store.clone()),
        progress: std::io::stderr().is_terminal(),
        ..RunOptions::new(pipeline)
    })
    .await?;
    println!("{}", serde_json::to_string_pretty(&summary)?);
    eprintln!("demo: 3/3 querying the store with SQL");
    let ctx =
        cellshard_sql::open_session(&store, &BTreeMap::new(), cellshard_sql::AsOf::Latest).await?;
    for q in [
        "SELECT cell_type, experiment, plate, well_type, count(*) AS sites, round(avg(channel_mean[1]), 1) AS mean_ch1 FROM sites GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
        "SELECT experiment, plate, channel, low_value, high_value, round(mean, 1) AS mean, pixel_count FROM plate_stats ORDER BY experiment, plate, channel",
        "SELECT sites_stored, sites_rejected, bytes_in, bytes_out, round(decode_seconds, 2) AS decode_s FROM runs",
    ] {
        println!("\n> {q}");
        let batches = cellshard_sql::query(&ctx, q).await?;
        println!("{}", cellshard_sql::format(&batches, OutputFormat::Table)?);
    }
    eprintln!(
        "demo: done. Try: cargo run -p cellshard-cli -- sql --store {store} -c \"SELECT site_id, well_type, sirna_id FROM sites LIMIT 5\"\n\
         or look at it: cargo run -p cellshard-cli -- serve --store {store}  (then open http://127.0.0.1:8080/)"
    );
    Ok(())
}
