//! Phase 2 of a plate: normalize and stack the spilled sites on the CPU pool, write them
//! as `sites` shard files through the store's [`PlateWriter`], and publish the plate.
//!
//! The plate's sites are cut, in order, into files of `rows_per_file` rows, so the files
//! depend on the pipeline alone, never on the thread count. Up to one file per pool thread
//! ([`MAX_FILE_WRITERS`] at most) is written at once; each row group is encoded (ZSTD
//! included) by a pool job while its file's upload streams on the async runtime.

use std::sync::Arc;
use std::time::Instant;

use cellshard_stages::PlateNorm;
use cellshard_stages::tensor::stack;
use cellshard_store::schema::SiteRow;
use cellshard_store::{PlateWriter, ShardWriter, StoreTables, WrittenFile};
use futures::{StreamExt, TryStreamExt};

use crate::discover::ResolvedSite;
use crate::phase1::DecodedPlate;
use crate::plate::{MAX_FILE_WRITERS, PlateJob, PlateReport, add_ns, nanos};
use crate::spill::Spilled;
use crate::{Error, Result};

/// Phase 2 of a plate; see the module docs.
pub async fn write_plate(
    job: &PlateJob<'_>,
    tables: &mut StoreTables,
    decoded: DecodedPlate,
) -> Result<PlateReport> {
    let DecodedPlate {
        build,
        spilled,
        spill_file,
        rejects,
        stats,
        norms,
    } = decoded;
    let mut report = PlateReport::default();
    let mut writer = PlateWriter::new(tables, job.sites_ctx, &job.shard, build)?;
    let mut adds = Vec::new();
    let file = Arc::new(spill_file);
    if !spilled.is_empty() {
        let norm = Arc::new(PlateNorm::new(norms, job.transform.output));
        let per_file = job.rows_per_file.max(1);
        let mut files: Vec<(Vec<Spilled>, ShardWriter)> = Vec::new();
        let mut rest = spilled.into_iter().peekable();
        while rest.peek().is_some() {
            let chunk: Vec<Spilled> = rest.by_ref().take(per_file).collect();
            files.push((chunk, writer.shard().await?));
        }
        let writers = job
            .pool
            .threads()
            .min(MAX_FILE_WRITERS)
            .clamp(1, files.len());
        // The sites in flight are shared among the files being written.
        let inflight = (job.inflight / writers).max(2);
        let mut written = futures::stream::iter(files)
            .map(|(chunk, shard)| write_file(job, shard, chunk, &norm, &file, inflight))
            .buffered(writers);
        while let Some((add, sites, objects)) = written.try_next().await? {
            adds.push(add);
            report.sites_stored += sites;
            report.objects_stored += objects;
        }
    }
    // Closing the last handle frees the plate's whole spill (1.9 GB for a full raw plate),
    // which takes the kernel about a second: not on the task that feeds the CPU pool.
    tokio::task::spawn_blocking(move || drop(file));
    let started = Instant::now();
    report.rejects = rejects.clone();
    cellshard_store::pause::point("before-publish").await;
    report.commit = tables.publish(writer.finish(adds, stats, rejects)).await?;
    add_ns(&job.counters.write_ns, started);
    job.counters.bytes_out.fetch_add(
        report.commit.bytes_written,
        std::sync::atomic::Ordering::Relaxed,
    );
    Ok(report)
}

/// Write one shard file: read its sites back from the spill, normalize and stack them on
/// the pool, and encode them a row group at a time. Returns the file's `Add` action
/// (uploaded, not yet committed) and the sites and objects it holds.
async fn write_file(
    job: &PlateJob<'_>,
    mut shard: ShardWriter,
    chunk: Vec<Spilled>,
    norm: &Arc<PlateNorm>,
    file: &Arc<std::fs::File>,
    inflight: usize,
) -> Result<(WrittenFile, u64, u64)> {
    let rows_per_group = job.shard.rows_per_group.max(1);
    let mut rows: Vec<SiteRow> = Vec::with_capacity(rows_per_group);
    let (mut sites, mut objects) = (0u64, 0u64);
    let mut stream = futures::stream::iter(chunk)
        .map(|s| {
            let norm = norm.clone();
            let file = file.clone();
            async move {
                let started = Instant::now();
                let site_id = s.site.key.site_id();
                let out = job
                    .pool
                    .run(
                        || format!("site {site_id}"),
                        move || {
                            let planes = s.read(&file)?;
                            Ok::<_, std::io::Error>((s.site, s.qc, stack(&planes, &norm)))
                        },
                    )
                    .await?;
                add_ns(&job.counters.normalize_ns, started);
                out.map_err(|source| Error::Scratch {
                    dir: job.scratch.display().to_string(),
                    source,
                })
            }
        })
        .buffered(inflight);
    while let Some((site, qc, tensor)) = stream.try_next().await? {
        sites += 1;
        objects += site.objects.len() as u64;
        rows.push(site_row(site, qc, tensor));
        if rows.len() == rows_per_group {
            shard = write_rows(job, shard, &mut rows).await?;
            if usize::try_from(sites) == Ok(rows_per_group) {
                cellshard_store::pause::point("in-phase2").await;
            }
        }
        job.progress();
    }
    if !rows.is_empty() {
        let first = usize::try_from(sites) == Ok(rows.len());
        shard = write_rows(job, shard, &mut rows).await?;
        if first {
            cellshard_store::pause::point("in-phase2").await;
        }
    }
    let started = Instant::now();
    let shard = job
        .pool
        .run(
            || "closing a shard file".into(),
            move || shard.close().map(|()| shard),
        )
        .await??;
    let add = shard.finish().await?;
    add_ns(&job.counters.write_ns, started);
    Ok((add, sites, objects))
}

fn site_row(
    site: ResolvedSite,
    qc: cellshard_store::schema::SiteQcRow,
    tensor: cellshard_stages::SiteTensor,
) -> SiteRow {
    let m = site.meta;
    SiteRow {
        site_id: site.key.site_id(),
        well_id: site.key.well_id(),
        cell_type: m.cell_type,
        dataset: site.dataset,
        experiment: site.key.experiment,
        plate: site.key.plate as i32,
        well: site.key.well,
        site: site.key.site as i32,
        well_type: m.well_type,
        sirna_id: m.sirna_id,
        extra: m.extra,
        channel_mean: tensor.channel_mean,
        channel_std: tensor.channel_std,
        raw_channel_mean: tensor.raw_mean,
        qc,
        source_paths: site.objects.iter().map(|o| o.display.clone()).collect(),
        source_etags: site.objects.iter().map(|o| o.etag.clone()).collect(),
        source_sizes: site.objects.iter().map(|o| o.size as i64).collect(),
        tensor: tensor.bytes,
    }
}

/// Encode `rows` as one row group of `shard` on the CPU pool (Parquet encoding and ZSTD
/// are most of a shard's cost), after waiting for the file's upload to keep up.
async fn write_rows(
    job: &PlateJob<'_>,
    mut shard: ShardWriter,
    rows: &mut Vec<SiteRow>,
) -> Result<ShardWriter> {
    shard.wait_for_capacity().await?;
    let batch = std::mem::take(rows);
    // The writer's busy time is counted on the pool, not the wait for a pool thread.
    let (shard, mut batch, busy) = job
        .pool
        .run(
            || "encoding a shard row group".into(),
            move || {
                let started = Instant::now();
                let out = shard.write(&batch).map(|()| shard);
                (out, batch, started.elapsed())
            },
        )
        .await?;
    job.counters
        .write_ns
        .fetch_add(nanos(busy), std::sync::atomic::Ordering::Relaxed);
    batch.clear();
    *rows = batch;
    Ok(shard?)
}
