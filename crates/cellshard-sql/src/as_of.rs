//! Which state of the store a session reads.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};

use crate::{Error, Result};

/// Which state of the store a session reads (Delta time travel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AsOf {
    /// The latest version of every table.
    #[default]
    Latest,
    /// `sites` at this Delta version (versions are per table); the other tables latest.
    Version(i64),
    /// Every table as it was at this instant (the last commit at or before it).
    Timestamp(DateTime<Utc>),
}

impl AsOf {
    /// Parse a timestamp: RFC 3339, or `YYYY-MM-DD[ HH:MM[:SS]]` in UTC.
    pub fn parse_timestamp(text: &str) -> Result<Self> {
        let t = text.trim();
        if let Ok(d) = DateTime::parse_from_rfc3339(t) {
            return Ok(Self::Timestamp(d.with_timezone(&Utc)));
        }
        for f in [
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M",
        ] {
            if let Ok(d) = NaiveDateTime::parse_from_str(t, f) {
                return Ok(Self::Timestamp(d.and_utc()));
            }
        }
        if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
            return Ok(Self::Timestamp(d.and_time(NaiveTime::MIN).and_utc()));
        }
        Err(Error::Usage(format!(
            "timestamp {t:?}: expected RFC 3339 (2026-11-25T08:00:00Z) or YYYY-MM-DD[ HH:MM[:SS]] (UTC)"
        )))
    }
}

impl std::fmt::Display for AsOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AsOf::Latest => write!(f, "latest"),
            AsOf::Version(v) => write!(f, "sites version {v}"),
            AsOf::Timestamp(t) => write!(f, "as of {}", t.to_rfc3339()),
        }
    }
}

impl From<AsOf> for cellshard_store::table::TablesAsOf {
    fn from(a: AsOf) -> Self {
        match a {
            AsOf::Latest => Self::Latest,
            AsOf::Version(v) => Self::SitesVersion(v),
            AsOf::Timestamp(t) => Self::Timestamp(t),
        }
    }
}
