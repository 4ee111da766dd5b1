//! An object store wrapper that counts what is read through it: GET requests and the bytes
//! they return, split into Delta log reads and data-file reads, and optionally per path.
//!
//! Every [`Location`](crate::Location) wraps its store in one, so the counts cover every
//! reader in the process (ingest, DataFusion scans, delta-rs log replay). The counts are
//! what proves projection pushdown and partition pruning: a query that does not name the
//! tensor column must not fetch the tensor's column chunks.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// Read counters of one location (shared by its children).
#[derive(Debug, Default)]
pub struct ReadStats {
    /// GET requests (whole objects and ranges; a multi-range read counts each range).
    pub gets: AtomicU64,
    /// Bytes returned by GETs of Delta log files (`_delta_log/`).
    pub log_bytes: AtomicU64,
    /// Bytes returned by GETs of everything else (Parquet data files, source images).
    pub data_bytes: AtomicU64,
    record_paths: AtomicBool,
    paths: Mutex<BTreeMap<String, u64>>,
}

/// A snapshot of [`ReadStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadSnapshot {
    /// GET requests.
    pub gets: u64,
    /// Delta log bytes.
    pub log_bytes: u64,
    /// Data bytes.
    pub data_bytes: u64,
    /// Data bytes per path, when path recording is on.
    pub paths: BTreeMap<String, u64>,
}

impl ReadStats {
    /// Also record bytes per path (off by default: an ingest reads many thousands of objects).
    pub fn record_paths(&self, on: bool) {
        self.record_paths.store(on, Ordering::Relaxed);
    }

    /// Zero every counter.
    pub fn reset(&self) {
        self.gets.store(0, Ordering::Relaxed);
        self.log_bytes.store(0, Ordering::Relaxed);
        self.data_bytes.store(0, Ordering::Relaxed);
        if let Ok(mut p) = self.paths.lock() {
            p.clear();
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> ReadSnapshot {
        ReadSnapshot {
            gets: self.gets.load(Ordering::Relaxed),
            log_bytes: self.log_bytes.load(Ordering::Relaxed),
            data_bytes: self.data_bytes.load(Ordering::Relaxed),
            paths: self.paths.lock().map(|p| p.clone()).unwrap_or_default(),
        }
    }

    fn add(&self, path: &Path, bytes: u64) {
        self.gets.fetch_add(1, Ordering::Relaxed);
        let p = path.as_ref();
        if p.contains("_delta_log/") {
            self.log_bytes.fetch_add(bytes, Ordering::Relaxed);
            return;
        }
        self.data_bytes.fetch_add(bytes, Ordering::Relaxed);
        if self.record_paths.load(Ordering::Relaxed)
            && let Ok(mut paths) = self.paths.lock()
        {
            *paths.entry(p.to_string()).or_default() += bytes;
        }
    }
}

/// Counts the bytes of every GET on the way to the inner store.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    stats: Arc<ReadStats>,
}

impl CountingStore {
    /// Wrap `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>, stats: Arc<ReadStats>) -> Self {
        Self { inner, stats }
    }
}

impl std::fmt::Display for CountingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let head = options.head;
        let result = self.inner.get_opts(location, options).await?;
        if !head {
            // The body is exactly the returned range; readers consume all of it.
            self.stats
                .add(location, result.range.end - result.range.start);
        }
        Ok(result)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let out = self.inner.get_ranges(location, ranges).await?;
        for b in &out {
            self.stats.add(location, b.len() as u64);
        }
        Ok(out)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn counts_gets_by_kind_and_path() {
        let stats = Arc::new(ReadStats::default());
        stats.record_paths(true);
        let store = CountingStore::new(Arc::new(InMemory::new()), stats.clone());
        let data = Path::from("t/part-0.parquet");
        let log = Path::from("t/_delta_log/00000000000000000000.json");
        store.put(&data, vec![7u8; 100].into()).await.unwrap();
        store.put(&log, vec![1u8; 10].into()).await.unwrap();
        assert_eq!(
            stats.snapshot(),
            ReadSnapshot::default(),
            "puts are not reads"
        );
        store.get_range(&data, 10..30).await.unwrap();
        store.get(&log).await.unwrap().bytes().await.unwrap();
        store.get_ranges(&data, &[0..5, 50..60]).await.unwrap();
        store.head(&data).await.unwrap();
        let s = stats.snapshot();
        assert_eq!((s.gets, s.data_bytes, s.log_bytes), (4, 35, 10));
        assert_eq!(s.paths.get("t/part-0.parquet"), Some(&35));
        stats.reset();
        assert_eq!(stats.snapshot().gets, 0);
    }
}
