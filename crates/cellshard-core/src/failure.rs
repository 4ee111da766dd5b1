//! Why a site failed, and who must act on it: the one place where a failure's class is
//! decided (model: Arroyo's `ErrorDomain` + `RetryHint`).
//!
//! Fetch and decode produce a [`SiteError`]; the runtime judges it once: bad input becomes
//! reject rows and the run goes on, an external failure (an outage that outlasted the
//! object store client's retries) fails the run so a rerun can succeed, and a bug fails
//! the run loudly. Nothing downstream parses error text to find the class.
//!
//! Every library error also answers `class()`, and each edge maps the class in one
//! place: the command line's exit status, the viewer's HTTP status and the Python
//! package's exception (table in `docs/architecture.md`).

use std::fmt;

use crate::RejectReason;

/// Who is at fault, and so what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// This input can never succeed as it is (403/404 on a listed key, bytes that are not
    /// a usable PNG): reject it with its reason and keep going.
    BadInput,
    /// An outside service failed after its retries (5xx, timeouts, resets, bad
    /// credentials): fail the run; the same run later may succeed.
    External,
    /// A bug in cellshard (a panicked job, a broken invariant): fail the run.
    Internal,
    /// What the request names does not exist: a store, table, version, site or plate.
    /// Never a site's class (a listed key that is gone is bad input); only requests get it.
    NotFound,
}

/// A failure of one site, tied to the object that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteError {
    /// Its class.
    pub class: ErrorClass,
    /// The reject reason, used when the class is [`ErrorClass::BadInput`].
    pub reason: RejectReason,
    /// The site.
    pub site_id: String,
    /// The object (URL or path) at fault, when one is.
    pub object: Option<String>,
    /// The cause, in plain words.
    pub message: String,
}

impl SiteError {
    /// A failure of `site_id` with `class` and `reason`.
    pub fn new(
        class: ErrorClass,
        reason: RejectReason,
        site_id: impl Into<String>,
        object: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        SiteError {
            class,
            reason,
            site_id: site_id.into(),
            object,
            message: message.into(),
        }
    }
}

impl fmt::Display for SiteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "site {}: ", self.site_id)?;
        if let Some(o) = &self.object {
            write!(f, "{o}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for SiteError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_site_and_object() {
        let e = SiteError::new(
            ErrorClass::External,
            RejectReason::ReadFailed,
            "HUVEC-01_1_B02_1",
            Some("s3://raw/a.png".into()),
            "503 Service Unavailable",
        );
        assert_eq!(
            e.to_string(),
            "site HUVEC-01_1_B02_1: s3://raw/a.png: 503 Service Unavailable"
        );
    }
}
