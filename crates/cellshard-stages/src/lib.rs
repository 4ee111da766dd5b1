//! The image stages of cellshard: PNG decode, 2x downsample, center crop, per-plate
//! histograms and normalization, and stacking into a channel-major tensor.
//!
//! Pure CPU code on byte slices and `Vec`s: no async, no I/O, no threads of its own. The
//! runtime calls it from a bounded CPU pool. The exact semantics are pinned by tests here
//! (unit and property tests) because the store's bytes must be reproducible.

pub mod crop;
pub mod downsample;
pub mod histogram;
pub mod illum;
pub mod image;
pub mod map;
pub mod normalize;
pub mod plane;
pub mod png;
pub mod profile;
pub mod qc;
pub mod tensor;
pub mod tiff;
pub mod vector;

pub use tensor::SiteTensor;

pub use histogram::Histogram;
pub use normalize::{ChannelNorm, PlateNorm};
pub use plane::Plane;
pub use png::{DecodeError, DecodeSpec};
