//! Pictures of a cellshard store: site composites in the RxRx1 viewer colours, contact
//! sheets, 16x24 plate heatmaps of per-site statistics (`cellshard render`), and a
//! read-only web viewer over the same SQL session (`cellshard serve`).

pub mod canvas;
pub mod colormap;
pub mod data;
pub mod render;
pub mod serve;
pub mod stat;

use cellshard_core::ErrorClass;

/// Result with the viewer's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Rendering and serving failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A query or the session failed.
    #[error(transparent)]
    Sql(#[from] cellshard_sql::Error),
    /// A query failed while it ran.
    #[error("{0}")]
    Query(#[from] datafusion::error::DataFusionError),
    /// A result column could not be read.
    #[error("reading results: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Bad arguments or input (the message says which and why).
    #[error("{0}")]
    Usage(String),
    /// What the request names is not in the store: a site, a plate.
    #[error("{0}")]
    NotFound(String),
    /// A query or picture ran past the time limit and was stopped.
    #[error("the query was stopped after {} s (the viewer's --query-timeout)", .0.as_secs_f64())]
    Timeout(std::time::Duration),
    /// As many queries as the viewer runs at once are running.
    #[error(
        "{0} queries are already running, the most this viewer runs at once (--max-queries); retry shortly"
    )]
    Busy(usize),
    /// A query failed in a query worker process, with the class it had there.
    #[error("{message}")]
    Remote {
        /// Whose fault it is.
        class: ErrorClass,
        /// What happened.
        message: String,
    },
    /// A bug: a query task panicked or an invariant broke.
    #[error("internal error: {0}")]
    Internal(String),
    /// Reading or writing a file or socket.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Whose fault the failure is (see [`cellshard_core::ErrorClass`]); the viewer's HTTP
    /// status and the command's exit status follow from it.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Sql(e) => e.class(),
            Error::Query(e) => cellshard_sql::datafusion_class(e),
            Error::Arrow(_) | Error::Internal(_) => ErrorClass::Internal,
            Error::Usage(_) => ErrorClass::BadInput,
            Error::NotFound(_) => ErrorClass::NotFound,
            Error::Timeout(_) | Error::Busy(_) => ErrorClass::External,
            Error::Remote { class, .. } => *class,
            Error::Io(e) => cellshard_sql::io_class(e),
        }
    }
}
