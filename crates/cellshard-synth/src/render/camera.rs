//! The camera's view of a channel's signal: background and its drift, vignetting, batch
//! gain, phenotype, shot and read noise, quantization to 8 or 16 bits.

use crate::rng::{Rng, combine, hash_str, normal_from};
use crate::scene::{Scene, batch_gain};

/// Camera offset, ADU (not affected by light or gain).
const OFFSET: f32 = 200.0;
/// Camera conversion, ADU per photoelectron: shot noise variance = CONVERSION * signal.
const CONVERSION: f32 = 1.6;
/// Read noise, ADU.
const READ_NOISE: f32 = 5.0;
/// Vignetting: relative light loss in the image corners.
const VIGNETTE: f32 = 0.26;
/// 16-bit ADU per 8-bit step.
const EIGHT_BIT_SCALE: f32 = 128.0;
/// Autofluorescence background per stain, ADU at unit gain.
const BACKGROUND: [f32; 6] = [260.0, 380.0, 320.0, 340.0, 300.0, 360.0];

impl Scene {
    /// Background drift, vignetting, batch gain, phenotype, shot and read noise, quantization.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "capped at the sample maximum; `as` saturates below 0 and + 0.5 rounds"
    )]
    pub(super) fn finish(&self, channel: u32, model: usize, seed: u64, sig: &[f32]) -> Vec<u16> {
        let n = self.n;
        let gain = batch_gain(&self.experiment, self.plate, channel);
        let pheno = self.phenotype.channel[model];
        let exp_hash = hash_str(&self.experiment);
        let bg_level =
            BACKGROUND[model] * crate::rng::unit_from(combine(exp_hash, 0xb9), 0.85, 1.15);

        // Smooth background drift: a sum of separable products of slow cosines.
        let mut rng = Rng::new(combine(seed, hash_str("drift")));
        let inv_n = 1.0 / n.max(1) as f32;
        let mut terms: Vec<(f32, Vec<f32>, Vec<f32>)> = Vec::new();
        for _ in 0..3 {
            let amp = rng.range(0.04, 0.1);
            let (fx, px) = (
                rng.range(0.3, 1.1) * std::f32::consts::TAU,
                rng.range(0.0, std::f32::consts::TAU),
            );
            let (fy, py) = (
                rng.range(0.3, 1.1) * std::f32::consts::TAU,
                rng.range(0.0, std::f32::consts::TAU),
            );
            let xs = (0..n)
                .map(|i| (fx * (i as f32 + 0.5) * inv_n + px).cos())
                .collect();
            let ys = (0..n)
                .map(|i| (fy * (i as f32 + 0.5) * inv_n + py).cos())
                .collect();
            terms.push((amp, xs, ys));
        }
        // Vignetting: 1 - VIGNETTE * (ux + uy), with ux + uy = 1 in the corners.
        let v: Vec<f32> = (0..n)
            .map(|i| {
                let u = 2.0 * (i as f32 + 0.5) * inv_n - 1.0;
                0.5 * u * u
            })
            .collect();

        let mut out = vec![0u16; n * n];
        let mut bg_row = vec![0f32; n];
        for y in 0..n {
            bg_row.fill(bg_level);
            for (a, xs, ys) in &terms {
                let k = bg_level * a * ys[y];
                for (b, &cx) in bg_row.iter_mut().zip(xs) {
                    *b += k * cx;
                }
            }
            let mut rng = Rng::new(combine(seed, y as u64));
            let vy = v[y];
            let row = y * n;
            for x in 0..n {
                let light = gain * (1.0 - VIGNETTE * (v[x] + vy));
                let e = light * (bg_row[x] + pheno * sig[row + x].max(0.0));
                let sd = (CONVERSION * e + READ_NOISE * READ_NOISE).sqrt();
                let value = OFFSET + e + sd * normal_from(rng.next_u64());
                // `as` truncates and saturates: + 0.5 rounds the (non-negative) values.
                out[row + x] = if self.eight_bit {
                    (value * (1.0 / EIGHT_BIT_SCALE) + 0.5).min(255.0) as u16
                } else {
                    (value + 0.5).min(65535.0) as u16
                };
            }
        }
        out
    }
}
