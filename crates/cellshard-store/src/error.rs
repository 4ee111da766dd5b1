//! Store errors, classified: the location is wrong (user input), or the store failed
//! (external; may be retried), or the table is not what we wrote (bug or foreign table).

use cellshard_core::ErrorClass;

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
    /// Nothing is there: a local store directory, or a table version, that does not exist.
    #[error("{url}: {message}")]
    Missing {
        /// Where.
        url: String,
        /// What is missing.
        message: String,
    },
    /// A local directory could not be created (permissions, a full disk, a file in the way).
    #[error("cannot create the directory {path}: {source}")]
    Create {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
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
    /// Values given to a write that it cannot take (the message says which and why).
    #[error("invalid input: {0}")]
    Input(String),
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

impl Error {
    /// Whose fault the failure is: a bad location is the request's, a missing table or
    /// version is not found, an object store or Delta failure is external unless its cause
    /// says otherwise, and rows that do not fit are a bug.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Location { .. } | Error::Input(_) => ErrorClass::BadInput,
            Error::Missing { .. } => ErrorClass::NotFound,
            Error::Create { .. } => ErrorClass::External,
            Error::ObjectStore { source, .. } => object_store_class(source),
            Error::Delta { source, .. } => delta_class(source),
            Error::Write { .. } | Error::Arrow { .. } => ErrorClass::Internal,
        }
    }
}

/// The class of an object store failure at a request's edge: a missing object is not
/// found, a malformed path or option is bad input, anything else is the service's.
pub fn object_store_class(e: &object_store::Error) -> ErrorClass {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => ErrorClass::NotFound,
        E::InvalidPath { .. }
        | E::UnknownConfigurationKey { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. } => ErrorClass::BadInput,
        _ => ErrorClass::External,
    }
}

/// The class of a Delta failure: no table or no such version is not found; an object
/// store cause keeps its class; a log or data file that cannot be read is external.
pub fn delta_class(e: &deltalake::DeltaTableError) -> ErrorClass {
    use deltalake::DeltaTableError as D;
    match e {
        D::NotATable(_) | D::InvalidVersion(_) | D::InvalidTableLocation(_) => ErrorClass::NotFound,
        D::ObjectStore { source } => object_store_class(source),
        D::InvalidDateTimeString { .. } | D::InvalidPartitionFilter { .. } => ErrorClass::BadInput,
        _ => ErrorClass::External,
    }
}
