//! Training reads from a cellshard store: the training cluster's loader.
//!
//! A [`Feed`] opens the `sites` table at a pinned Delta version, selects rows with an SQL
//! predicate over the metadata columns (reading those columns, never a tensor of a row it
//! drops), and gives each rank its batches of decoded tensors. The guarantees, each a test:
//! an epoch's order is a pure function of (version, selection, seed, epoch) and never of
//! the world size or any thread count ([`order`]); every step covers G global positions
//! shared among the ranks within one sample, every rank runs the same number of steps, and
//! over an epoch every selected row is seen exactly once (tail policy `pad_masked`); a
//! [`Cursor`] of 53 bytes resumes an epoch in O(1), on any world size; splits are by well
//! ([`split`]). A rank reads only the pages of the rows it needs (the tensor column has
//! one value per page and files carry the page index).
//!
//! This crate reads only; it never writes to the store.

pub mod cursor;
pub mod feed;
pub mod index;
mod local;
pub mod order;
mod page;
mod read;
pub mod split;
mod stream;

pub use cursor::Cursor;
pub use feed::{Feed, FeedOptions, MEMORY_BUDGET, READ_BUDGET, ShuffleQuality};
pub use order::Tail;
pub use read::Batch;
pub use split::SplitSpec;
pub use stream::BatchStream;

/// Result with the feed [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong opening or reading a feed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// There is no store, table or version there.
    #[error("store {url}: {message}")]
    NotFound {
        /// Where.
        url: String,
        /// What is missing.
        message: String,
    },
    /// The store or version cannot be read.
    #[error("store {url}: {message}")]
    Store {
        /// Where.
        url: String,
        /// Why.
        message: String,
    },
    /// The predicate does not parse or names an unknown column.
    #[error("predicate {predicate:?}: {message}")]
    Predicate {
        /// The predicate.
        predicate: String,
        /// Why.
        message: String,
    },
    /// The options are inconsistent.
    #[error("{0}")]
    Usage(String),
    /// A bug: a decode thread died, the feed was used after it closed.
    #[error("internal error: {0}")]
    Internal(String),
    /// A data file could not be read.
    #[error("reading {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// A stored tensor's length disagrees with the shape the table records.
    #[error("{path}, row {row}: the tensor has {len} bytes, the table's shape needs {expected}")]
    Shape {
        /// The file.
        path: String,
        /// Row in the file.
        row: u32,
        /// Bytes found.
        len: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// A location or store error.
    #[error(transparent)]
    Location(#[from] cellshard_store::Error),
    /// Arrow failed (a bug).
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    /// DataFusion failed outside the predicate.
    #[error(transparent)]
    Query(#[from] datafusion::error::DataFusionError),
}

impl Error {
    /// Whose fault the failure is (see [`cellshard_core::ErrorClass`]): a bad predicate,
    /// option or cursor is the caller's, a missing store or version is not found, an
    /// unreadable store or file is external.
    pub fn class(&self) -> cellshard_core::ErrorClass {
        use cellshard_core::ErrorClass as C;
        match self {
            Error::NotFound { .. } => C::NotFound,
            Error::Store { .. } | Error::Read { .. } | Error::Shape { .. } => C::External,
            Error::Predicate { .. } | Error::Usage(_) => C::BadInput,
            Error::Location(e) => e.class(),
            Error::Internal(_) | Error::Arrow(_) | Error::Query(_) => C::Internal,
        }
    }
}
