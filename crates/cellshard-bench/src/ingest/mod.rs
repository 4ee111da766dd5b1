//! `cellshard-bench ingest`: the end-to-end ingest benchmark.
//!
//! In one run, on the same synthetic raw PNGs, it measures
//! 1. the decode ceiling ([`ceiling`]): the crop-aware decoder alone (every channel of a
//!    site through `decode_transformed`, the PNG bytes already in memory), on one thread
//!    and on every core; the chunk walk and libdeflate inflating the same streams to the
//!    same row and doing nothing else (the limit no decoder built on them can pass); the
//!    previous decoder (the `png` crate's row reader) on one thread for reference (the last
//!    two are in [`baseline`]);
//! 2. the full pipeline ([`pipeline`]): `cellshard run` as a child process (list, read,
//!    decode, histograms, spill, normalize, stack, Parquet + Delta commit), pinned to one
//!    core with `taskset` where it exists, then on every core,
//!
//! then measures the ceiling again (the machine's speed drifts over minutes), and prints
//! ([`report`]) sites/s, the pipeline's ratio to the mean of the two ceilings, the scaling
//! from one core to all, the writers' busy time as a share of wall time and each run's peak
//! RSS (`VmHWM`, reported by the run itself).
//!
//! Synthesizing a raw site takes seconds, so the data ([`pool`]) is a pool of distinct
//! sites (rendered once and kept in the cache directory) laid out as full plates of the
//! RxRx1 design with hard links: a plate of 616 sites costs 3,696 links, not a plate's worth
//! of rendering. Each distinct site still decodes to its own pixels; repeats only share
//! bytes on disk (and in the page cache, as re-reads of a real plate would not).

mod baseline;
mod ceiling;
mod pipeline;
mod pool;
mod report;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use cellshard_core::MetadataTable;
use cellshard_stages::DecodeSpec;
use cellshard_synth::{SynthCompression, SynthConfig};

use ceiling::Ceiling;
use report::{AFTER, BenchReport, INFLATE};

/// Options of `cellshard-bench ingest`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Cache directory for the synthetic pool, the plate layouts, scratch and stores
    /// (reused between runs).
    #[arg(long, default_value = "target/bench-cache")]
    pub cache: PathBuf,
    /// The experiment design, an RxRx1 metadata.csv (plain or .zst) at a path or URL
    /// (default: the built-in real RxRx1 design).
    #[arg(long, env = "CELLSHARD_DESIGN")]
    pub design: Option<String>,
    /// Image side in pixels (raw RxRx1: 2048). The pipeline downsamples 2x and crops a
    /// quarter of the side (512 for 2048), as `pipelines/rxrx1.toml` does.
    #[arg(long, default_value_t = 2048)]
    pub size: u32,
    /// Distinct synthetic sites in the pool.
    #[arg(long, default_value_t = 16)]
    pub pool: usize,
    /// Full plates for the all-core pipeline run (616 sites each in the RxRx1 design).
    #[arg(long, default_value_t = 2)]
    pub plates: u32,
    /// Full plates for the one-core pipeline run (0 = skip it).
    #[arg(long, default_value_t = 1)]
    pub one_core_plates: u32,
    /// Cap on wells per plate (default: every well of the design, 308).
    #[arg(long)]
    pub wells: Option<u32>,
    /// Site decodes per ceiling measurement, best of three rounds (0 = twice the pool).
    #[arg(long, default_value_t = 0)]
    pub ceiling_sites: usize,
    /// Threads for the all-core runs (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Parquet ZSTD level of the pipeline's sink (the shipped pipelines use 1).
    #[arg(long, default_value_t = 1)]
    pub zstd_level: i32,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Run the benchmark and print the report.
pub async fn bench(a: BenchArgs) -> Result<()> {
    if a.size < 8 || !a.size.is_multiple_of(4) {
        bail!("--size {}: must be a multiple of 4, at least 8", a.size);
    }
    if a.pool == 0 || a.plates == 0 {
        bail!("--pool and --plates must be at least 1");
    }
    let design = cellshard_cli::load_design(a.design.as_deref()).await?;
    tokio::task::spawn_blocking(move || run_bench(&a, &design))
        .await
        .context("the bench task failed")?
}

fn synth_config(a: &BenchArgs, plates: u32) -> SynthConfig {
    SynthConfig {
        experiments: Some(vec!["HUVEC-01".into()]),
        plates,
        wells: a.wells,
        sites: 2,
        size: a.size,
        bit_depth: 16,
        seed: 0,
        // Balanced is zlib-level-6-like, what microscope software and most tools write.
        compression: SynthCompression::Default,
        ..Default::default()
    }
}

fn run_bench(a: &BenchArgs, design: &MetadataTable) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if a.threads == 0 { cores } else { a.threads };
    std::fs::create_dir_all(&a.cache)
        .with_context(|| format!("cannot create {}", a.cache.display()))?;
    let cache = a
        .cache
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", a.cache.display()))?;

    let pool = pool::ensure_pool(a, design, &cache)?;
    let pool_bytes: u64 = pool.iter().flatten().map(|p| p.len() as u64).sum();
    let png_bytes_per_site = pool_bytes / pool.len() as u64;
    let raw_bytes_per_site = 6 * u64::from(a.size) * u64::from(a.size) * 2;
    let compression_ratio = raw_bytes_per_site as f64 / png_bytes_per_site.max(1) as f64;
    eprintln!(
        "bench: pool of {} distinct {}x{} 16-bit sites, {:.1} MB of PNG per site ({compression_ratio:.2}x)",
        pool.len(),
        a.size,
        a.size,
        png_bytes_per_site as f64 / 1e6
    );

    // The ceiling decodes exactly as the pipeline's stages do.
    let t = pipeline::bench_pipeline(a, &cache, &cache)?.transform();
    let mut thread_counts = vec![1];
    if threads > 1 {
        thread_counts.push(threads);
    }
    let bench = Ceiling {
        pool: &pool,
        spec: DecodeSpec {
            bit_depth: t.bit_depth,
            width: t.width,
            height: t.height,
            max_pixels: t.max_pixels,
        },
        factor: t.factor,
        crop: t.crop,
        sites: if a.ceiling_sites == 0 {
            2 * pool.len()
        } else {
            a.ceiling_sites
        },
        threads: thread_counts,
    };
    let mut ceiling = Vec::new();
    bench.warm()?;
    bench.measure("crop-aware", &mut ceiling)?;
    bench.measure(INFLATE, &mut ceiling)?;
    ceiling.push(bench.previous_decoder()?);

    let mut pipeline = Vec::new();
    if a.one_core_plates > 0 {
        let layout = pool::ensure_layout(a, design, &cache, a.one_core_plates)?;
        pipeline.push(pipeline::run_pipeline(a, &cache, &layout, 1, true)?);
    }
    let layout = pool::ensure_layout(a, design, &cache, a.plates)?;
    pipeline.push(pipeline::run_pipeline(a, &cache, &layout, threads, false)?);

    // The machine's speed can drift over the minutes the pipeline runs take: measure the
    // ceiling again and compare each run with the mean of before and after.
    bench.measure(AFTER, &mut ceiling)?;
    drop(pool);

    let report = BenchReport {
        size: a.size,
        cores,
        pool_sites: a.pool,
        png_bytes_per_site,
        compression_ratio,
        ceiling,
        pipeline,
    };
    print!("{}", report::render(&report));
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
