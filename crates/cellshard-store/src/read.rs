//! Reading source objects into reused buffers.
//!
//! A local file is read straight into a buffer from a [`ReadBuffers`] pool: the
//! `object_store` helper zero-fills a new buffer before reading into it, and the allocator
//! hands buffers this large back to the system, so every site's ~27 MB of raw PNGs would
//! otherwise be faulted in and zeroed afresh. Every other store streams as usual.

use std::sync::{Arc, Mutex};

use object_store::ObjectStoreExt;
use object_store::path::Path;

use crate::Location;

/// GET `path` from `loc`, reading a local file into a buffer from `buffers`.
pub async fn get_pooled(
    loc: &Location,
    path: &Path,
    buffers: &Arc<ReadBuffers>,
) -> object_store::Result<bytes::Bytes> {
    let r = loc.store.get(path).await?;
    body(r, buffers).await
}

/// The body of a GET: a local file into a buffer from `buffers`, any other store streamed.
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
    let want = usize::try_from(len).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("a read of {len} bytes does not fit in memory"),
        )
    })?;
    let mut buf = buffers.take(want);
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

/// Free read buffers, kept up to a byte cap (see the module docs for why).
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
    pub(crate) fn take(&self, len: usize) -> Vec<u8> {
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
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| u8::try_from(i * 13 % 256).unwrap())
            .collect();
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
        let data: Vec<u8> = (0..70_000u32)
            .map(|i| u8::try_from(i * 7 % 256).unwrap())
            .collect();
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
