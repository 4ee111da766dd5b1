//! One plate, two phases, and what they share.
//!
//! [`crate::phase1::decode_plate`] fetches ([`crate::fetch`]), decodes, histograms and
//! spills ([`crate::spill`]) every site, then derives the plate's normalization;
//! [`crate::phase2::write_plate`] normalizes and stacks the spilled sites, writes the
//! shard files and publishes the plate. The run overlaps a plate's phase 2 with the next
//! plate's phase 1. A site's failure is judged here ([`judge`]), in one place.
//!
//! Memory bound per plate: `inflight` sites in flight (their PNG bytes, within the read
//! budget, and their decoded planes), one merged histogram set (6 x 512 KiB), and, per
//! file being written (at most [`MAX_FILE_WRITERS`]), one row group of
//! tensors plus the encoder's buffer. The spill holds a plate's cropped planes on disk,
//! two plates' at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use cellshard_core::pipeline::Transform;
use cellshard_core::{ErrorClass, RejectReason, SiteError};
use cellshard_store::io::ByteBudget;
use cellshard_store::schema::{RejectRow, SitesContext};
use cellshard_store::table::ShardSettings;
use cellshard_store::{Location, PlateCommit, ReadBuffers};

use crate::discover::ResolvedSite;
use crate::{Error, Result};

/// Most shard files of a plate written at once. One writer encodes about 100 raw sites/s
/// per core at ZSTD level 1, so four keep up with dozens of decoding cores while holding
/// four row groups in memory.
pub const MAX_FILE_WRITERS: usize = 4;

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

pub(crate) fn add_ns(c: &AtomicU64, since: Instant) {
    c.fetch_add(nanos(since.elapsed()), Ordering::Relaxed);
}

/// `d` in nanoseconds, saturating at `u64::MAX` (about 584 years).
pub(crate) fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Everything a plate needs that does not change between plates.
pub struct PlateJob<'a> {
    /// Image source.
    pub source: &'a Location,
    /// The transform.
    pub transform: Transform,
    /// Channels per site.
    pub channels: u32,
    /// QC thresholds.
    pub qc: cellshard_core::pipeline::QcConfig,
    /// Key template of the illumination function files (`source = "files"`).
    pub illum_files: Option<&'a str>,
    /// CPU pool.
    pub pool: &'a crate::pool::CpuPool,
    /// Sites in flight at once.
    pub inflight: usize,
    /// Budget of fetched-but-undecoded source bytes.
    pub budget: &'a ByteBudget,
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

impl PlateJob<'_> {
    /// Count one site-step done and report progress.
    pub(crate) fn progress(&self) {
        (self.on_progress)(self.counters.progress.fetch_add(1, Ordering::Relaxed) + 1);
    }
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
    /// The publish.
    pub commit: PlateCommit,
}

/// Judge a site's failure, the one place that decides: bad input becomes one reject row
/// per object of the site and the run goes on; an outage or a bug fails the run.
pub(crate) fn judge(site: &ResolvedSite, e: SiteError) -> Result<Vec<RejectRow>> {
    match e.class {
        ErrorClass::BadInput | ErrorClass::NotFound => {
            Ok(site_rejects(site, e.reason, &e.to_string()))
        }
        ErrorClass::External => Err(Error::External(e)),
        ErrorClass::Internal => Err(Error::Internal(e.to_string())),
    }
}

/// One reject row per object of `site`.
pub(crate) fn site_rejects(
    site: &ResolvedSite,
    reason: RejectReason,
    message: &str,
) -> Vec<RejectRow> {
    site.objects
        .iter()
        .map(|o| RejectRow {
            site_id: Some(site.key.site_id()),
            experiment: Some(site.key.experiment.clone()),
            plate: Some(site.key.plate as i32),
            object_path: Some(o.display.clone()),
            reason,
            message: message.to_string(),
        })
        .collect()
}
