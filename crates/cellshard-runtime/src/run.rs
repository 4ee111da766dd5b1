//! A run: load the pipeline's metadata, list the source, process this worker's plates one
//! by one (parallel within the plate), commit each plate, then record the run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use cellshard_core::PlateKey;
use cellshard_core::RejectReason;
use cellshard_store::StoreTables;
use cellshard_store::io::ByteBudget;
use cellshard_store::schema::{RejectRow, RunRow, SitesContext};
use cellshard_store::table::{ShardSettings, rows_per_group};

use crate::discover::{Discovered, discover, metadata_by_plate, object_count, rows_without_images};
use crate::fingerprint::plate_fingerprint;
use crate::options::RunOptions;
use crate::phase1::{DecodedPlate, decode_plate};
use crate::phase2::write_plate;
use crate::plate::{Counters, PlateJob, PlateReport};
use crate::pool::CpuPool;
use crate::resolve::resolve_plate;
use crate::select::PlateSelection;
use crate::summary::{ObjectCounts, RunSummary, StageSeconds};
use crate::{Error, Result};

/// Read one object named by a URL or path ([`cellshard_store::io::read_object`]), failing
/// with the runtime's error.
pub async fn read_object(text: &str, options: &BTreeMap<String, String>) -> Result<bytes::Bytes> {
    Ok(cellshard_store::io::read_object(text, options).await?)
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// A run's id: the start time to the microsecond, 32 random bits (two runs started in the
/// same microsecond, a retried pod beside its first attempt, still differ, and so do
/// their shard paths and build ids) and the worker's share.
fn new_run_id(index: u32, count: u32) -> String {
    use std::hash::BuildHasher;
    let now = chrono::Utc::now();
    // RandomState is seeded from the OS's randomness for each process and differs per call.
    let noise = std::collections::hash_map::RandomState::new().hash_one(now.timestamp_micros());
    format!(
        "{}-{:08x}-w{index}of{count}",
        now.format("%Y%m%dT%H%M%S%.6fZ"),
        noise >> 32
    )
}

/// Run the pipeline and return its summary. Bad input never fails the run; it becomes
/// reject rows. The run fails on configuration, store and internal errors.
pub async fn run(opts: RunOptions) -> Result<RunSummary> {
    let wall = Instant::now();
    let started_us = now_us();
    let p = &opts.pipeline;
    let transform = p.transform();
    if opts.threads > crate::pool::MAX_THREADS {
        return Err(Error::Usage(format!(
            "{} CPU threads: at most {} (0: one per core)",
            opts.threads,
            crate::pool::MAX_THREADS
        )));
    }
    if opts.prune && (opts.selection != PlateSelection::default() || opts.worker.index != 0) {
        return Err(Error::Selection(
            "--prune needs a run over every plate (no --plates, --experiments or --plate-index; \
             worker 0)"
                .into(),
        ));
    }
    let Discovered {
        source,
        sink,
        metadata,
        listing,
        list_seconds,
    } = discover(&opts).await?;
    cellshard_store::pause::point("after-listing").await;
    let colliding = SitesContext::colliding_columns(metadata.extra_columns());
    if !colliding.is_empty() {
        return Err(Error::Config(cellshard_core::Error::Metadata {
            path: p.metadata.urls.join(", "),
            message: format!(
                "column(s) {} take the name of a column the store writes itself; rename them in the CSV (for example to meta_{})",
                colliding.join(", "),
                colliding[0]
            ),
        }));
    }
    if !opts.dry_run {
        sink.create_local_dir()?;
    }
    let run_id = new_run_id(opts.worker.index, opts.worker.count);

    let (height, width) = transform.output_shape();
    let sites_ctx = SitesContext {
        extra_columns: metadata.extra_columns().to_vec(),
        shape: [p.source.channels.count(), height, width],
        channel_names: p.source.channels.names(),
        dtype: transform.output.numpy_name().into(),
        pipeline: p.name.clone(),
        pipeline_hash: p.hash(),
        run_id: run_id.clone(),
    };
    let tensor_bytes = u64::from(p.source.channels.count())
        * u64::from(height)
        * u64::from(width)
        * transform.output.size() as u64;
    let shard = ShardSettings {
        codec: p.sink.tensor_codec,
        zstd_level: p.sink.zstd_level,
        rows_per_group: rows_per_group(p.sink.row_group_size.bytes(), tensor_bytes),
        target_file_size: p.sink.target_file_size.bytes(),
    };

    let mut summary = RunSummary {
        run_id: run_id.clone(),
        pipeline: p.name.clone(),
        pipeline_hash: sites_ctx.pipeline_hash.clone(),
        worker: format!("{}/{}", opts.worker.index, opts.worker.count),
        source: source.url.to_string(),
        sink: sink.url.to_string(),
        dry_run: opts.dry_run,
        ..Default::default()
    };
    summary.objects = ObjectCounts {
        discovered: listing.objects,
        ignored: listing.ignored.values().sum(),
        other_workers: listing.other_workers,
        unselected: listing.unselected,
        rejected: listing.rejects.len() as u64,
        stored: 0,
        unchanged: 0,
    };
    summary.ignored_by_reason = listing.ignored.clone();
    summary.metadata_errors = metadata.row_errors.iter().map(|e| e.to_string()).collect();
    let mut run_rejects: Vec<RejectRow> = listing.rejects.clone();
    run_rejects.extend(metadata.row_errors.iter().map(|e| RejectRow {
        site_id: None,
        experiment: None,
        plate: None,
        object_path: Some(e.at.clone()),
        reason: RejectReason::BadMetadataRow,
        message: e.message.clone(),
    }));
    let count_reject = |summary: &mut RunSummary, rows: &[RejectRow]| {
        for r in rows {
            *summary
                .rejects_by_reason
                .entry(r.reason.code().to_string())
                .or_default() += 1;
        }
    };
    count_reject(&mut summary, &run_rejects);

    let listing_plates = listing.all_plates.clone();
    let total_sites: u64 = listing.plates.values().map(|s| s.len() as u64).sum();
    let bar = progress_bar(opts.progress && !opts.dry_run, total_sites * 2);
    let counters = Counters::default();
    let pool = CpuPool::new(opts.threads)?;
    let inflight = if opts.inflight == 0 {
        pool.threads() * 2
    } else {
        opts.inflight
    };
    let scratch = opts.scratch.clone().unwrap_or_else(std::env::temp_dir);
    let budget = ByteBudget::new(
        p.source
            .max_inflight
            .bytes()
            .clamp(1 << 20, u64::from(u32::MAX >> 4) << 10),
    );
    // Free read buffers are capped at the in-flight budget, which bounds the buffers in use.
    let read_buffers = Arc::new(cellshard_store::ReadBuffers::new(
        usize::try_from(p.source.max_inflight.bytes()).unwrap_or(usize::MAX),
    ));
    let on_progress = |n: u64| {
        if let Some(b) = &bar {
            b.set_position(n);
        }
    };
    let job = PlateJob {
        source: &source,
        transform,
        channels: p.source.channels.count(),
        illum_files: p.illumination_files(),
        qc: p.qc(),
        pool: &pool,
        inflight,
        budget: &budget,
        read_buffers: &read_buffers,
        scratch: &scratch,
        sites_ctx: &sites_ctx,
        shard,
        rows_per_file: rows_per_group(p.sink.target_file_size.bytes(), tensor_bytes),
        counters: &counters,
        on_progress: &on_progress,
    };

    let mut tables = if opts.dry_run {
        None
    } else {
        Some(StoreTables::open_or_create(&sink, &sites_ctx.schema()).await?)
    };
    let rows_by_plate = metadata_by_plate(&metadata);
    let account = |summary: &mut RunSummary,
                   plate: &PlateKey,
                   objects: u64,
                   report: PlateReport|
     -> Result<()> {
        summary.plates_built += 1;
        summary.sites.stored += report.sites_stored;
        summary.objects.stored += report.objects_stored;
        summary.objects.rejected += report.rejects.len() as u64;
        count_reject(summary, &report.rejects);
        if report.objects_stored + report.rejects.len() as u64 != objects {
            return Err(Error::Conservation(format!(
                "plate {plate}: {objects} objects, {} stored + {} rejected",
                report.objects_stored,
                report.rejects.len()
            )));
        }
        Ok(())
    };
    // The plates, in an inner block: a failure still leaves the run's row in `runs`.
    let outcome: Result<()> = async {
        let mut pending: Option<(PlateKey, u64, DecodedPlate)> = None;
        for (plate, sites) in listing.plates {
            summary.plates += 1;
            summary.sites.discovered += sites.len() as u64;
            if let Some(rows) = rows_by_plate.get(&plate) {
                summary.metadata_rows_without_images += rows_without_images(rows, &sites);
            }
            let objects = object_count(&sites);
            let illum = crate::illum::plate_files(&source, p, &plate).await;
            let fingerprint = plate_fingerprint(p, &plate, &sites, &metadata, &illum);
            if let Some(tables) = tables.as_ref()
                && opts.incremental
                && tables
                    .plate_fingerprint(&plate.experiment, plate.plate as i32)
                    .await?
                    == Some(fingerprint)
                && tables.plate_is_whole(&plate.experiment, plate.plate as i32)?
            {
                summary.plates_unchanged += 1;
                summary.objects.unchanged += objects;
                summary.sites.unchanged += sites.len() as u64;
                continue;
            }
            let (good, rejects) = resolve_plate(sites, &metadata, p.source.channels.count());
            if let Some(tables) = tables.as_mut() {
                if let Some(b) = &bar {
                    b.set_message(plate.to_string());
                }
                // This plate's phase 1 runs while the previous plate is written and committed.
                let decode = decode_plate(&job, &plate, good, rejects, fingerprint);
                let decoded = match pending.take() {
                    Some((prev, prev_objects, prev_decoded)) => {
                        let (decoded, written) =
                            tokio::join!(decode, write_plate(&job, tables, prev_decoded));
                        account(&mut summary, &prev, prev_objects, written?)?;
                        decoded?
                    }
                    None => decode.await?,
                };
                pending = Some((plate, objects, decoded));
            } else {
                // Dry run: discovery verdicts only.
                summary.objects.stored += good.iter().map(|s| s.objects.len() as u64).sum::<u64>();
                summary.sites.stored += good.len() as u64;
                summary.objects.rejected += rejects.len() as u64;
                count_reject(&mut summary, &rejects);
            }
        }
        if let (Some(tables), Some((prev, objects, decoded))) = (tables.as_mut(), pending.take()) {
            let report = write_plate(&job, tables, decoded).await?;
            account(&mut summary, &prev, objects, report)?;
        }
        if let Some(b) = &bar {
            b.finish_and_clear();
        }
        if let Some(tables) = tables.as_mut() {
            vanished_plates(tables, &listing_plates, &opts, &mut summary).await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = outcome {
        if let Some(tables) = tables.as_mut() {
            summary.error = Some(e.to_string());
            summary.seconds.total = wall.elapsed().as_secs_f64();
            let row = run_row(&run_id, &summary, started_us);
            // Best effort: the run's own error is what the caller gets.
            if let Err(again) = tables.commit_run(&row, &[], false).await {
                tracing::warn!("the failed run's row was not recorded: {again}");
            }
        }
        return Err(e);
    }
    summary.sites.rejected =
        summary.sites.discovered - summary.sites.stored - summary.sites.unchanged;
    let secs = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed) as f64 / 1e9;
    summary.bytes_in = counters.bytes_in.load(Ordering::Relaxed);
    summary.bytes_out = counters.bytes_out.load(Ordering::Relaxed);
    let attempted = summary.objects.stored + summary.objects.rejected;
    summary.reject_fraction = if attempted == 0 {
        0.0
    } else {
        summary.objects.rejected as f64 / attempted as f64
    };
    summary.conservation().map_err(Error::Conservation)?;
    let o = &summary.objects;
    summary.conservation = format!("{} discovered = {}", o.discovered, o.parts());
    summary.seconds = StageSeconds {
        list: list_seconds,
        read: secs(&counters.read_ns),
        decode: secs(&counters.decode_ns),
        normalize: secs(&counters.normalize_ns),
        write: secs(&counters.write_ns),
        total: wall.elapsed().as_secs_f64(),
    };
    summary.peak_inflight_bytes = counters.peak_inflight_kib.load(Ordering::Relaxed) * 1024;
    summary.retries = source.stats.retries() + sink.stats.retries();
    summary.requests =
        source.stats.requests.load(Ordering::Relaxed) + sink.stats.requests.load(Ordering::Relaxed);
    summary.sites_per_second = summary.sites.stored as f64 / summary.seconds.total.max(1e-9);
    summary.cpu_seconds = crate::summary::cpu_seconds().unwrap_or(0.0);
    summary.peak_rss_bytes = crate::summary::peak_rss_bytes().unwrap_or(0);

    if let Some(tables) = tables.as_mut() {
        let row = run_row(&run_id, &summary, started_us);
        tables
            .commit_run(&row, &run_rejects, opts.worker.index == 0)
            .await?;
    }
    Ok(summary)
}

/// The `runs` row of a run that started at `started_us` and ends now.
fn run_row(run_id: &str, summary: &RunSummary, started_us: i64) -> RunRow {
    RunRow {
        run_id: run_id.to_string(),
        pipeline: summary.pipeline.clone(),
        pipeline_hash: summary.pipeline_hash.clone(),
        worker: summary.worker.clone(),
        started_us,
        finished_us: now_us(),
        counts: summary.run_counts(),
        seconds: summary.run_seconds(),
        summary_json: serde_json::to_string(summary).unwrap_or_default(),
    }
}

/// Plates the store holds but the source no longer has: reported, and with `--prune`
/// removed.
async fn vanished_plates(
    tables: &mut StoreTables,
    listed: &std::collections::BTreeSet<PlateKey>,
    opts: &RunOptions,
    summary: &mut RunSummary,
) -> Result<()> {
    for (experiment, plate) in tables.published_plates()? {
        // A negative plate number is never listed: listed plates are unsigned.
        let is_listed = u32::try_from(plate).is_ok_and(|plate| {
            listed.contains(&PlateKey {
                experiment: experiment.clone(),
                plate,
            })
        });
        if is_listed {
            continue;
        }
        summary
            .plates_vanished
            .push(format!("{experiment}/{plate}"));
        if opts.prune {
            tables.prune_plate(&experiment, plate).await?;
            summary.plates_pruned += 1;
        }
    }
    Ok(())
}

fn progress_bar(enabled: bool, len: u64) -> Option<indicatif::ProgressBar> {
    if !enabled {
        return None;
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} site-steps ({per_sec}, ETA {eta}) {msg}",
    ) {
        bar.set_style(style);
    }
    Some(bar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_made_together_differ() {
        let ids: std::collections::BTreeSet<String> = (0..1000).map(|_| new_run_id(0, 1)).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| id.ends_with("-w0of1")));
    }
}
