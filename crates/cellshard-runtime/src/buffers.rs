//! Reused read buffers for local source files.
//!
//! A raw RxRx1 channel file is about 6 MB. The allocator hands a block that size back to the
//! system when it is freed, so a fresh one per file is faulted in and zeroed by the kernel
//! again: about 1.5% of a site's CPU in a one-core profile. Read buffers come back here
//! instead when the last [`bytes::Bytes`] over them is dropped, up to [`KEEP_BYTES`] in all.

use std::sync::Mutex;

/// Most bytes of idle buffers kept (the run's read budget bounds those in use).
pub const KEEP_BYTES: usize = 256 << 20;

static IDLE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer with room for at least `len` bytes: the smallest idle one that holds
/// `len` without wasting more than half of itself, or a new one.
pub fn take(len: usize) -> Vec<u8> {
    let reused = IDLE.lock().ok().and_then(|mut idle| {
        let (i, _) = idle
            .iter()
            .enumerate()
            .filter(|(_, b)| (len..=len.saturating_mul(2)).contains(&b.capacity()))
            .min_by_key(|(_, b)| b.capacity())?;
        Some(idle.swap_remove(i))
    });
    reused.unwrap_or_else(|| Vec::with_capacity(len))
}

/// `buf` as `Bytes` that give the buffer back when the last clone is dropped.
pub fn into_bytes(buf: Vec<u8>) -> bytes::Bytes {
    bytes::Bytes::from_owner(Returned(buf))
}

struct Returned(Vec<u8>);

impl AsRef<[u8]> for Returned {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Returned {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.0);
        buf.clear();
        if let Ok(mut idle) = IDLE.lock() {
            let kept: usize = idle.iter().map(Vec::capacity).sum();
            if kept + buf.capacity() <= KEEP_BYTES {
                idle.push(buf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle_bytes() -> usize {
        IDLE.lock()
            .map_or(0, |idle| idle.iter().map(Vec::capacity).sum())
    }

    #[test]
    fn buffers_come_back_when_the_last_bytes_is_dropped_and_the_cap_holds() {
        // Sizes no other test in this process reads, so the buffer found is this test's.
        let len = 3_000_017;
        let mut buf = take(len);
        buf.extend((0..len).map(|i| (i % 251) as u8));
        let ptr = buf.as_ptr();
        let bytes = into_bytes(buf);
        let clone = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(clone[0], 10, "a clone keeps the buffer alive");
        drop(clone);
        let again = take(len);
        assert_eq!(again.as_ptr(), ptr, "the buffer is reused");
        assert!(again.is_empty() && again.capacity() >= len);
        // A buffer beyond the cap is let go.
        drop(into_bytes(Vec::with_capacity(KEEP_BYTES + 1)));
        assert!(idle_bytes() <= KEEP_BYTES);
        drop(into_bytes(again));
    }
}
