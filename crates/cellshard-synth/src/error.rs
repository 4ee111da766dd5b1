//! Errors of the synthetic data generator.

/// Result with the synth [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while selecting, rendering or writing synthetic data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is out of range; the message names the field and the allowed values.
    #[error("invalid synth configuration: {0}")]
    Config(String),
    /// The design (metadata table) has no usable rows.
    #[error("the design has no sites (is the metadata file empty?)")]
    EmptyDesign,
    /// An experiment asked for is not in the design.
    #[error("experiment {name} is not in the design (it has {known})")]
    UnknownExperiment {
        /// The experiment asked for.
        name: String,
        /// A short list of the experiments the design does have.
        known: String,
    },
    /// More plates (or sites) were asked for than the design has.
    #[error("{0}")]
    NotInDesign(String),
    /// A site has no dataset but the layout needs `{dataset}`.
    #[error("site {site_id} has no dataset, but the layout {layout:?} needs one")]
    MissingDataset {
        /// The site (`{experiment}_{plate}_{well}_{site}`).
        site_id: String,
        /// The layout template.
        layout: String,
    },
    /// The layout template or a metadata file is malformed.
    #[error(transparent)]
    Core(#[from] cellshard_core::Error),
    /// A rendered key is not a valid object path.
    #[error("invalid object path {path:?}: {source}")]
    Path {
        /// The path text.
        path: String,
        /// Why object_store refused it.
        source: object_store::path::Error,
    },
    /// PNG encoding failed.
    #[error("PNG encoding failed: {0}")]
    Png(#[from] png::EncodingError),
    /// Writing the metadata CSV failed.
    #[error("writing metadata.csv failed: {0}")]
    Csv(String),
    /// A put to the object store failed.
    #[error("object store write failed: {0}")]
    Store(#[from] Box<object_store::Error>),
    /// A rendering task panicked or was cancelled.
    #[error("render task failed: {0}")]
    Task(String),
}

impl From<object_store::Error> for Error {
    fn from(e: object_store::Error) -> Self {
        Error::Store(Box::new(e))
    }
}

impl Error {
    /// Whose fault the failure is: a configuration or design that cannot be drawn is bad
    /// input; a failed write keeps the store's class.
    pub fn class(&self) -> cellshard_core::ErrorClass {
        use cellshard_core::ErrorClass;
        match self {
            Error::Config(_)
            | Error::EmptyDesign
            | Error::UnknownExperiment { .. }
            | Error::NotInDesign(_)
            | Error::MissingDataset { .. }
            | Error::Path { .. } => ErrorClass::BadInput,
            Error::Core(e) => e.class(),
            Error::Store(e) => match e.as_ref() {
                object_store::Error::NotFound { .. } => ErrorClass::NotFound,
                _ => ErrorClass::External,
            },
            Error::Png(_) | Error::Csv(_) | Error::Task(_) => ErrorClass::Internal,
        }
    }
}
