//! The full pipeline under the bench: `pipelines/rxrx1.toml` at the bench's image size,
//! run by `cellshard run` in a child process (pinned to one core with `taskset` where asked
//! and available), whose own summary gives the figures.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use cellshard_core::layout::RXRX1_LAYOUT;
use cellshard_core::pipeline::Stages;
use cellshard_core::{Pipeline, Stage};
use cellshard_runtime::RunSummary;

use super::BenchArgs;
use super::report::PipelineRun;

/// The shipped RxRx1 pipeline, compiled in: the bench runs its stages.
const RXRX1_PIPELINE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../pipelines/rxrx1.toml"
));

/// `pipelines/rxrx1.toml` on the bench's synthetic plates: 16-bit `size` x `size` input
/// (the crop stays a quarter of the side), read from `layout`, written to `store` at the
/// bench's ZSTD level.
pub(super) fn bench_pipeline(a: &BenchArgs, layout: &Path, store: &Path) -> Result<Pipeline> {
    let mut p = Pipeline::from_toml("pipelines/rxrx1.toml", RXRX1_PIPELINE)?;
    let src = layout.display().to_string();
    p.name = "bench".into();
    p.description = format!(
        "cellshard-bench ingest: pipelines/rxrx1.toml on raw {size}x{size} 16-bit synthetic plates",
        size = a.size
    );
    p.metadata.urls = vec![format!("{src}/metadata.csv")];
    p.source.url = src;
    // The plates are laid out in this layout, six channels a site.
    p.source.layout = RXRX1_LAYOUT.into();
    p.source.channels = cellshard_core::Channels::Count(6);
    p.sink.url = store.display().to_string();
    p.sink.zstd_level = a.zstd_level;
    let mut stages = p.stages.list().to_vec();
    for stage in &mut stages {
        match stage {
            Stage::Decode {
                bit_depth,
                width,
                height,
                ..
            } => {
                *bit_depth = 16;
                *width = Some(a.size);
                *height = Some(a.size);
            }
            Stage::CenterCrop { size } => *size = a.size / 4,
            Stage::Downsample { .. } | Stage::Normalize { .. } | Stage::Illumination { .. } => {}
        }
    }
    p.stages = Stages::new(stages).map_err(anyhow::Error::msg)?;
    Ok(p)
}

/// Write `pipeline` as the TOML file `cellshard run` reads, and check that it reads back as
/// the same pipeline.
fn write_pipeline(pipeline: &Pipeline, path: &Path) -> Result<()> {
    let text = toml::to_string(pipeline).context("cannot write the bench pipeline as TOML")?;
    let back = Pipeline::from_toml(&path.display().to_string(), &text)?;
    ensure!(
        &back == pipeline,
        "the bench pipeline does not read back as written:\n{text}"
    );
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Run `cellshard run` on the layout in a child process and read its summary.
pub(super) fn run_pipeline(
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
    write_pipeline(&bench_pipeline(a, layout, &store)?, &pipeline)?;
    let summary_path = cache.join("summary.json");
    // `CELLSHARD_EXE` measures another build of the command (an installed one); by default
    // this binary runs as `cellshard`.
    let (exe, prefix) = match std::env::var_os("CELLSHARD_EXE") {
        Some(exe) => (std::path::PathBuf::from(exe), None),
        None => (
            std::env::current_exe().context("cannot find the bench executable")?,
            Some(crate::AS_CELLSHARD),
        ),
    };
    let pinned = pin && which_taskset();
    let mut cmd = if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", "0"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.args(prefix)
        .arg("run")
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
