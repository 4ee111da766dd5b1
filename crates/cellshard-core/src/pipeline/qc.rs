//! The optional `[qc]` section: the thresholds that set a site's `qc_pass` and `qc_flags`.

use serde::{Deserialize, Serialize};

/// QC thresholds. A site fails (`qc_pass = false`) with a flag per reason:
/// - `saturated`: some channel has more than `max_saturation` of its pixels at the top of
///   the bit depth;
/// - `empty`: the DNA channel's nuclei estimate is below `min_nuclei`;
/// - `out_of_focus`: the DNA channel's focus is more than `focus_mads` median absolute
///   deviations below the plate's median focus.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QcConfig {
    /// Largest fraction of saturated pixels in any channel (default 0.01).
    #[serde(default = "default_saturation")]
    pub max_saturation: f64,
    /// Fewest nuclei (estimated) in the DNA channel (default 1).
    #[serde(default = "default_nuclei")]
    pub min_nuclei: u32,
    /// How many median absolute deviations below the plate's median focus fail (default 4).
    #[serde(default = "default_focus_mads")]
    pub focus_mads: f64,
}

impl Default for QcConfig {
    fn default() -> Self {
        QcConfig {
            max_saturation: default_saturation(),
            min_nuclei: default_nuclei(),
            focus_mads: default_focus_mads(),
        }
    }
}

impl QcConfig {
    pub(super) fn check(&self) -> std::result::Result<(), String> {
        if !(0.0..=1.0).contains(&self.max_saturation) {
            return Err(format!(
                "qc.max_saturation = {}: must be in 0..=1",
                self.max_saturation
            ));
        }
        if !(self.focus_mads > 0.0 && self.focus_mads.is_finite()) {
            return Err(format!(
                "qc.focus_mads = {}: must be positive",
                self.focus_mads
            ));
        }
        Ok(())
    }
}

fn default_saturation() -> f64 {
    0.01
}
fn default_nuclei() -> u32 {
    1
}
fn default_focus_mads() -> f64 {
    4.0
}
