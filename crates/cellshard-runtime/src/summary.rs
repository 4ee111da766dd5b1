//! The JSON run summary printed (and optionally written) at the end of every run.

use std::collections::BTreeMap;

use cellshard_store::schema::{RunCounts, RunSeconds};
use serde::{Deserialize, Serialize};

/// Object accounting: `discovered = stored + rejected + ignored + other_workers`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectCounts {
    /// Objects listed under the source prefix.
    pub discovered: u64,
    /// Objects that are part of a stored site.
    pub stored: u64,
    /// Objects with a reject row.
    pub rejected: u64,
    /// Objects whose keys do not follow the layout.
    pub ignored: u64,
    /// Objects of plates owned by other workers.
    pub other_workers: u64,
    /// Objects of plates left out by `--plates` / `--experiments`.
    #[serde(default)]
    pub unselected: u64,
    /// Objects of plates skipped by `--incremental` (their fingerprint is committed).
    #[serde(default)]
    pub unchanged: u64,
}

impl ObjectCounts {
    /// The right side of the conservation equation, in words.
    pub fn parts(&self) -> String {
        format!(
            "{} stored + {} rejected + {} ignored + {} other workers' + {} unselected + {} unchanged",
            self.stored,
            self.rejected,
            self.ignored,
            self.other_workers,
            self.unselected,
            self.unchanged
        )
    }
}

/// Site accounting for the plates this worker processed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SiteCounts {
    /// Sites seen (complete or not).
    pub discovered: u64,
    /// Sites stored.
    pub stored: u64,
    /// Sites rejected.
    pub rejected: u64,
    /// Sites of plates skipped by `--incremental`.
    #[serde(default)]
    pub unchanged: u64,
}

/// Seconds per stage (summed over concurrent work, so they can exceed wall time).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StageSeconds {
    /// Listing the source.
    pub list: f64,
    /// Waiting on GETs.
    pub read: f64,
    /// Decode, downsample, crop, histogram, spill (CPU).
    pub decode: f64,
    /// Normalize and stack (CPU).
    pub normalize: f64,
    /// Writing shards and committing.
    pub write: f64,
    /// Wall time of the whole run.
    pub total: f64,
}

/// The run summary.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunSummary {
    /// Run id.
    pub run_id: String,
    /// Why the run failed, in the `runs` row of a run that did not finish.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Pipeline name.
    pub pipeline: String,
    /// Pipeline hash.
    pub pipeline_hash: String,
    /// `I/N`.
    pub worker: String,
    /// Source URL.
    pub source: String,
    /// Store URL.
    pub sink: String,
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
    /// Objects.
    pub objects: ObjectCounts,
    /// The conservation equation as checked at the end of the run, e.g.
    /// `73 discovered = 72 stored + 0 rejected + 1 ignored + 0 other workers'`.
    pub conservation: String,
    /// Ignored objects by reason.
    pub ignored_by_reason: BTreeMap<String, u64>,
    /// Sites.
    pub sites: SiteCounts,
    /// Reject rows by reason code.
    pub rejects_by_reason: BTreeMap<String, u64>,
    /// Metadata rows that could not be used (file:line: cause).
    pub metadata_errors: Vec<String>,
    /// Metadata rows of the processed plates that no image belongs to.
    pub metadata_rows_without_images: u64,
    /// Plates this worker processed.
    pub plates: u64,
    /// Plates built and published.
    #[serde(default)]
    pub plates_built: u64,
    /// Plates skipped by `--incremental`: their committed fingerprint is unchanged.
    #[serde(default)]
    pub plates_unchanged: u64,
    /// Plates in the store whose source objects are all gone, as `EXPERIMENT/PLATE`.
    #[serde(default)]
    pub plates_vanished: Vec<String>,
    /// Vanished plates removed from the store (`--prune`).
    #[serde(default)]
    pub plates_pruned: u64,
    /// Source bytes read.
    pub bytes_in: u64,
    /// Shard bytes written.
    pub bytes_out: u64,
    /// Most source bytes fetched but not yet decoded at any moment (bounded by
    /// `source.max_inflight`, or by one site when a site is larger than the budget).
    pub peak_inflight_bytes: u64,
    /// HTTP requests to cloud stores (source and sink, every attempt).
    pub requests: u64,
    /// Attempts that failed transiently and were retried with backoff.
    pub retries: u64,
    /// Seconds per stage.
    pub seconds: StageSeconds,
    /// Stored sites per second of wall time.
    pub sites_per_second: f64,
    /// CPU seconds (user + system, all threads) this process had used at the end of the run;
    /// 0 where `/proc` is not available.
    #[serde(default)]
    pub cpu_seconds: f64,
    /// Peak resident memory of this process (`VmHWM`) at the end of the run; 0 where `/proc`
    /// is not available.
    #[serde(default)]
    pub peak_rss_bytes: u64,
    /// Rejected objects / (stored + rejected objects).
    pub reject_fraction: f64,
}

impl RunSummary {
    /// The counts of the `runs` row.
    pub fn run_counts(&self) -> RunCounts {
        RunCounts {
            objects_discovered: self.objects.discovered,
            objects_ignored: self.objects.ignored,
            objects_rejected: self.objects.rejected,
            objects_stored: self.objects.stored,
            sites_discovered: self.sites.discovered,
            sites_stored: self.sites.stored,
            sites_rejected: self.sites.rejected,
            plates: self.plates,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            metadata_rows_rejected: self.metadata_errors.len() as u64,
        }
    }

    /// The stage times of the `runs` row.
    pub fn run_seconds(&self) -> RunSeconds {
        let s = &self.seconds;
        RunSeconds {
            list: s.list,
            read: s.read,
            decode: s.decode,
            normalize: s.normalize,
            write: s.write,
        }
    }
}

/// Peak resident set size of this process in bytes (`VmHWM` of `/proc/self/status`).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU seconds (user + system, all threads) used by this process so far, from
/// `/proc/self/stat` (clock ticks of 1/100 s, Linux's `USER_HZ` on every common platform).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may contain spaces; the fields after it are space separated.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Exit status of a finished run: 0, or 3 when rejects exceed the allowed fraction.
pub const EXIT_REJECTS: u8 = 3;

impl RunSummary {
    /// The process exit status for this run under `--max-reject-fraction`.
    pub fn exit_code(&self, max_reject_fraction: f64) -> u8 {
        if self.reject_fraction > max_reject_fraction {
            EXIT_REJECTS
        } else {
            0
        }
    }

    /// Check the conservation equation; the message explains a mismatch.
    pub fn conservation(&self) -> Result<(), String> {
        let o = &self.objects;
        let sum = o.stored + o.rejected + o.ignored + o.other_workers + o.unselected + o.unchanged;
        if sum == o.discovered {
            Ok(())
        } else {
            Err(format!(
                "{} objects discovered but {} = {sum}",
                o.discovered,
                o.parts()
            ))
        }
    }
}
