//! Per-plate, per-channel normalization derived from exact histograms of the reference
//! population, applied through a 65,536-entry lookup table per channel.
//!
//! `percentile`: clip to `[v_low, v_high]` (the nearest-rank percentiles), then scale to the
//! output range; for integer outputs `round_half_even((x - v_low) * MAX / (v_high - v_low))`
//! in exact integer arithmetic. When `v_high == v_low`, values at or below map to 0 and
//! above to MAX. `zscore`: `(x - mean) / std` as float.

use cellshard_core::{NormalizeMethod, OutputDtype};
use half::f16;

use crate::Histogram;

/// The parameters used for one channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ChannelNorm {
    /// Clip-and-scale bounds (sample values).
    Percentile {
        /// Value at the lower percentile.
        lo: u16,
        /// Value at the upper percentile.
        hi: u16,
    },
    /// Mean and population standard deviation.
    Zscore {
        /// Mean.
        mean: f64,
        /// Standard deviation (> 0).
        std: f64,
    },
}

/// Every channel's parameters and lookup table for one plate.
#[derive(Debug, Clone)]
pub struct PlateNorm {
    /// Per-channel parameters.
    pub channels: Vec<ChannelNorm>,
    /// Output element type.
    pub output: OutputDtype,
    luts: Vec<Vec<u8>>,
}

/// `num / den` rounded half to even, for `den > 0`.
fn div_round_half_even(num: u64, den: u64) -> u64 {
    let (q, r) = (num / den, num % den);
    match (2 * r).cmp(&den) {
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => q + (q & 1),
        std::cmp::Ordering::Less => q,
    }
}

impl ChannelNorm {
    /// Derive a channel's parameters from its reference histogram.
    pub fn from_histogram(
        method: NormalizeMethod,
        low: f64,
        high: f64,
        h: &Histogram,
    ) -> Result<Self, String> {
        if h.total() == 0 {
            return Err("no reference pixels".into());
        }
        match method {
            NormalizeMethod::Percentile => Ok(ChannelNorm::Percentile {
                lo: h.percentile(low).unwrap_or(0),
                hi: h.percentile(high).unwrap_or(0),
            }),
            NormalizeMethod::Zscore => {
                let mean = h.mean().unwrap_or(0.0);
                let std = h.std().unwrap_or(0.0);
                if std <= 0.0 {
                    return Err(format!(
                        "the reference pixels are constant ({mean}); the standard deviation is 0"
                    ));
                }
                Ok(ChannelNorm::Zscore { mean, std })
            }
        }
    }

    /// Map one sample to the output type, as little-endian bytes appended to `out`.
    #[allow(
        clippy::cast_possible_truncation,
        reason = "int(x, max) is at most max; f32 output is the f64 value rounded to f32"
    )]
    fn map(&self, x: u16, output: OutputDtype, out: &mut Vec<u8>) {
        let unit = |x: u16| -> f64 {
            match *self {
                ChannelNorm::Percentile { lo, hi } => {
                    if hi <= lo {
                        if x <= lo { 0.0 } else { 1.0 }
                    } else {
                        (f64::from(x.clamp(lo, hi)) - f64::from(lo)) / f64::from(hi - lo)
                    }
                }
                ChannelNorm::Zscore { mean, std } => (f64::from(x) - mean) / std,
            }
        };
        let int = |x: u16, max: u64| -> u64 {
            match *self {
                ChannelNorm::Percentile { lo, hi } if hi > lo => {
                    let c = u64::from(x.clamp(lo, hi) - lo);
                    div_round_half_even(c * max, u64::from(hi - lo))
                }
                ChannelNorm::Percentile { lo, .. } => {
                    if x <= lo {
                        0
                    } else {
                        max
                    }
                }
                // zscore with an integer output is refused by pipeline validation.
                ChannelNorm::Zscore { .. } => 0,
            }
        };
        match output {
            OutputDtype::U8 => out.push(int(x, 255) as u8),
            OutputDtype::U16 => out.extend_from_slice(&(int(x, 65535) as u16).to_le_bytes()),
            OutputDtype::F32 => out.extend_from_slice(&(unit(x) as f32).to_le_bytes()),
            OutputDtype::F16 => out.extend_from_slice(&f16::from_f64(unit(x)).to_le_bytes()),
        }
    }
}

impl PlateNorm {
    /// Build the lookup tables for a plate.
    pub fn new(channels: Vec<ChannelNorm>, output: OutputDtype) -> Self {
        let luts = channels
            .iter()
            .map(|c| {
                let mut lut = Vec::with_capacity(65536 * output.size());
                for x in 0..=u16::MAX {
                    c.map(x, output, &mut lut);
                }
                lut
            })
            .collect();
        Self {
            channels,
            output,
            luts,
        }
    }

    /// Append the normalized samples of `channel` to `out` (little-endian).
    pub fn apply(&self, channel: usize, samples: &[u16], out: &mut Vec<u8>) {
        let lut = &self.luts[channel];
        match self.output.size() {
            1 => out.extend(samples.iter().map(|&x| lut[usize::from(x)])),
            size => {
                for &x in samples {
                    let i = usize::from(x) * size;
                    out.extend_from_slice(&lut[i..i + size]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn apply1(n: &PlateNorm, xs: &[u16]) -> Vec<u8> {
        let mut out = Vec::new();
        n.apply(0, xs, &mut out);
        out
    }

    #[test]
    fn percentile_to_u8() {
        let n = PlateNorm::new(
            vec![ChannelNorm::Percentile { lo: 100, hi: 610 }],
            OutputDtype::U8,
        );
        // 0..=100 -> 0, 610.. -> 255, midpoint 355 -> 127.5 -> 128 (ties to even), 101 -> 0.5 -> 0
        assert_eq!(
            apply1(&n, &[0, 100, 610, 65535, 355, 101, 103]),
            vec![0, 0, 255, 255, 128, 0, 2]
        );
    }

    #[test]
    fn degenerate_range_and_zscore() {
        let n = PlateNorm::new(
            vec![ChannelNorm::Percentile { lo: 7, hi: 7 }],
            OutputDtype::U8,
        );
        assert_eq!(apply1(&n, &[6, 7, 8]), vec![0, 0, 255]);
        let z = PlateNorm::new(
            vec![ChannelNorm::Zscore {
                mean: 10.0,
                std: 2.0,
            }],
            OutputDtype::F32,
        );
        let b = apply1(&z, &[14]);
        assert_eq!(f32::from_le_bytes([b[0], b[1], b[2], b[3]]), 2.0);
        let mut h = Histogram::new();
        h.add(&[5, 5, 5]);
        assert!(ChannelNorm::from_histogram(NormalizeMethod::Zscore, 0.0, 0.0, &h).is_err());
        assert!(
            ChannelNorm::from_histogram(NormalizeMethod::Percentile, 0.1, 99.9, &Histogram::new())
                .is_err()
        );
    }

    proptest! {
        #[test]
        fn u8_mapping_is_monotone_and_in_range(lo in 0u16..60000, width in 1u16..5000, xs in proptest::collection::vec(any::<u16>(), 1..100)) {
            let hi = lo + width;
            let n = PlateNorm::new(vec![ChannelNorm::Percentile { lo, hi }], OutputDtype::U8);
            let mut sorted = xs.clone();
            sorted.sort_unstable();
            let out = apply1(&n, &sorted);
            prop_assert!(out.windows(2).all(|w| w[0] <= w[1]));
            for (&x, &o) in sorted.iter().zip(&out) {
                if x <= lo { prop_assert_eq!(o, 0); }
                if x >= hi { prop_assert_eq!(o, 255); }
                let exact = (f64::from(x.clamp(lo, hi) - lo)) * 255.0 / f64::from(width);
                prop_assert!((f64::from(o) - exact).abs() <= 0.5);
            }
        }
    }
}
