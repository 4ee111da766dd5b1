//! The cellshard store: object-store locations and the Delta tables (`sites`,
//! `plate_stats`, `rejects`, `runs`, and `embeddings` once written) under one root URL.
//!
//! This crate owns every byte written to the store and the commit protocol: Parquet
//! encoding and uploads ([`shard`]), the plate writer and the publication order that keeps
//! every published state whole ([`publish`]), and every commit ([`commit`]). A
//! plate's new files replace its earlier build's in one `sites` transaction, so a rerun is
//! idempotent. It does no image work and never decides what a site contains.

pub mod builds;
pub mod commit;
pub mod counting;
pub mod embeddings;
pub mod error;
pub mod io;
pub mod location;
pub mod maintain;
pub mod pause;
pub mod profiles;
pub mod publish;
pub mod read;
pub mod schema;
pub mod shard;
pub mod table;

pub use counting::{ReadSnapshot, ReadStats};
pub use error::{Error, Result, delta_class, object_store_class};
pub use location::Location;
pub use publish::{PlateBuild, PlateCommit, PlateWriter, PreparedPlate, ShardWriter, WrittenFile};
pub use read::ReadBuffers;
pub use table::{PlateScope, StoreTables};
