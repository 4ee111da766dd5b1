//! Core types of cellshard: pipeline configuration, the object-key layout, site keys,
//! experiment metadata and reject reasons.
//!
//! This crate sits at the bottom of the workspace and every other crate depends on it.
//! It must never do I/O, spawn threads or depend on the storage or query stack: it parses
//! and validates bytes handed to it, so it is cheap to test and to fuzz.

pub mod error;
pub mod failure;
pub mod layout;
pub mod metadata;
pub mod palette;
pub mod pipeline;
pub mod plate;
pub mod reject;
pub mod report;
pub mod rxrx1;
pub mod site;
pub mod size;

pub use error::{Error, Result};
pub use failure::{ErrorClass, SiteError};
pub use layout::{KeyFields, LayoutTemplate};
pub use metadata::{MetadataTable, SiteMetadata};
pub use pipeline::{
    Channels, ImageFormat, NormalizeMethod, OutputDtype, Pipeline, Reference, Stage,
};
pub use reject::RejectReason;
pub use report::error_line;
pub use site::{PlateKey, SiteKey};
pub use size::ByteSize;
