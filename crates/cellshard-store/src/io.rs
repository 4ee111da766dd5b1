//! Reads shared by ingest, the feed and SQL: one object by URL, and the budget of bytes
//! in flight that bounds concurrent fetches.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{Location, Result};

/// Read one object named by a URL or path.
pub async fn read_object(text: &str, options: &BTreeMap<String, String>) -> Result<bytes::Bytes> {
    let (parent, name) = match text.trim_end_matches('/').rsplit_once('/') {
        Some((p, n)) if !p.is_empty() && !p.ends_with(':') => (p.to_string(), n.to_string()),
        Some(("", n)) => ("/".to_string(), n.to_string()),
        _ => (".".to_string(), text.to_string()),
    };
    let loc = Location::parse(&parent, options)?;
    loc.get(&name).await
}

/// The budget's unit: bytes are counted in whole KiB, so that limits up to 4 TiB fit a
/// semaphore's `u32` requests.
const KIB: u64 = 1024;

/// A budget of bytes in flight (fetched and not yet consumed), shared by concurrent
/// readers: [`ByteBudget::acquire`] waits until its bytes fit, and the [`BytePermit`] it
/// returns gives them back when dropped. Clones share one budget.
///
/// Memory bound: the bytes held under permits never exceed [`ByteBudget::limit`]. A
/// request larger than the whole limit takes the whole limit: it waits until nothing else
/// is held and then runs alone, so the bound is then that one request. Requests are served
/// in order (a waiting large request holds back later small ones), and each is rounded up
/// to whole KiB.
#[derive(Debug, Clone)]
pub struct ByteBudget {
    permits: Arc<Semaphore>,
    limit_kib: u32,
}

/// Bytes held under a [`ByteBudget`]; released when dropped.
#[derive(Debug)]
pub struct BytePermit {
    _permit: OwnedSemaphorePermit,
    kib: u32,
}

impl ByteBudget {
    /// A budget of `limit` bytes (at least 1 KiB, at most 4 TiB; whole KiB, rounded down).
    pub fn new(limit: u64) -> Self {
        let limit_kib = u32::try_from((limit / KIB).max(1)).unwrap_or(u32::MAX);
        ByteBudget {
            permits: Arc::new(Semaphore::new(limit_kib as usize)),
            limit_kib,
        }
    }

    /// The most bytes held at once.
    pub fn limit(&self) -> u64 {
        u64::from(self.limit_kib) * KIB
    }

    /// Bytes free right now.
    pub fn available(&self) -> u64 {
        self.permits.available_permits() as u64 * KIB
    }

    /// Wait until `bytes` (or the whole limit, if that is less) fit, and hold them.
    pub async fn acquire(&self, bytes: u64) -> BytePermit {
        let kib = u32::try_from(bytes.div_ceil(KIB))
            .unwrap_or(u32::MAX)
            .min(self.limit_kib);
        let permit = self
            .permits
            .clone()
            .acquire_many_owned(kib)
            .await
            .expect("a byte budget's semaphore is never closed");
        BytePermit {
            _permit: permit,
            kib,
        }
    }
}

impl BytePermit {
    /// Bytes held (the request rounded up to whole KiB, at most the budget's limit).
    pub fn bytes(&self) -> u64 {
        u64::from(self.kib) * KIB
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn acquires_up_to_the_limit_then_waits_for_a_release() {
        let budget = ByteBudget::new(4 * KIB);
        let a = budget.acquire(2 * KIB).await;
        let b = budget.clone().acquire(2 * KIB).await;
        assert_eq!((a.bytes(), b.bytes()), (2 * KIB, 2 * KIB));
        assert_eq!(budget.available(), 0);
        let third = budget.acquire(1);
        tokio::pin!(third);
        assert!(futures::poll!(&mut third).is_pending());
        drop(a);
        let c = third.await;
        assert_eq!(c.bytes(), KIB);
        assert_eq!(budget.available(), KIB);
        drop((b, c));
        assert_eq!(budget.available(), 4 * KIB);
    }

    #[tokio::test]
    async fn an_oversize_request_takes_the_whole_budget_and_runs_alone() {
        let budget = ByteBudget::new(4 * KIB);
        let small = budget.acquire(KIB).await;
        let big = budget.acquire(1 << 30);
        tokio::pin!(big);
        assert!(futures::poll!(&mut big).is_pending());
        drop(small);
        let big = big.await;
        assert_eq!(big.bytes(), budget.limit());
        let next = budget.acquire(1);
        tokio::pin!(next);
        assert!(futures::poll!(&mut next).is_pending());
        drop(big);
        assert_eq!(next.await.bytes(), KIB);
    }

    #[tokio::test]
    async fn requests_and_limits_count_whole_kib() {
        assert_eq!(ByteBudget::new(0).limit(), KIB);
        assert_eq!(ByteBudget::new(KIB + 1).limit(), KIB);
        assert_eq!(ByteBudget::new(u64::MAX).limit(), u64::from(u32::MAX) * KIB);
        let budget = ByteBudget::new(8 * KIB);
        assert_eq!(budget.acquire(0).await.bytes(), 0);
        assert_eq!(budget.acquire(1).await.bytes(), KIB);
        assert_eq!(budget.acquire(KIB + 1).await.bytes(), 2 * KIB);
    }
}
