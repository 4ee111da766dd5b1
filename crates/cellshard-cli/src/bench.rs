//! `cellshard bench`: the end-to-end ingest benchmark.
//!
//! In one run, on the same synthetic raw PNGs, it measures
//! 1. the decode ceiling: the crop-aware decoder alone (every channel of a site through
//!    `decode_transformed`, the PNG bytes already in memory), on one thread and on every
//!    core; libdeflate inflating the same streams to the same row and doing nothing else
//!    (the limit no decoder built on it can pass); the previous decoder (the `png` crate's
//!    row reader) on one thread for reference;
//! 2. the full pipeline: `cellshard run` as a child process (list, read, decode, histograms,
//!    spill, normalize, stack, Parquet + Delta commit), pinned to one core with `taskset`
//!    where it exists, then on every core,
//!
//! then measures the ceiling again (the machine's speed drifts over minutes), and prints
//! sites/s, the pipeline's ratio to the mean of the two ceilings, the scaling from one core
//! to all, the writers' busy time as a share of wall time and each run's peak RSS
//! (`VmHWM`, reported by the run itself).
//!
//! Synthesizing a raw 2048x2048 site takes ~2 s, so the data is a pool of distinct sites
//! (rendered once and kept in the cache directory) laid out as full plates of the RxRx1
//! design with hard links: a plate of 616 sites costs 3,696 links, not 20 minutes of
//! rendering. Each distinct site still decodes to its own pixels; repeats only share bytes
//! on disk (and in the page cache, as re-reads of a real plate would not).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use cellshard_core::MetadataTable;
use cellshard_core::layout::{KeyFields, LayoutTemplate, RXRX1_LAYOUT};
use cellshard_runtime::RunSummary;
use cellshard_stages::DecodeSpec;
use cellshard_stages::decode::{decode_transformed, decode_transformed_rows, inflate_only};
use cellshard_synth::{SynthCompression, SynthConfig};

/// Options of `cellshard bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Cache directory for the synthetic pool, the plate layouts, scratch and stores
    /// (reused between runs).
    #[arg(long, default_value = "target/bench-cache")]
    pub cache: PathBuf,
    /// The experiment design (RxRx1 metadata.csv).
    #[arg(
        long,
        env = "CELLSHARD_DESIGN",
        default_value = "../shared/data/rxrx1/metadata.csv"
    )]
    pub design: String,
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

/// One decode-ceiling measurement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CeilingRun {
    /// Decoder name.
    pub decoder: &'static str,
    /// Threads decoding.
    pub threads: usize,
    /// Sites decoded.
    pub sites: usize,
    /// Wall seconds.
    pub seconds: f64,
    /// Sites per wall second.
    pub sites_per_second: f64,
    /// Sites per CPU second of this process (robust against other load on the machine).
    pub sites_per_cpu_second: f64,
}

/// One pipeline measurement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PipelineRun {
    /// CPU threads of the run.
    pub threads: usize,
    /// Whether the process was pinned to one core with `taskset`.
    pub pinned: bool,
    /// Plates.
    pub plates: u64,
    /// Sites stored.
    pub sites: u64,
    /// Wall seconds of the run.
    pub seconds: f64,
    /// Stored sites per wall second.
    pub sites_per_second: f64,
    /// Stored sites per CPU second of the run's process.
    pub sites_per_cpu_second: f64,
    /// Seconds the Parquet writers and commits were busy (summed over the files written at
    /// once).
    pub write_seconds: f64,
    /// `write_seconds` / wall seconds.
    pub write_share: f64,
    /// Peak RSS of the run's process in bytes.
    pub peak_rss_bytes: u64,
    /// Shard bytes written.
    pub bytes_out: u64,
}

/// Everything one bench run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    /// Image side.
    pub size: u32,
    /// Cores available.
    pub cores: usize,
    /// Distinct sites in the pool.
    pub pool_sites: usize,
    /// Mean PNG bytes per site of the pool.
    pub png_bytes_per_site: u64,
    /// Raw over PNG bytes.
    pub compression_ratio: f64,
    /// Decode ceilings.
    pub ceiling: Vec<CeilingRun>,
    /// Pipeline runs.
    pub pipeline: Vec<PipelineRun>,
}

/// Run the benchmark and print the report.
pub async fn bench(a: BenchArgs) -> Result<()> {
    if a.size < 8 || !a.size.is_multiple_of(4) {
        bail!("--size {}: must be a multiple of 4, at least 8", a.size);
    }
    if a.pool == 0 || a.plates == 0 {
        bail!("--pool and --plates must be at least 1");
    }
    let design = crate::load_design(&a.design).await?;
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

/// The ceiling measured again after the pipeline runs.
const AFTER: &str = "crop-aware-after";
/// The decoder name under which the inflate-only limit is recorded.
const INFLATE: &str = "inflate-only";

fn run_bench(a: &BenchArgs, design: &MetadataTable) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if a.threads == 0 { cores } else { a.threads };
    std::fs::create_dir_all(&a.cache)
        .with_context(|| format!("cannot create {}", a.cache.display()))?;
    let cache = a
        .cache
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", a.cache.display()))?;

    let pool = ensure_pool(a, design, &cache)?;
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

    let spec = DecodeSpec {
        bit_depth: 16,
        width: Some(a.size),
        height: Some(a.size),
        max_pixels: 1 << 26,
    };
    let crop = a.size / 4;
    let n = if a.ceiling_sites == 0 {
        2 * pool.len()
    } else {
        a.ceiling_sites
    };
    let mut ceiling = Vec::new();
    // Warm the page cache, the allocator and the per-thread decoder once.
    decode_sites(&pool, pool.len().min(2), 1, |b| {
        decode_transformed(b, &spec, 2, Some(crop))
    })?;
    let mut thread_counts = vec![1];
    if threads > 1 {
        thread_counts.push(threads);
    }
    // At each thread count, recorded under `decoder`: the crop-aware ceiling, or (for
    // INFLATE) the limit above it, libdeflate inflating the same streams to the same row.
    let measure_ceiling = |decoder: &'static str, ceiling: &mut Vec<CeilingRun>| {
        for &t in &thread_counts {
            let run = best_of(ROUNDS, || {
                if decoder == INFLATE {
                    decode_sites(&pool, n, t, |b| inflate_only(b, &spec, 2, Some(crop)))
                } else {
                    decode_sites(&pool, n, t, |b| decode_transformed(b, &spec, 2, Some(crop)))
                }
            })?;
            eprintln!(
                "bench: {decoder}, {t} thread(s): {:.2} sites/s",
                run.sites_per_second
            );
            ceiling.push(CeilingRun { decoder, ..run });
        }
        Ok::<_, anyhow::Error>(())
    };
    measure_ceiling("crop-aware", &mut ceiling)?;
    measure_ceiling(INFLATE, &mut ceiling)?;
    let rows = best_of(ROUNDS, || {
        decode_sites(&pool, n.min(pool.len()), 1, |b| {
            decode_transformed_rows(b, &spec, 2, Some(crop))
        })
    })?;
    eprintln!(
        "bench: previous decoder (png row reader), 1 thread: {:.2} sites/s",
        rows.sites_per_second
    );
    ceiling.push(CeilingRun {
        decoder: "png-rows",
        ..rows
    });

    let mut pipeline = Vec::new();
    if a.one_core_plates > 0 {
        let layout = ensure_layout(a, design, &cache, a.one_core_plates)?;
        pipeline.push(run_pipeline(a, &cache, &layout, 1, true)?);
    }
    let layout = ensure_layout(a, design, &cache, a.plates)?;
    pipeline.push(run_pipeline(a, &cache, &layout, threads, false)?);

    // The machine's speed can drift over the minutes the pipeline runs take: measure the
    // ceiling again and compare each run with the mean of before and after.
    measure_ceiling(AFTER, &mut ceiling)?;
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
    print!("{}", render(&report));
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// The report as the text `cellshard bench` prints.
pub fn render(r: &BenchReport) -> String {
    let mut out = String::new();
    let measured = |decoder: &str, threads: usize| {
        r.ceiling
            .iter()
            .find(|c| c.decoder == decoder && c.threads == threads)
            .map(|c| c.sites_per_second)
    };
    // The mean of the ceiling before and after the pipeline runs, where both exist.
    let ceiling_at =
        |threads: usize| match (measured("crop-aware", threads), measured(AFTER, threads)) {
            (Some(b), Some(a)) => Some((b + a) / 2.0),
            (b, a) => b.or(a),
        };
    let one = measured("crop-aware", 1).unwrap_or(0.0);
    out.push_str(&format!(
        "cellshard bench: {}x{} 16-bit PNG sites ({:.1} MB per 6-channel site, {:.2}x compressed), {} core(s)\n",
        r.size,
        r.size,
        r.png_bytes_per_site as f64 / 1e6,
        r.compression_ratio,
        r.cores
    ));
    out.push_str("decode only (PNG bytes in memory -> 2x downsample -> centre crop):\n");
    for c in &r.ceiling {
        if c.decoder == AFTER {
            continue;
        }
        if c.decoder == INFLATE {
            let of = measured("crop-aware", c.threads)
                .map(|d| format!(", the decoder does {:.2} of it", d / c.sites_per_second))
                .unwrap_or_default();
            out.push_str(&format!(
                "  {} {} thread(s): {:>5.2} sites/s ({:.2} per CPU-second, {} sites): libdeflate alone, to the crop's last row (no decoder built on it is faster){of}\n",
                c.decoder, c.threads, c.sites_per_second, c.sites_per_cpu_second, c.sites
            ));
            continue;
        }
        let scaling = if c.decoder == "crop-aware" && c.threads > 1 && one > 0.0 {
            format!(", {:.2}x one thread", c.sites_per_second / one)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "  {:<10} {} thread(s): {:>7.2} sites/s ({:.2} per CPU-second, {} sites){scaling}\n",
            c.decoder, c.threads, c.sites_per_second, c.sites_per_cpu_second, c.sites
        ));
    }
    for c in r.ceiling.iter().filter(|c| c.decoder == AFTER) {
        out.push_str(&format!(
            "  crop-aware {} thread(s), again after the pipeline runs: {:.2} sites/s\n",
            c.threads, c.sites_per_second
        ));
    }
    out.push_str("full pipeline (cellshard run: read, decode, histograms, spill, normalize, Parquet, commit):\n");
    let one_core_pipeline = r.pipeline.iter().find(|p| p.threads == 1);
    for p in &r.pipeline {
        let ceiling = ceiling_at(p.threads).unwrap_or(0.0);
        let ratio = if ceiling > 0.0 {
            p.sites_per_second / ceiling
        } else {
            0.0
        };
        let scaling = match one_core_pipeline {
            Some(o) if p.threads > 1 && o.sites_per_second > 0.0 => {
                format!(", {:.2}x one core", p.sites_per_second / o.sites_per_second)
            }
            _ => String::new(),
        };
        out.push_str(&format!(
            "  {} thread(s){}: {} plate(s), {} sites in {:.1} s: {:.2} sites/s = {:.2} of the decode ceiling (mean of before and after){scaling}; {:.2} sites per CPU-second; writers busy {:.1}% of wall; peak RSS {:.0} MiB\n",
            p.threads,
            if p.pinned { " pinned to 1 core" } else { "" },
            p.plates,
            p.sites,
            p.seconds,
            p.sites_per_second,
            ratio,
            p.sites_per_cpu_second,
            p.write_share * 100.0,
            p.peak_rss_bytes as f64 / (1 << 20) as f64
        ));
    }
    out
}

/// The pool's PNGs, `[site][channel]`, rendering whatever the cache lacks.
fn ensure_pool(a: &BenchArgs, design: &MetadataTable, cache: &Path) -> Result<Vec<Vec<Vec<u8>>>> {
    let dir = cache.join(format!("pool-{}", a.size));
    std::fs::create_dir_all(&dir)?;
    let cfg = synth_config(a, 1);
    let sites = cellshard_synth::select_sites(design, &cfg)?;
    if sites.len() < a.pool {
        bail!(
            "the design's first plate has {} sites, fewer than --pool {}",
            sites.len(),
            a.pool
        );
    }
    let path = |i: usize, c: u32| dir.join(format!("site{i:03}_w{c}.png"));
    let missing: Vec<(usize, u32)> = (0..a.pool)
        .flat_map(|i| (1..=6).map(move |c| (i, c)))
        .filter(|&(i, c)| !path(i, c).exists())
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "bench: rendering {} channel images into {} (once; kept for later runs)",
            missing.len(),
            dir.display()
        );
        let next = AtomicUsize::new(0);
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    s.spawn(|| -> Result<()> {
                        loop {
                            let k = next.fetch_add(1, Ordering::Relaxed);
                            let Some(&(i, c)) = missing.get(k) else {
                                return Ok(());
                            };
                            let px = cellshard_synth::render_channel(&cfg, &sites[i].meta, c);
                            let png = cellshard_synth::encode_png(&cfg, &px)?;
                            // Write then rename, so an interrupted run leaves no half file.
                            let tmp = path(i, c).with_extension("tmp");
                            std::fs::write(&tmp, png)?;
                            std::fs::rename(&tmp, path(i, c))?;
                        }
                    })
                })
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a render thread panicked"))?
            })
        })?;
    }
    (0..a.pool)
        .map(|i| {
            (1..=6)
                .map(|c| {
                    std::fs::read(path(i, c))
                        .with_context(|| format!("cannot read {}", path(i, c).display()))
                })
                .collect()
        })
        .collect()
}

/// `plates` full plates of the design laid out with hard links to the pool, plus their
/// metadata.csv; returns the layout root.
fn ensure_layout(
    a: &BenchArgs,
    design: &MetadataTable,
    cache: &Path,
    plates: u32,
) -> Result<PathBuf> {
    let wells = a.wells.map_or("all".to_string(), |w| w.to_string());
    let root = cache.join(format!(
        "plates-{}-p{plates}-w{wells}-pool{}",
        a.size, a.pool
    ));
    let done = root.join(".complete");
    if done.exists() {
        return Ok(root);
    }
    let cfg = synth_config(a, plates);
    let sites = cellshard_synth::select_sites(design, &cfg)?;
    let layout = LayoutTemplate::parse(RXRX1_LAYOUT)?;
    let pool_dir = cache.join(format!("pool-{}", a.size));
    for (j, site) in sites.iter().enumerate() {
        let m = &site.meta;
        for c in 1..=6 {
            let key = layout.render(&KeyFields {
                dataset: m.dataset.clone(),
                experiment: m.experiment.clone(),
                plate: m.plate,
                well: m.well.clone(),
                site: m.site.unwrap_or(1),
                channel: c,
            });
            let dst = root.join(&key);
            if dst.exists() {
                continue;
            }
            if let Some(parent) = dst.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let src = pool_dir.join(format!("site{:03}_w{c}.png", j % a.pool));
            std::fs::hard_link(&src, &dst)
                .or_else(|_| std::fs::copy(&src, &dst).map(|_| ()))
                .with_context(|| format!("cannot link {} to {}", src.display(), dst.display()))?;
        }
    }
    std::fs::write(
        root.join("metadata.csv"),
        cellshard_synth::metadata_csv(design, &sites)?,
    )?;
    std::fs::write(&done, format!("{} sites\n", sites.len()))?;
    eprintln!(
        "bench: laid out {} plate(s), {} sites, under {}",
        plates,
        sites.len(),
        root.display()
    );
    Ok(root)
}

/// Rounds of each ceiling measurement; the fastest counts (other load on the machine only
/// ever slows a round down).
const ROUNDS: usize = 3;

fn best_of(rounds: usize, mut f: impl FnMut() -> Result<CeilingRun>) -> Result<CeilingRun> {
    let mut best = f()?;
    for _ in 1..rounds {
        let r = f()?;
        if r.sites_per_second > best.sites_per_second {
            best = r;
        }
    }
    Ok(best)
}

/// Decode `n` sites (cycling through the pool) on `threads` threads.
fn decode_sites<T, E: std::fmt::Display + Send>(
    pool: &[Vec<Vec<u8>>],
    n: usize,
    threads: usize,
    decode: impl Fn(&[u8]) -> std::result::Result<T, E> + Sync,
) -> Result<CeilingRun> {
    let next = AtomicUsize::new(0);
    let cpu0 = cellshard_runtime::summary::cpu_seconds().unwrap_or(0.0);
    let start = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        if k >= n {
                            return Ok(());
                        }
                        for png in &pool[k % pool.len()] {
                            let plane = decode(png).map_err(|e| anyhow::anyhow!("decode: {e}"))?;
                            std::hint::black_box(plane);
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .map_err(|_| anyhow::anyhow!("a decode thread panicked"))?
        })
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let cpu = cellshard_runtime::summary::cpu_seconds().unwrap_or(0.0) - cpu0;
    Ok(CeilingRun {
        decoder: "",
        threads,
        sites: n,
        seconds,
        sites_per_second: n as f64 / seconds.max(1e-9),
        sites_per_cpu_second: if cpu > 0.0 { n as f64 / cpu } else { 0.0 },
    })
}

/// The pipeline file for the bench: `pipelines/rxrx1.toml`'s stages at `size`.
fn pipeline_toml(a: &BenchArgs, layout: &Path, store: &Path) -> String {
    let q = |p: &Path| {
        p.display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    };
    format!(
        r#"name = "bench"
description = "cellshard bench: raw {size}x{size} 16-bit -> 2x downsample -> {crop} crop -> percentile u8"

[source]
url = "{src}"
layout = "{RXRX1_LAYOUT}"
channels = 6

[metadata]
urls = ["{src}/metadata.csv"]

[[stages]]
kind = "decode"
bit_depth = 16
width = {size}
height = {size}

[[stages]]
kind = "downsample"
factor = 2

[[stages]]
kind = "center_crop"
size = {crop}

[[stages]]
kind = "normalize"
method = "percentile"
low = 0.1
high = 99.9
reference = "all"
output = "u8"

[sink]
url = "{store}"
zstd_level = {zstd}
row_group_size = "32MiB"
target_file_size = "256MiB"
"#,
        size = a.size,
        crop = a.size / 4,
        src = q(layout),
        store = q(store),
        zstd = a.zstd_level,
    )
}

/// Run `cellshard run` on the layout in a child process and read its summary.
fn run_pipeline(
    a: &BenchArgs,
    cache: &Path,
    layout: &Path,
    threads: usize,
    pin: bool,
) -> Result<PipelineRun> {
    let store = cache.join("store");
    let scratch = cache.join("scratch");
    if store.exists() {
        std::fs::remove_dir_all(&store)
            .with_context(|| format!("cannot clear {}", store.display()))?;
    }
    std::fs::create_dir_all(&scratch)?;
    let pipeline = cache.join("bench.toml");
    std::fs::write(&pipeline, pipeline_toml(a, layout, &store))?;
    let summary_path = cache.join("summary.json");
    let exe = std::env::current_exe().context("cannot find the cellshard executable")?;
    let pinned = pin && which_taskset();
    let mut cmd = if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.arg("run")
        .arg(&pipeline)
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--scratch")
        .arg(&scratch)
        .arg("--summary")
        .arg(&summary_path)
        .arg("--no-progress")
        .stdout(std::process::Stdio::null());
    if std::env::var_os("CELLSHARD_LOG").is_none() {
        // The Delta kernel logs a harmless error while it creates a table; keep the rest.
        cmd.env("CELLSHARD_LOG", "warn,buoyant_kernel=off");
    }
    eprintln!(
        "bench: pipeline on {threads} thread(s){} over {}",
        if pinned { ", pinned to core 0" } else { "" },
        layout.display()
    );
    let status = cmd.status().context("cannot start cellshard run")?;
    if !status.success() {
        bail!("cellshard run failed ({status})");
    }
    let summary: RunSummary = serde_json::from_slice(&std::fs::read(&summary_path)?)
        .context("cannot parse the run summary")?;
    std::fs::remove_dir_all(&store).ok();
    let wall = summary.seconds.total.max(1e-9);
    let run = PipelineRun {
        threads,
        pinned,
        plates: summary.plates,
        sites: summary.sites.stored,
        seconds: summary.seconds.total,
        sites_per_second: summary.sites_per_second,
        sites_per_cpu_second: if summary.cpu_seconds > 0.0 {
            summary.sites.stored as f64 / summary.cpu_seconds
        } else {
            0.0
        },
        write_seconds: summary.seconds.write,
        write_share: summary.seconds.write / wall,
        peak_rss_bytes: summary.peak_rss_bytes,
        bytes_out: summary.bytes_out,
    };
    eprintln!(
        "bench: {} sites in {:.1} s = {:.2} sites/s, peak RSS {:.0} MiB",
        run.sites,
        run.seconds,
        run.sites_per_second,
        run.peak_rss_bytes as f64 / (1 << 20) as f64
    );
    Ok(run)
}

fn which_taskset() -> bool {
    Command::new("taskset")
        .arg("-V")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
