//! Phase 1's reads: a site's channel files, fetched within the run's byte budget.
//!
//! A site reserves its objects' sizes from the budget before any GET starts, so reads wait
//! while decoding lags and the bytes held never exceed the budget (or one site, when a
//! site is larger). A failed GET is classified here, once: a key that is gone or forbidden
//! is bad input (the site is rejected), anything else that outlasted the object store
//! client's retries is an outage (the run fails).

use std::sync::atomic::Ordering;
use std::time::Instant;

use cellshard_core::{ErrorClass, RejectReason, SiteError};
use cellshard_store::io::BytePermit;
use cellshard_store::read::get_pooled;

use crate::discover::{ObjectRef, ResolvedSite};
use crate::plate::{Counters, PlateJob, add_ns};

/// A reservation of the read budget; releases its share of the counters when dropped.
pub(crate) struct Reservation<'a> {
    _permit: BytePermit,
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

/// Reserve the budget for `site`'s objects (at most the whole budget, at least 1 KiB).
pub(crate) async fn reserve<'a>(job: &'a PlateJob<'_>, site: &ResolvedSite) -> Reservation<'a> {
    // Each object counts whole KiB, the budget's unit.
    let kib: u64 = site.objects.iter().map(|o| o.size.div_ceil(1024)).sum();
    let permit = job.budget.acquire(kib.max(1).saturating_mul(1024)).await;
    let kib = permit.bytes() / 1024;
    let now = job.counters.inflight_kib.fetch_add(kib, Ordering::Relaxed) + kib;
    job.counters
        .peak_inflight_kib
        .fetch_max(now, Ordering::Relaxed);
    Reservation {
        _permit: permit,
        kib,
        counters: job.counters,
    }
}

/// Fetch every channel file of `site`, in channel order.
pub(crate) async fn fetch_site(
    job: &PlateJob<'_>,
    site: &ResolvedSite,
) -> std::result::Result<Vec<bytes::Bytes>, SiteError> {
    let files = futures::future::join_all(site.objects.iter().map(|o| fetch(job, o))).await;
    let mut out = Vec::with_capacity(files.len());
    for (obj, file) in site.objects.iter().zip(files) {
        match file {
            Ok(b) => out.push(b),
            Err(e) => {
                return Err(SiteError::new(
                    classify(&e),
                    RejectReason::ReadFailed,
                    site.key.site_id(),
                    Some(obj.display.clone()),
                    format!("cannot read: {e}"),
                ));
            }
        }
    }
    Ok(out)
}

async fn fetch(job: &PlateJob<'_>, obj: &ObjectRef) -> object_store::Result<bytes::Bytes> {
    let t = Instant::now();
    let res = get_pooled(job.source, &obj.path, job.read_buffers).await;
    add_ns(&job.counters.read_ns, t);
    if let Ok(b) = &res {
        job.counters
            .bytes_in
            .fetch_add(b.len() as u64, Ordering::Relaxed);
    }
    res
}

/// The class of a failed GET of a listed key. Gone (404) or forbidden (403, or a local
/// file the process may not read) is this object's problem for good; everything else
/// (5xx, timeouts, resets, bad credentials) is the storage's, and a rerun may succeed.
pub(crate) fn classify(e: &object_store::Error) -> ErrorClass {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } | E::PermissionDenied { .. } => ErrorClass::BadInput,
        e if io_kind(e).is_some_and(|k| {
            matches!(
                k,
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
            )
        }) =>
        {
            ErrorClass::BadInput
        }
        _ => ErrorClass::External,
    }
}

/// The kind of the first I/O error in `e`'s source chain (local files).
fn io_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gone_and_forbidden_are_bad_input_the_rest_external() {
        let path = "a.png".to_string();
        let not_found = object_store::Error::NotFound {
            path: path.clone(),
            source: "404".into(),
        };
        let denied = object_store::Error::PermissionDenied {
            path: path.clone(),
            source: "403".into(),
        };
        let outage = object_store::Error::Generic {
            store: "S3",
            source: "503 Service Unavailable after 10 retries".into(),
        };
        let creds = object_store::Error::Unauthenticated {
            path,
            source: "401".into(),
        };
        let local_denied = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::from(std::io::ErrorKind::PermissionDenied)),
        };
        let local_eio = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::other("input/output error")),
        };
        assert_eq!(classify(&not_found), ErrorClass::BadInput);
        assert_eq!(classify(&denied), ErrorClass::BadInput);
        assert_eq!(classify(&local_denied), ErrorClass::BadInput);
        assert_eq!(classify(&outage), ErrorClass::External);
        assert_eq!(classify(&creds), ErrorClass::External);
        assert_eq!(classify(&local_eio), ErrorClass::External);
    }
}
