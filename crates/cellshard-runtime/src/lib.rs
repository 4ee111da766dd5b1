//! The cellshard runtime: discovery of raw images, the per-plate two-phase transform, and
//! the run that ties source, metadata and store together.
//!
//! I/O (listing, GETs, commits) runs on the async runtime; all pixel work runs on one
//! bounded CPU pool ([`pool::CpuPool`]). Work is bounded per plate: at most `inflight`
//! sites are fetched or transformed at once and a plate's cropped pixels are spilled to a
//! local scratch file between the two phases, so memory does not
//! grow with the number of plates or with plate size. This crate never defines pixel math
//! (that is `cellshard-stages`) nor table formats (that is `cellshard-store`).

pub mod discover;
pub mod error;
mod fetch;
pub mod fingerprint;
pub mod illum;
pub mod metadata;
pub mod options;
pub mod phase1;
pub mod phase2;
pub mod plan;
pub mod plate;
pub mod pool;
mod resolve;
pub mod resources;
pub mod run;
mod select;
mod spill;
pub mod summary;

pub use error::{Error, Result};
pub use options::RunOptions;
pub use plan::{Plan, PlanAction, PlatePlan, plan, plan_listing};
pub use run::run;
pub use summary::RunSummary;
