//! A plate's scratch file between its two phases: each site's cropped planes, uncompressed
//! little-endian u16, at a range reserved by the pool job that decoded the site, so a disk
//! that stalls writes stalls one pool thread, never the task that hands out work.
//!
//! The spill is not compressed: the low bits of cropped 16-bit planes are camera noise,
//! so zstd level 1 saves little scratch for a measurable share of a site's CPU.
//! A full raw RxRx1 plate spills 3 MB per site, 1.9 GB for 616 sites.

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};

use cellshard_stages::Plane;

use crate::discover::ResolvedSite;

/// The spill file of a plate in phase 1.
pub(crate) struct SpillFile {
    pub(crate) file: std::fs::File,
    next: AtomicU64,
}

impl SpillFile {
    /// A new, unnamed spill file in `dir`: it has no name from the start, so the system
    /// frees it when the process ends, however it ends (a killed run leaves nothing).
    pub(crate) fn create(dir: &std::path::Path) -> std::io::Result<Self> {
        Ok(Self::from_file(tempfile::tempfile_in(dir)?))
    }

    /// A spill into `file`.
    pub(crate) fn from_file(file: std::fs::File) -> Self {
        SpillFile {
            file,
            next: AtomicU64::new(0),
        }
    }

    /// Write `planes` at the next free range; returns where they start.
    pub(crate) fn append(&self, planes: &[Plane]) -> std::io::Result<u64> {
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

/// Where a site's planes are in the spill file: `planes` planes of `width x height` from
/// `offset`, one after another.
pub(crate) struct Spilled {
    pub(crate) site: ResolvedSite,
    pub(crate) offset: u64,
    pub(crate) planes: u64,
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// Its image quality, flags included (set once the plate is decoded).
    pub(crate) qc: cellshard_store::schema::SiteQcRow,
}

impl Spilled {
    /// Read the site's planes back from `file`.
    pub(crate) fn read(&self, file: &std::fs::File) -> std::io::Result<Vec<Plane>> {
        let plane_bytes = 2 * u64::from(self.width) * u64::from(self.height);
        (0..self.planes)
            .map(|c| {
                Plane::read_le(self.width, self.height, |b| {
                    file.read_exact_at(b, self.offset + c * plane_bytes)
                })
            })
            .collect()
    }
}
