//! Synthetic RxRx1-shaped Cell Painting data: six-channel 8- or 16-bit grayscale PNGs per
//! imaging site, laid out like the public bucket
//! (`{dataset}/{experiment}/Plate{plate}/{well}_s{site}_w{channel}.png`), plus a matching
//! `metadata.csv`, written to any object store.
//!
//! This crate sits beside the pipeline, not in it: integration tests, benchmarks and the
//! CLI's `synth` command use it to produce realistic inputs of any size from the real RxRx1
//! experiment design. Images look like fluorescence microscopy (cells with nuclei, nucleoli,
//! ER, actin, mitochondria, Golgi and membranes; background drift, vignetting, per-experiment
//! and per-plate gain, a small per-siRNA phenotype, shot noise). Everything is deterministic
//! in the seed and the site's identity.
//!
//! It must never read or depend on the pipeline's outputs or stages (its images must stay an
//! independent input), never write anywhere but the store and prefix it is given, never
//! block an async thread with pixel work, and never use a non-deterministic random source.

mod blur;
mod config;
mod design;
mod encode;
mod error;
pub mod jump;
mod render;
mod rng;
pub mod rxrx3;
mod scene;
mod write;

#[cfg(test)]
mod fixtures;

use cellshard_core::MetadataTable;

pub use blur::gaussian_blur;
pub use config::{SynthCompression, SynthConfig, SynthSite};
pub use encode::{encode_png, zlib_stored};
pub use error::{Error, Result};
pub use render::render_channel;
pub use write::{SynthReport, write_dataset};

/// Select the sites of the design that the config asks for, in (experiment, plate, well,
/// site) order. Errors name an unknown experiment, or more plates or sites than the design
/// has.
pub fn select_sites(design: &MetadataTable, cfg: &SynthConfig) -> Result<Vec<SynthSite>> {
    design::select_sites(design, cfg)
}

/// The real RxRx1 experiment design, 125,510 sites (`data/rxrx1/metadata.csv.zst` in the
/// repository, zstd-compressed; see `data/README.md` for its source and license). It is the
/// default design of `cellshard synth` and `cellshard demo`.
pub const RXRX1_DESIGN_ZST: &[u8] = include_bytes!("../../../data/rxrx1/metadata.csv.zst");

/// The name the built-in design goes by in messages.
pub const RXRX1_DESIGN_NAME: &str = "built-in RxRx1 design (data/rxrx1/metadata.csv.zst)";

/// The built-in RxRx1 design ([`RXRX1_DESIGN_ZST`]), parsed.
pub fn rxrx1_design() -> Result<MetadataTable> {
    let text = zstd::decode_all(RXRX1_DESIGN_ZST)
        .map_err(|e| Error::Config(format!("{RXRX1_DESIGN_NAME}: {e}")))?;
    let mut design = MetadataTable::new();
    design.add_csv("metadata.csv", &text)?;
    Ok(design)
}

/// `metadata.csv` content for `sites` in the RxRx1 dialect (what [`write_dataset`] writes),
/// for callers that lay the images out themselves.
pub fn metadata_csv(design: &MetadataTable, sites: &[SynthSite]) -> Result<Vec<u8>> {
    design::metadata_csv(design, sites)
}
