//! One plate, two phases.
//!
//! Phase 1 fetches each site's channel files, decodes them through the crop-aware decoder
//! (decode, downsample, center crop in one pass), adds the reference sites' pixels to the
//! plate's exact per-channel histograms and spills the cropped u16 planes, uncompressed,
//! to a scratch file (the pool job that decoded a site writes it, at a range it reserves,
//! so the task that hands out work never waits on the disk). Phase 2 derives the plate
//! normalization, reads the spill back in site order, maps and stacks each site on the CPU
//! pool, and writes the plate as shard files of `target_file_size` (uncompressed tensor
//! bytes) each, up to one file per pool thread at a time, every row group encoded on the
//! pool; the plate is then committed in one transaction. The run overlaps a plate's phase 2
//! with the next plate's phase 1.
//!
//! The spill is not compressed because it did not pay: zstd level 1 shrank cropped
//! 16-bit synthetic planes only 1.29x (the low bits are camera noise) at about 15 ms of CPU
//! per site to compress and read back, 7% of a site's whole cost, to save 0.7 MB of
//! scratch per site.
//!
//! Memory bound per plate: `inflight` sites in flight (their PNG bytes, ~6 x 8 MB for raw
//! RxRx1, read into buffers that are reused and never outnumber those once in use at the
//! same time, and their decoded planes), one merged histogram set (6 x 512 KiB), and, per
//! file being written (at most [`MAX_FILE_WRITERS`]), one row group of tensors plus the
//! writer's encode buffer. A spill file holds a plate's cropped planes on disk: 3 MB per
//! site of raw RxRx1, 1.9 GB for a full plate of 616 sites, two such files at a time.

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cellshard_core::pipeline::Transform;
use cellshard_core::{PlateKey, RejectReason};
use cellshard_stages::decode::{DecodeErrorKind, decode_transformed};
use cellshard_stages::tensor::stack;
use cellshard_stages::{ChannelNorm, DecodeSpec, Histogram, Plane, PlateNorm};
use cellshard_store::schema::{PlateStatRow, RejectRow, SiteRow, SitesContext};
use cellshard_store::table::{PlateCommit, ShardSettings};
use cellshard_store::{Location, PlateScope, StoreTables};
use deltalake::kernel::Add;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;

use crate::discover::{ObjectRef, ResolvedSite};
use crate::pool::CpuPool;
use crate::{Error, Result};

/// Time and byte counters shared by all plates of a run.
#[derive(Debug, Default)]
pub struct Counters {
    /// Nanoseconds spent waiting on GETs (summed over concurrent requests).
    pub read_ns: AtomicU64,
    /// CPU nanoseconds in decode, downsample, crop, histogram and spill.
    pub decode_ns: AtomicU64,
    /// CPU nanoseconds in normalize and stack.
    pub normalize_ns: AtomicU64,
    /// Nanoseconds writing and committing shards.
    pub write_ns: AtomicU64,
    /// Source bytes read.
    pub bytes_in: AtomicU64,
    /// Shard bytes written.
    pub bytes_out: AtomicU64,
    /// Sites finished (phase 1 and phase 2 each count once), for progress.
    pub progress: AtomicU64,
    /// KiB of source bytes reserved right now (fetched or being fetched, not yet decoded).
    pub inflight_kib: AtomicU64,
    /// The most KiB ever reserved at once.
    pub peak_inflight_kib: AtomicU64,
}

/// A reservation of the read budget; releases its share of the counters when dropped.
struct Reservation<'a> {
    _permit: tokio::sync::SemaphorePermit<'a>,
    kib: u64,
    counters: &'a Counters,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.counters
            .inflight_kib
            .fetch_sub(self.kib, Ordering::Relaxed);
    }
}

fn add_ns(c: &AtomicU64, since: Instant) {
    c.fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
}

/// Everything a plate needs that does not change between plates.
pub struct PlateJob<'a> {
    /// Image source.
    pub source: &'a Location,
    /// The transform.
    pub transform: Transform,
    /// Channels per site.
    pub channels: u32,
    /// CPU pool.
    pub pool: &'a CpuPool,
    /// Sites in flight at once.
    pub inflight: usize,
    /// Budget of fetched-but-undecoded source bytes, in KiB permits.
    pub budget: &'a tokio::sync::Semaphore,
    /// Size of the whole budget in KiB permits.
    pub budget_kib: u32,
    /// Buffers for local files, reused between sites.
    pub read_buffers: &'a Arc<ReadBuffers>,
    /// Scratch directory for the spill file.
    pub scratch: &'a std::path::Path,
    /// Shared columns of the `sites` rows.
    pub sites_ctx: &'a SitesContext,
    /// Parquet settings.
    pub shard: ShardSettings,
    /// Rows per shard file (the plate's sites are cut into files of this many, in order).
    pub rows_per_file: usize,
    /// Counters.
    pub counters: &'a Counters,
    /// Progress callback (sites finished so far in this run).
    pub on_progress: &'a (dyn Fn(u64) + Sync),
}

/// What happened to a plate.
#[derive(Debug, Default, Clone)]
pub struct PlateReport {
    /// Sites stored.
    pub sites_stored: u64,
    /// Objects stored.
    pub objects_stored: u64,
    /// Reject rows written for the plate (one per object).
    pub rejects: Vec<RejectRow>,
    /// The commit.
    pub commit: PlateCommit,
}

/// Where a site's planes are in the spill file: one `width x height` plane of
/// little-endian u16 samples per channel, one after another from `offset`.
struct Spilled {
    site: ResolvedSite,
    offset: u64,
    planes: u64,
    width: u32,
    height: u32,
}

enum Phase1 {
    /// Decoded and spilled: `planes` planes of `width x height` from `offset`.
    Ok {
        offset: u64,
        planes: u64,
        width: u32,
        height: u32,
    },
    Rejected(Vec<RejectRow>),
    /// The scratch file could not be written: fails the run.
    SpillFailed(std::io::Error),
}

/// The spill file of a plate in phase 1: each site's planes go to the next free range,
/// written by the pool job that decoded them, so a disk that stalls writes stalls one pool
/// thread, never the task that hands out work.
struct SpillFile {
    file: std::fs::File,
    next: AtomicU64,
}

impl SpillFile {
    fn append(&self, planes: &[Plane]) -> std::io::Result<u64> {
        let bytes: Vec<_> = planes.iter().map(Plane::le_bytes).collect();
        let len: u64 = bytes.iter().map(|b| b.len() as u64).sum();
        let start = self.next.fetch_add(len, Ordering::Relaxed);
        let mut at = start;
        for b in &bytes {
            self.file.write_all_at(b, at)?;
            at += b.len() as u64;
        }
        Ok(start)
    }
}

async fn fetch(
    source: &Location,
    obj: &ObjectRef,
    counters: &Counters,
    buffers: &Arc<ReadBuffers>,
) -> std::result::Result<bytes::Bytes, String> {
    let t = Instant::now();
    let res = async {
        let r = source.store.get(&obj.path).await?;
        body(r, buffers).await
    }
    .await;
    add_ns(&counters.read_ns, t);
    match res {
        Ok(b) => {
            counters
                .bytes_in
                .fetch_add(b.len() as u64, Ordering::Relaxed);
            Ok(b)
        }
        Err(e) => Err(format!("cannot read {}: {e}", obj.display)),
    }
}

/// The body of a GET. A local file is read straight into a buffer from `buffers`: the
/// `object_store` helper zero-fills a new buffer before reading into it, which cost 1-2% of
/// a site's CPU. Every other store streams as usual.
async fn body(
    r: object_store::GetResult,
    buffers: &Arc<ReadBuffers>,
) -> object_store::Result<bytes::Bytes> {
    let object_store::GetResult {
        payload,
        meta,
        range,
        attributes,
    } = r;
    match payload {
        object_store::GetResultPayload::File(file, path) => {
            let generic =
                |source: Box<dyn std::error::Error + Send + Sync>| object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source,
                };
            let buffers = Arc::clone(buffers);
            tokio::task::spawn_blocking(move || {
                read_range(&file, range, &buffers)
                    .map_err(|e| generic(format!("{}: {e}", path.display()).into()))
            })
            .await
            .map_err(|e| generic(Box::new(e)))?
        }
        payload => {
            object_store::GetResult {
                payload,
                meta,
                range,
                attributes,
            }
            .bytes()
            .await
        }
    }
}

/// Read `range` of `file` into a buffer from `buffers`, without filling it first; the buffer
/// goes back to `buffers` when the last handle on the bytes drops.
fn read_range(
    file: &std::fs::File,
    range: std::ops::Range<u64>,
    buffers: &Arc<ReadBuffers>,
) -> std::io::Result<bytes::Bytes> {
    use std::io::{Read, Seek, SeekFrom};
    let len = range.end - range.start;
    let mut f = file;
    f.seek(SeekFrom::Start(range.start))?;
    let mut buf = buffers.take(len as usize);
    f.take(len).read_to_end(&mut buf)?;
    if buf.len() as u64 != len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the file ended after {} of {len} bytes", buf.len()),
        ));
    }
    Ok(bytes::Bytes::from_owner(Pooled {
        buf,
        home: Arc::clone(buffers),
    }))
}

/// Free read buffers, kept up to a byte cap. A new buffer for every file had the kernel
/// zero fresh pages for each site's ~27 MB of raw PNGs (`clear_page_erms`, 5% of a site's
/// CPU): the allocator hands buffers that large back to the system when they are freed.
#[derive(Debug)]
pub struct ReadBuffers {
    free: Mutex<Vec<Vec<u8>>>,
    cap_bytes: usize,
}

/// Buffer capacities are rounded up to this, so files of slightly different sizes share.
const READ_BUFFER_STEP: usize = 1 << 20;

impl ReadBuffers {
    /// A pool that keeps at most `cap_bytes` of free buffers.
    pub fn new(cap_bytes: usize) -> Self {
        ReadBuffers {
            free: Mutex::new(Vec::new()),
            cap_bytes,
        }
    }

    /// An empty buffer with room for `len` bytes: the smallest free one that fits, else a
    /// new one in place of the largest free one (which is dropped), so the pool never holds
    /// more buffers than were once in use at the same time.
    fn take(&self, len: usize) -> Vec<u8> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let fit = free
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        if let Some(i) = fit {
            return free.swap_remove(i);
        }
        if let Some(i) = (0..free.len()).max_by_key(|&i| free[i].capacity()) {
            drop(free.swap_remove(i));
        }
        drop(free);
        Vec::with_capacity(len.div_ceil(READ_BUFFER_STEP) * READ_BUFFER_STEP)
    }

    /// Free every buffer held.
    pub fn release(&self) {
        let taken = std::mem::take(&mut *self.free.lock().unwrap_or_else(|e| e.into_inner()));
        drop(taken);
    }

    /// Keep `buf` for reuse if the cap allows.
    fn give(&self, mut buf: Vec<u8>) {
        buf.clear();
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let held: usize = free.iter().map(Vec::capacity).sum();
        if held + buf.capacity() <= self.cap_bytes {
            free.push(buf);
        }
    }

    /// Bytes of free buffers held.
    #[cfg(test)]
    fn held(&self) -> usize {
        let free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        free.iter().map(Vec::capacity).sum()
    }
}

/// A buffer lent to [`bytes::Bytes`], returned to its pool on drop.
struct Pooled {
    buf: Vec<u8>,
    home: Arc<ReadBuffers>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.home.give(std::mem::take(&mut self.buf));
    }
}

fn site_rejects(site: &ResolvedSite, reason: RejectReason, message: &str) -> Vec<RejectRow> {
    site.objects
        .iter()
        .map(|o| RejectRow {
            site_id: Some(site.key.site_id()),
            experiment: Some(site.key.experiment.clone()),
            plate: Some(site.key.plate as i32),
            object_path: Some(o.display.clone()),
            stage: reason.stage().into(),
            reason: reason.code().into(),
            message: message.to_string(),
        })
        .collect()
}

/// Decode one site's channel files and add them to the histograms.
fn phase1_cpu(
    site: &ResolvedSite,
    files: &[bytes::Bytes],
    spec: &DecodeSpec,
    t: &Transform,
    hist: Option<&Mutex<Vec<Histogram>>>,
    spill: &SpillFile,
) -> Phase1 {
    let mut planes: Vec<Plane> = Vec::with_capacity(files.len());
    for (obj, bytes) in site.objects.iter().zip(files) {
        match decode_transformed(bytes, spec, t.factor, t.crop) {
            Ok(p) => planes.push(p),
            Err(e) => {
                let reason = match e.kind {
                    DecodeErrorKind::Corrupt => RejectReason::Decode,
                    DecodeErrorKind::Format => RejectReason::Format,
                };
                let msg = format!("site {}: {}: {e}", site.key.site_id(), obj.display);
                return Phase1::Rejected(site_rejects(site, reason, &msg));
            }
        }
    }
    if let Some(first) = planes.first()
        && let Some((i, p)) = planes
            .iter()
            .enumerate()
            .find(|(_, p)| (p.width, p.height) != (first.width, first.height))
    {
        {
            let msg = format!(
                "site {}: channel files disagree in size: {} gives {}x{}, {} gives {}x{}",
                site.key.site_id(),
                site.objects[0].display,
                first.width,
                first.height,
                site.objects[i].display,
                p.width,
                p.height
            );
            return Phase1::Rejected(site_rejects(site, RejectReason::InconsistentChannels, &msg));
        }
    }
    if let Some(hist) = hist {
        let mut local: Vec<Histogram> = planes
            .iter()
            .map(|p| {
                let mut h = Histogram::new();
                h.add(&p.data);
                h
            })
            .collect();
        // A poisoned lock means another job panicked; the run fails on that job already.
        if let Ok(mut shared) = hist.lock() {
            for (s, l) in shared.iter_mut().zip(local.drain(..)) {
                s.merge(&l);
            }
        }
    }
    let (width, height) = planes.first().map_or((0, 0), |p| (p.width, p.height));
    match spill.append(&planes) {
        Ok(offset) => Phase1::Ok {
            offset,
            planes: planes.len() as u64,
            width,
            height,
        },
        Err(e) => Phase1::SpillFailed(e),
    }
}

/// A plate between its two phases: decoded, histogrammed, spilled, its normalization derived.
pub struct DecodedPlate {
    scope: PlateScope,
    spilled: Vec<Spilled>,
    spill_file: std::fs::File,
    rejects: Vec<RejectRow>,
    stats: Vec<PlateStatRow>,
    norms: Vec<ChannelNorm>,
}

/// Phase 1 of a plate: fetch, decode, histogram and spill every site, then derive the
/// plate's normalization. `rejects` holds the plate's discovery rejects; they are committed
/// with the plate in phase 2 ([`write_plate`]). Touches no table, so it can run while the previous plate is
/// written (the run overlaps them: the single shard writer would otherwise leave the CPU
/// pool idle during phase 2).
pub async fn decode_plate(
    job: &PlateJob<'_>,
    plate: &PlateKey,
    sites: Vec<ResolvedSite>,
    mut rejects: Vec<RejectRow>,
) -> Result<DecodedPlate> {
    let t = job.transform;
    let spec = DecodeSpec {
        bit_depth: t.bit_depth,
        width: t.width,
        height: t.height,
        max_pixels: t.max_pixels,
    };
    let channels = job.channels as usize;
    let hist = Arc::new(Mutex::new(
        (0..channels).map(|_| Histogram::new()).collect::<Vec<_>>(),
    ));
    let scratch_err = |source: std::io::Error| Error::Scratch {
        dir: job.scratch.display().to_string(),
        source,
    };
    let spill = Arc::new(SpillFile {
        file: tempfile::tempfile_in(job.scratch).map_err(scratch_err)?,
        next: AtomicU64::new(0),
    });
    let mut spilled: Vec<Spilled> = Vec::new();
    let mut ref_sites = 0i32;
    let cell_type = sites
        .first()
        .map(|s| s.meta.cell_type.clone())
        .unwrap_or_else(|| cellshard_core::metadata::cell_type_of(&plate.experiment));

    // Phase 1.
    let mut stream = futures::stream::iter(sites)
        .map(|site| {
            let hist = hist.clone();
            let spill = spill.clone();
            async move {
                // Reserve the site's bytes before fetching: reads wait while decoding lags.
                let kib: u64 = site.objects.iter().map(|o| o.size.div_ceil(1024)).sum();
                let kib = kib.min(u64::from(job.budget_kib)).max(1);
                let permit = job
                    .budget
                    .acquire_many(kib as u32)
                    .await
                    .map_err(|_| Error::Internal("byte budget closed".into()))?;
                let now = job.counters.inflight_kib.fetch_add(kib, Ordering::Relaxed) + kib;
                job.counters
                    .peak_inflight_kib
                    .fetch_max(now, Ordering::Relaxed);
                let _reservation = Reservation {
                    _permit: permit,
                    kib,
                    counters: job.counters,
                };
                let files: Vec<std::result::Result<bytes::Bytes, String>> =
                    futures::future::join_all(
                        site.objects
                            .iter()
                            .map(|o| fetch(job.source, o, job.counters, job.read_buffers)),
                    )
                    .await;
                if let Some(Err(msg)) = files.iter().find(|r| r.is_err()) {
                    let msg = format!("site {}: {msg}", site.key.site_id());
                    let rows = site_rejects(&site, RejectReason::ReadFailed, &msg);
                    return Ok::<_, Error>((site, Phase1::Rejected(rows), false));
                }
                let files: Vec<bytes::Bytes> = files.into_iter().filter_map(|r| r.ok()).collect();
                let in_ref = t.reference.includes(&site.meta.well_type);
                let counters = job.counters;
                let started = Instant::now();
                let (site, out) = job
                    .pool
                    .run(move || {
                        let hist = in_ref.then_some(&*hist);
                        let out = phase1_cpu(&site, &files, &spec, &t, hist, &spill);
                        (site, out)
                    })
                    .await?;
                add_ns(&counters.decode_ns, started);
                Ok((site, out, in_ref))
            }
        })
        .buffered(job.inflight.max(1));
    while let Some((site, out, in_ref)) = stream.try_next().await? {
        match out {
            Phase1::Ok {
                offset,
                planes,
                width,
                height,
            } => {
                spilled.push(Spilled {
                    site,
                    offset,
                    planes,
                    width,
                    height,
                });
                ref_sites += i32::from(in_ref);
            }
            Phase1::SpillFailed(e) => return Err(scratch_err(e)),
            Phase1::Rejected(rows) => rejects.extend(rows),
        }
        (job.on_progress)(job.counters.progress.fetch_add(1, Ordering::Relaxed) + 1);
    }
    drop(stream);
    // The plate's files are all read: hand the free buffers back to the allocator rather
    // than hold them through phase 2 (the next plate's phase 1 refills the pool).
    job.read_buffers.release();
    let spill_file = Arc::try_unwrap(spill)
        .map_err(|_| Error::Internal("spill file still shared after phase 1".into()))?
        .file;

    // Normalization from the reference histograms.
    let hist = Arc::try_unwrap(hist)
        .map_err(|_| Error::Internal("histograms still shared after phase 1".into()))?
        .into_inner()
        .map_err(|_| Error::Internal("histogram lock poisoned".into()))?;
    let mut stats = Vec::new();
    let mut norms = Vec::new();
    let mut norm_error = None;
    if !spilled.is_empty() {
        for (c, h) in hist.iter().enumerate() {
            match ChannelNorm::from_histogram(t.method, t.low, t.high, h) {
                Ok(n) => {
                    let (low_value, high_value) = match n {
                        ChannelNorm::Percentile { lo, hi } => {
                            (Some(i32::from(lo)), Some(i32::from(hi)))
                        }
                        ChannelNorm::Zscore { .. } => (None, None),
                    };
                    let pct = t.method == cellshard_core::NormalizeMethod::Percentile;
                    stats.push(PlateStatRow {
                        experiment: plate.experiment.clone(),
                        cell_type: cell_type.clone(),
                        plate: plate.plate as i32,
                        channel: c as i32 + 1,
                        method: t.method.as_str().into(),
                        reference: t.reference.as_str().into(),
                        p_low: pct.then_some(t.low),
                        p_high: pct.then_some(t.high),
                        low_value,
                        high_value,
                        mean: h.mean().unwrap_or(0.0),
                        std: h.std().unwrap_or(0.0),
                        min: h.min().map_or(0, i32::from),
                        max: h.max().map_or(0, i32::from),
                        pixel_count: h.total() as i64,
                        site_count: ref_sites,
                        pipeline_hash: job.sites_ctx.pipeline_hash.clone(),
                        run_id: job.sites_ctx.run_id.clone(),
                    });
                    norms.push(n);
                }
                Err(why) => {
                    norm_error = Some(format!(
                        "plate {plate}: channel w{} cannot be normalized: {why} in the reference population '{}' ({} of {} stored sites are in it)",
                        c + 1,
                        t.reference.as_str(),
                        ref_sites,
                        spilled.len()
                    ));
                    break;
                }
            }
        }
    }
    if let Some(msg) = norm_error {
        for s in spilled.drain(..) {
            rejects.extend(site_rejects(&s.site, RejectReason::Normalize, &msg));
            (job.on_progress)(job.counters.progress.fetch_add(1, Ordering::Relaxed) + 1);
        }
        stats.clear();
    }

    let scope = PlateScope {
        cell_type,
        experiment: plate.experiment.clone(),
        plate: plate.plate as i32,
    };
    Ok(DecodedPlate {
        scope,
        spilled,
        spill_file,
        rejects,
        stats,
        norms,
    })
}

/// Most shard files of a plate written at once. One writer encodes about 100-130 raw
/// RxRx1 sites/s (ZSTD level 1, one core of the bench machine), so four keep up with some
/// 60 cores decoding at 8 sites/s each, while holding four row groups (about 4 x 50 MiB with
/// the default 32 MiB row groups) in memory.
pub const MAX_FILE_WRITERS: usize = 4;

/// Phase 2 of a plate: normalize and stack the spilled sites on the CPU pool, write them
/// as shard files, several at a time, and commit the plate.
///
/// The plate's sites are cut, in order, into files of `rows_per_file` rows, so the files
/// depend on the pipeline alone, never on the thread count. Each file has its own Delta
/// writer; up to one file per pool thread ([`MAX_FILE_WRITERS`] at most) is written at
/// once, and each row group is encoded (ZSTD included) on the pool, so no single writer
/// thread caps a run.
pub async fn write_plate(
    job: &PlateJob<'_>,
    tables: &mut StoreTables,
    decoded: DecodedPlate,
) -> Result<PlateReport> {
    let DecodedPlate {
        scope,
        spilled,
        spill_file,
        rejects,
        stats,
        norms,
    } = decoded;
    let mut report = PlateReport::default();
    let mut adds = Vec::new();
    let file = Arc::new(spill_file);
    if !spilled.is_empty() {
        let norm = Arc::new(PlateNorm::new(norms, job.transform.output));
        let per_file = job.rows_per_file.max(1);
        let mut files: Vec<(Vec<Spilled>, RecordBatchWriter)> = Vec::new();
        let mut rest = spilled.into_iter().peekable();
        while rest.peek().is_some() {
            let chunk: Vec<Spilled> = rest.by_ref().take(per_file).collect();
            files.push((chunk, tables.sites_writer(&job.shard)?));
        }
        let writers = job
            .pool
            .threads()
            .min(MAX_FILE_WRITERS)
            .clamp(1, files.len());
        // The sites in flight are shared among the files being written.
        let inflight = (job.inflight / writers).max(2);
        let mut written = futures::stream::iter(files)
            .map(|(chunk, writer)| write_file(job, writer, chunk, &norm, &file, inflight))
            .buffered(writers);
        while let Some((file_adds, sites, objects)) = written.try_next().await? {
            adds.extend(file_adds);
            report.sites_stored += sites;
            report.objects_stored += objects;
        }
    }
    // Closing the last handle frees the plate's whole spill (1.9 GB for a full raw plate),
    // which takes the kernel about a second: not on the task that feeds the CPU pool.
    tokio::task::spawn_blocking(move || drop(file));
    let started = Instant::now();
    report.commit = tables
        .commit_plate(
            &scope,
            adds,
            &stats,
            &rejects,
            &job.sites_ctx.pipeline_hash,
            &job.sites_ctx.run_id,
        )
        .await?;
    add_ns(&job.counters.write_ns, started);
    job.counters
        .bytes_out
        .fetch_add(report.commit.bytes_written, Ordering::Relaxed);
    report.rejects = rejects;
    Ok(report)
}

/// Write one shard file: read its sites back from the spill, normalize and stack them on the
/// pool, and stream them to `writer` a row group at a time. Returns the file's `Add`
/// actions (uploaded, not yet committed) and the sites and objects it holds.
async fn write_file(
    job: &PlateJob<'_>,
    mut writer: RecordBatchWriter,
    chunk: Vec<Spilled>,
    norm: &Arc<PlateNorm>,
    file: &Arc<std::fs::File>,
    inflight: usize,
) -> Result<(Vec<Add>, u64, u64)> {
    let rows_per_group = job.shard.rows_per_group.max(1);
    let mut rows: Vec<SiteRow> = Vec::with_capacity(rows_per_group);
    let (mut sites, mut objects) = (0u64, 0u64);
    let mut stream = futures::stream::iter(chunk)
        .map(|s| {
            let norm = norm.clone();
            let file = file.clone();
            let counters = job.counters;
            async move {
                let started = Instant::now();
                let out = job
                    .pool
                    .run(move || {
                        let plane_bytes = 2 * u64::from(s.width) * u64::from(s.height);
                        let planes = (0..s.planes)
                            .map(|c| {
                                Plane::read_le(s.width, s.height, |b| {
                                    file.read_exact_at(b, s.offset + c * plane_bytes)
                                })
                            })
                            .collect::<std::io::Result<Vec<Plane>>>()
                            .map_err(|e| format!("spill read failed: {e}"))?;
                        Ok::<_, String>((s.site, stack(&planes, &norm)))
                    })
                    .await?;
                add_ns(&counters.normalize_ns, started);
                Ok::<_, Error>(out)
            }
        })
        .buffered(inflight);
    while let Some(out) = stream.try_next().await? {
        let (site, tensor) = out.map_err(|e| Error::Scratch {
            dir: job.scratch.display().to_string(),
            source: std::io::Error::other(e),
        })?;
        sites += 1;
        objects += site.objects.len() as u64;
        rows.push(site_row(site, tensor));
        if rows.len() == rows_per_group {
            writer = write_rows(job, writer, &mut rows).await?;
        }
        (job.on_progress)(job.counters.progress.fetch_add(1, Ordering::Relaxed) + 1);
    }
    if !rows.is_empty() {
        writer = write_rows(job, writer, &mut rows).await?;
    }
    let started = Instant::now();
    let adds = writer.flush().await.map_err(delta_error)?;
    add_ns(&job.counters.write_ns, started);
    Ok((adds, sites, objects))
}

fn site_row(site: ResolvedSite, tensor: cellshard_stages::SiteTensor) -> SiteRow {
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
        source_paths: site.objects.iter().map(|o| o.display.clone()).collect(),
        source_etags: site.objects.iter().map(|o| o.etag.clone()).collect(),
        source_sizes: site.objects.iter().map(|o| o.size as i64).collect(),
        tensor: tensor.bytes,
    }
}

/// Encode `rows` as one batch into `writer` on the CPU pool (Parquet encoding and ZSTD are
/// most of a shard's cost); the writer's uploads still run on the async runtime.
async fn write_rows(
    job: &PlateJob<'_>,
    mut writer: RecordBatchWriter,
    rows: &mut Vec<SiteRow>,
) -> Result<RecordBatchWriter> {
    let started = Instant::now();
    let batch = job.sites_ctx.batch(rows)?;
    rows.clear();
    add_ns(&job.counters.write_ns, started);
    let runtime = tokio::runtime::Handle::current();
    // The writer's busy time is counted on the pool, not the wait for a pool thread.
    let (writer, busy) = job
        .pool
        .run(move || {
            let started = Instant::now();
            let out = runtime.block_on(writer.write(batch)).map(|()| writer);
            (out, started.elapsed())
        })
        .await?;
    job.counters
        .write_ns
        .fetch_add(busy.as_nanos() as u64, Ordering::Relaxed);
    writer.map_err(delta_error)
}

fn delta_error(e: deltalake::DeltaTableError) -> Error {
    Error::Store(cellshard_store::Error::Delta {
        table: "sites".into(),
        source: Box::new(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn read_range_reads_exactly_the_range_or_says_the_file_is_short() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        let pool = Arc::new(ReadBuffers::new(1 << 30));
        assert_eq!(read_range(&f, 0..10_000, &pool).unwrap(), &data[..]);
        assert_eq!(read_range(&f, 17..4_000, &pool).unwrap(), &data[17..4_000]);
        assert!(read_range(&f, 5..5, &pool).unwrap().is_empty());
        let e = read_range(&f, 9_000..12_000, &pool).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("1000 of 3000"), "{e}");
    }

    #[test]
    fn read_buffers_are_reused_and_capped() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 13 % 256) as u8).collect();
        f.write_all(&data).unwrap();
        let pool = Arc::new(ReadBuffers::new(3 * READ_BUFFER_STEP));
        let a = read_range(&f, 0..2_500_000, &pool).unwrap();
        let a_ptr = a.as_ptr();
        assert_eq!(pool.held(), 0);
        drop(a);
        // Back in the pool, rounded up to whole steps, and lent again for a smaller read.
        assert_eq!(pool.held(), 3 * READ_BUFFER_STEP);
        let b = read_range(&f, 100..2_000_100, &pool).unwrap();
        assert_eq!(b.as_ptr(), a_ptr);
        assert_eq!(b, &data[100..2_000_100]);
        assert_eq!(pool.held(), 0);
        // A clone keeps the buffer lent until the last handle drops.
        let c = b.clone();
        drop(b);
        assert_eq!(pool.held(), 0);
        drop(c);
        assert_eq!(pool.held(), 3 * READ_BUFFER_STEP);
        // Over the cap, a returned buffer is freed instead of kept.
        let d = read_range(&f, 0..1_000, &pool).unwrap();
        let e = read_range(&f, 0..1_000, &pool).unwrap();
        assert_eq!(pool.held(), 0);
        drop(d);
        drop(e);
        assert_eq!(pool.held(), 3 * READ_BUFFER_STEP);
        assert_eq!(pool.free.lock().unwrap().len(), 1);
        // A read no free buffer fits replaces the largest one rather than adding to them.
        pool.release();
        assert_eq!(pool.held(), 0);
        drop(read_range(&f, 0..1_000, &pool).unwrap());
        assert_eq!(pool.held(), READ_BUFFER_STEP);
        let big = read_range(&f, 0..2_500_000, &pool).unwrap();
        assert_eq!(pool.held(), 0);
        drop(big);
        assert_eq!(pool.held(), 3 * READ_BUFFER_STEP);
        assert_eq!(pool.free.lock().unwrap().len(), 1);
        pool.release();
        assert_eq!(pool.held(), 0);
    }

    #[tokio::test]
    async fn local_and_streamed_bodies_agree() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 256) as u8).collect();
        std::fs::write(dir.path().join("a.png"), &data).unwrap();
        let local = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let path = object_store::path::Path::from("a.png");
        let r = local.get(&path).await.unwrap();
        assert!(matches!(
            r.payload,
            object_store::GetResultPayload::File(..)
        ));
        let pool = Arc::new(ReadBuffers::new(1 << 30));
        assert_eq!(body(r, &pool).await.unwrap(), &data[..]);
        let mem = object_store::memory::InMemory::new();
        mem.put(&path, data.clone().into()).await.unwrap();
        let r = mem.get(&path).await.unwrap();
        assert_eq!(body(r, &pool).await.unwrap(), &data[..]);
    }
}
