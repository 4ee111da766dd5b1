//! What a worker needs, in one place: the memory bound and the scratch a run spills. The
//! run sizes its spills with these, and `cellshard deploy` sizes its containers with them.

use cellshard_core::Pipeline;
use cellshard_core::pipeline::Transform;

use crate::plate::MAX_FILE_WRITERS;

/// Scratch bytes of one plate's spill: every site's cropped planes as u16.
pub fn spill_bytes(t: &Transform, channels: u32, sites: u64) -> u64 {
    let (h, w) = t.output_shape();
    sites * u64::from(channels) * u64::from(h) * u64::from(w) * 2
}

/// Scratch bound of one worker whose plates have at most `max_sites` sites: two plates'
/// spills at a time (one decoded, one being written).
pub fn scratch_bytes(p: &Pipeline, max_sites: u64) -> u64 {
    2 * spill_bytes(&p.transform(), p.source.channels.count(), max_sites)
}

/// Memory bound of one worker: a fixed part (runtime, allocator, Delta log), the read
/// budget (`source.max_inflight`), per thread one raw site's decode working set, and the
/// row groups being encoded. Measured peaks: 266 MiB at 1 thread and 586 MiB at 2 threads
/// on full RxRx1 plates (`cellshard-bench ingest`), under this bound for those settings.
pub fn worker_memory_bytes(p: &Pipeline, threads: usize) -> u64 {
    const FIXED: u64 = 256 << 20;
    const PER_THREAD: u64 = 160 << 20;
    let writers = threads.min(MAX_FILE_WRITERS) as u64;
    FIXED
        + p.source.max_inflight.bytes()
        + threads as u64 * PER_THREAD
        + writers * 2 * p.sink.row_group_size.bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_rxrx1_plate_spills_its_cropped_planes() {
        let text = include_str!("../../../pipelines/rxrx1.toml");
        let p = Pipeline::from_toml("rxrx1.toml", text).unwrap();
        // 616 sites x 6 channels x 512 x 512 x 2 bytes.
        assert_eq!(spill_bytes(&p.transform(), 6, 616), 1_937_768_448);
        assert_eq!(scratch_bytes(&p, 616), 2 * 1_937_768_448);
        assert!(worker_memory_bytes(&p, 2) > worker_memory_bytes(&p, 1));
    }
}
