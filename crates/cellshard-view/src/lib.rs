//! Pictures of a cellshard store: site composites in the RxRx1 viewer colours, contact
//! sheets, 16x24 plate heatmaps of per-site statistics (`cellshard render`), and a
//! read-only web viewer over the same SQL session (`cellshard serve`).

pub mod canvas;
pub mod colormap;
pub mod data;
pub mod render;
pub mod serve;

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
    /// Reading or writing a file or socket.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
