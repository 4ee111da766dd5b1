//! What is not geometry: a well's siRNA phenotype and the experiment and plate batch gain.

use crate::rng::{combine, hash_str, unit_from};

/// A siRNA's effect on the cells (1.0 = none).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Phenotype {
    pub(crate) size: f32,
    pub(crate) density: f32,
    pub(crate) channel: [f32; 6],
}

/// The phenotype of a well: neutral for negative controls and withheld siRNAs, a few percent
/// for treatments, stronger for positive controls. Depends on the siRNA only, so it is the
/// same in every experiment and plate (that is what a model should learn).
#[allow(clippy::cast_sign_loss, reason = "a hash input: only the bits matter")]
pub(crate) fn phenotype(well_type: &str, sirna_id: Option<i32>) -> Phenotype {
    let neutral = Phenotype {
        size: 1.0,
        density: 1.0,
        channel: [1.0; 6],
    };
    let Some(id) = sirna_id else { return neutral };
    if well_type == "negative_control" {
        return neutral;
    }
    let amp = if well_type == "positive_control" {
        0.15
    } else {
        0.05
    };
    let h = combine(hash_str("sirna"), id as u64);
    let u = |i: u64| unit_from(combine(h, i), -amp, amp);
    let mut channel = [1.0; 6];
    for (i, c) in channel.iter_mut().enumerate() {
        *c = 1.0 + 1.2 * u(10 + i as u64);
    }
    Phenotype {
        size: 1.0 + u(1),
        density: 1.0 + u(2),
        channel,
    }
}

/// Experiment x plate x channel gain: the batch effect. Deterministic from the names only
/// (not the seed): experiment gain in [0.6, 1.4], a channel-specific factor in [0.9, 1.1]
/// and a plate gain in [0.85, 1.15].
pub(crate) fn batch_gain(experiment: &str, plate: u32, channel: u32) -> f32 {
    let e = hash_str(experiment);
    let exp = unit_from(combine(hash_str("gain/experiment"), e), 0.6, 1.4);
    let chan = unit_from(
        combine(combine(hash_str("gain/channel"), e), u64::from(channel)),
        0.9,
        1.1,
    );
    let plate = unit_from(
        combine(combine(hash_str("gain/plate"), e), u64::from(plate)),
        0.85,
        1.15,
    );
    exp * chan * plate
}
