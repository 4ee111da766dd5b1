//! Store errors, classified: the location is wrong (user input), or the store failed
//! (external; may be retried), or the table is not what we wrote (bug or foreign table).

/// Result with the store [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A URL or path that cannot name a store.
    #[error("invalid store location {url:?}: {message}")]
    Location {
        /// The text given.
        url: String,
        /// Why it is invalid.
        message: String,
    },
    /// The object store failed.
    #[error("object store error at {url}: {source}")]
    ObjectStore {
        /// Where.
        url: String,
        /// The cause.
        #[source]
        source: object_store::Error,
    },
    /// A Delta operation failed.
    #[error("Delta table {table}: {source}")]
    Delta {
        /// Table URL.
        table: String,
        /// The cause.
        #[source]
        source: Box<deltalake::DeltaTableError>,
    },
    /// A data file could not be written (encoding, or rows that do not fit the table).
    #[error("writing {url}: {message}")]
    Write {
        /// The file or table.
        url: String,
        /// The cause.
        message: String,
    },
    /// Arrow failed to build a batch (a bug in the caller's rows).
    #[error("building {table} rows: {source}")]
    Arrow {
        /// Table name.
        table: String,
        /// The cause.
        #[source]
        source: arrow::error::ArrowError,
    },
}
