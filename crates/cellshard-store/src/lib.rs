//! The cellshard store: object-store locations and the four Delta tables (`sites`,
//! `plate_stats`, `rejects`, `runs`) under one root URL.
//!
//! This crate owns every byte written to the store and the commit protocol: a plate's
//! shard files are written, then committed in one Delta transaction that also removes the
//! files of any earlier build of the same plate, so a plate is replaced atomically and a
//! rerun is idempotent. It does no image work and never decides what a site contains.

pub mod counting;
pub mod error;
pub mod location;
pub mod schema;
pub mod table;

pub use counting::{ReadSnapshot, ReadStats};
pub use error::{Error, Result};
pub use location::Location;
pub use table::{PlateScope, StoreTables};
