//! Errors of the core crate: all of them are about user input (config, paths, metadata).

/// Result with the core [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while parsing configuration, layouts or metadata.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pipeline file could not be parsed; the message names the key and line.
    #[error("pipeline {path}: {message}")]
    Pipeline {
        /// File the pipeline came from.
        path: String,
        /// What is wrong, including line and column where known.
        message: String,
    },
    /// The layout template itself is malformed.
    #[error("layout template {template:?}: {message}")]
    Layout {
        /// The template text.
        template: String,
        /// What is wrong with it.
        message: String,
    },
    /// A metadata file could not be parsed.
    #[error("metadata {path}: {message}")]
    Metadata {
        /// The metadata object.
        path: String,
        /// What is wrong, with the line number where known.
        message: String,
    },
    /// A size string such as `"256MiB"` could not be parsed.
    #[error(
        "invalid size {0:?}: expected a number with an optional unit (B, KiB, MiB, GiB, KB, MB, GB)"
    )]
    Size(String),
}

impl Error {
    /// Every core error is about what the user gave: a pipeline, layout, metadata or size.
    pub fn class(&self) -> crate::ErrorClass {
        crate::ErrorClass::BadInput
    }
}
