//! What to generate: the [`SynthConfig`] and its checks.

use cellshard_core::layout::RXRX1_LAYOUT;
use cellshard_core::{LayoutTemplate, SiteMetadata};

use crate::{Error, Result};

/// The largest image side accepted.
const MAX_SIZE: u32 = 16_384;

/// PNG compression effort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SynthCompression {
    /// Fast deflate: quick, a little larger (png `Compression::Fast`).
    #[default]
    Fast,
    /// Balanced, zlib-level-6-like (png `Compression::Balanced`).
    Default,
    /// Slowest, smallest (png `Compression::High`).
    High,
}

impl SynthCompression {
    pub(crate) fn png(self) -> png::Compression {
        match self {
            SynthCompression::Fast => png::Compression::Fast,
            SynthCompression::Default => png::Compression::Balanced,
            SynthCompression::High => png::Compression::High,
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthConfig {
    /// Experiments to generate; `None` = the first experiment of the design (by name).
    pub experiments: Option<Vec<String>>,
    /// The first N plates (by plate number) of each chosen experiment.
    pub plates: u32,
    /// Cap on wells per plate (wells in sorted order, always including the negative control
    /// well B02 where the plate has it); `None` = all wells.
    pub wells: Option<u32>,
    /// Sites per well (the RxRx1 design has 2).
    pub sites: u32,
    /// Image width = height, px (RxRx1 originals: 2048).
    pub size: u32,
    /// 8 or 16 bits per sample.
    pub bit_depth: u8,
    /// Seed of everything random (cell layouts, textures, noise).
    pub seed: u64,
    /// Channels per site (the six Cell Painting stains; above 6 the stain models repeat).
    pub channels: u32,
    /// Object-key layout template, relative to the output prefix.
    pub layout: String,
    /// PNG compression effort.
    pub compression: SynthCompression,
    /// Wells whose sites are drawn out of focus (every channel blurred by `blur_sigma`).
    pub blur_wells: Vec<String>,
    /// Standard deviation of that blur, in pixels.
    pub blur_sigma: u32,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            experiments: None,
            plates: 1,
            wells: None,
            sites: 2,
            size: 2048,
            bit_depth: 16,
            seed: 0,
            channels: 6,
            layout: RXRX1_LAYOUT.to_string(),
            compression: SynthCompression::Fast,
            blur_wells: Vec::new(),
            blur_sigma: 0,
        }
    }
}

impl SynthConfig {
    /// Check the values; the error names the field and what is allowed.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.bit_depth != 8 && self.bit_depth != 16 {
            return bad(format!("bit_depth is {}, must be 8 or 16", self.bit_depth));
        }
        if self.size == 0 || self.size > MAX_SIZE {
            return bad(format!("size is {}, must be 1..={MAX_SIZE}", self.size));
        }
        if self.channels == 0 || self.channels > 64 {
            return bad(format!("channels is {}, must be 1..=64", self.channels));
        }
        if self.plates == 0 {
            return bad("plates is 0, must be at least 1".into());
        }
        if self.sites == 0 {
            return bad("sites is 0, must be at least 1".into());
        }
        if self.wells == Some(0) {
            return bad("wells is 0, must be at least 1 (or unset for all wells)".into());
        }
        LayoutTemplate::parse(&self.layout)?;
        Ok(())
    }
}

/// One site to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSite {
    /// The site's design row, with `site = Some(n)`.
    pub meta: SiteMetadata,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn config_validation_names_the_field() {
        let bad = SynthConfig {
            bit_depth: 12,
            ..SynthConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("bit_depth")
        );
        let bad = SynthConfig {
            layout: "{experiment}/x.png".into(),
            ..SynthConfig::default()
        };
        assert!(bad.validate().is_err());
        assert!(SynthConfig::default().validate().is_ok());
    }
}
