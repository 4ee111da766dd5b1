//! Runtime errors: these fail a run. Bad input fails a site, not the run, and never
//! reaches here: [`crate::plate::judge`] turns it into reject rows.

/// Result with the runtime [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Configuration or metadata could not be used.
    #[error(transparent)]
    Config(#[from] cellshard_core::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] cellshard_store::Error),
    /// Listing or reading the source failed as a whole.
    #[error("source {url}: {source}")]
    Source {
        /// Where.
        url: String,
        /// The cause.
        #[source]
        source: object_store::Error,
    },
    /// A source object could not be read because the storage failed (after the object
    /// store client's retries): the run fails and nothing of the object's plate is
    /// committed, so a rerun can complete it.
    #[error("{0} (the storage failed after retries; nothing of this plate was committed)")]
    External(cellshard_core::SiteError),
    /// Every object of a plate was refused (403/404): a credentials or bucket-policy
    /// problem rather than bad input. Nothing of the plate is committed, so its published
    /// build stays.
    #[error(
        "plate {plate}: every source object was refused, e.g. {first}; check the credentials and the bucket policy (nothing of this plate was committed)"
    )]
    PlateUnreadable {
        /// The plate.
        plate: String,
        /// The first refusal.
        first: String,
    },
    /// `--plates` / `--experiments` name plates the source does not have.
    #[error("{0}")]
    Selection(String),
    /// An option out of its range (the message names it and the range).
    #[error("{0}")]
    Usage(String),
    /// The scratch disk filled up while a plate was spilled.
    #[error(
        "scratch directory {dir} is full: plate {plate} needs {needed} bytes of scratch (two plates are spilled at a time); free space or point --scratch elsewhere"
    )]
    ScratchFull {
        /// Scratch directory.
        dir: String,
        /// The plate.
        plate: String,
        /// Bytes the plate's spill needs.
        needed: u64,
    },
    /// Local scratch I/O failed.
    #[error("scratch file in {dir}: {source}")]
    Scratch {
        /// Scratch directory.
        dir: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A worker thread died; this is a bug.
    #[error("internal error: {0}")]
    Internal(String),
    /// Objects were neither stored, rejected nor ignored; this is a bug.
    #[error("conservation violated: {0}")]
    Conservation(String),
}

impl Error {
    /// Whose fault the run's failure is (see [`cellshard_core::ErrorClass`]).
    pub fn class(&self) -> cellshard_core::ErrorClass {
        use cellshard_core::ErrorClass as C;
        match self {
            Error::Config(e) => e.class(),
            Error::Store(e) => e.class(),
            Error::Source { source, .. } => cellshard_store::object_store_class(source),
            Error::External(_) | Error::PlateUnreadable { .. } => C::External,
            Error::Selection(_) | Error::Usage(_) => C::BadInput,
            Error::ScratchFull { .. } | Error::Scratch { .. } => C::External,
            Error::Internal(_) | Error::Conservation(_) => C::Internal,
        }
    }
}
