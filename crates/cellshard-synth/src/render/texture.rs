//! Tileable textures and periodic profiles that the stain models sample: smoothed noise,
//! mitochondrial tubules, stress fibres.

use crate::rng::Rng;

const TILE: usize = 512;
#[allow(clippy::cast_possible_truncation, reason = "TILE is 512")]
const TILE_MASK: u32 = TILE as u32 - 1;
const LINE: usize = 1024;

/// A tileable texture, 512 x 512.
pub(super) struct Tile(Vec<f32>);

impl Tile {
    #[inline]
    #[allow(
        clippy::cast_sign_loss,
        reason = "negative coordinates wrap around the tile: only the masked bits are used"
    )]
    pub(super) fn at(&self, x: i32, y: i32) -> f32 {
        let k = (((y as u32) & TILE_MASK) << 9) | ((x as u32) & TILE_MASK);
        self.0[k as usize]
    }

    /// Smoothed white noise, normalized to mean 0 and standard deviation 1.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "the rounded radius saturates at 0: a negative radius blurs nothing"
    )]
    pub(super) fn smooth(seed: u64, radius: f32) -> Tile {
        let mut rng = Rng::new(seed);
        let mut data: Vec<f32> = (0..TILE * TILE).map(|_| rng.f32() - 0.5).collect();
        let r = radius.round() as usize;
        if r > 0 {
            blur(&mut data, r);
            blur(&mut data, r);
        }
        normalize(&mut data);
        Tile(data)
    }

    /// Short, slightly bent tubules at random orientations (mitochondria): values >= 0.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "positive counts and radii of a synthetic texture, far below usize::MAX"
    )]
    pub(super) fn tubules(seed: u64, scale: f32) -> Tile {
        let mut rng = Rng::new(seed);
        let mut data = vec![0f32; TILE * TILE];
        let width = (2.0 * scale).max(0.8);
        let length = (12.0 * scale).max(1.0);
        let count = ((TILE * TILE) as f32 * 0.3 / (length * 2.0 * width)).max(1.0) as usize;
        for _ in 0..count {
            let mut x = rng.range(0.0, TILE as f32);
            let mut y = rng.range(0.0, TILE as f32);
            let mut dir = rng.range(0.0, std::f32::consts::TAU);
            let len = length * rng.range(0.4, 1.3);
            let bright = rng.range(0.5, 1.0);
            let steps = (len / (0.5 * width)).ceil().max(1.0) as usize;
            let step = len / steps as f32;
            for _ in 0..=steps {
                stamp(&mut data, x, y, width, bright);
                dir += 0.15 * rng.normal();
                x += step * dir.cos();
                y += step * dir.sin();
            }
        }
        blur(&mut data, (1.2 * scale).round().max(1.0) as usize);
        Tile(data)
    }
}

/// Add a soft disc (max 1) at a point, wrapping around the tile.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "pixel offsets on the 512 x 512 tile; negative coordinates wrap (only the masked bits are used)"
)]
fn stamp(data: &mut [f32], x: f32, y: f32, radius: f32, bright: f32) {
    let r = radius.ceil() as i32 + 1;
    let (xi, yi) = (x.floor() as i32, y.floor() as i32);
    for dy in -r..=r {
        for dx in -r..=r {
            let (px, py) = (xi + dx, yi + dy);
            let d2 = (px as f32 + 0.5 - x).powi(2) + (py as f32 + 0.5 - y).powi(2);
            let t = d2 / (radius * radius);
            if t < 1.0 {
                let k = ((((py as u32) & TILE_MASK) << 9) | ((px as u32) & TILE_MASK)) as usize;
                let w = 1.0 - t;
                data[k] = data[k].max(bright * w * w);
            }
        }
    }
}

/// Separable box blur with wrap-around, radius `r`, on a TILE x TILE buffer.
fn blur(data: &mut [f32], r: usize) {
    let mut tmp = vec![0f32; TILE * TILE];
    let norm = 1.0 / (2 * r + 1) as f32;
    for pass in 0..2 {
        let (src, dst): (&[f32], &mut [f32]) = if pass == 0 {
            (data, &mut tmp)
        } else {
            (&tmp, data)
        };
        for line in 0..TILE {
            // pass 0 runs along rows and writes transposed; pass 1 does the same again.
            let at = |i: usize| src[line * TILE + (i % TILE)];
            let mut sum: f32 = (0..=2 * r).map(|i| at(i + TILE - r)).sum();
            for i in 0..TILE {
                dst[i * TILE + line] = sum * norm;
                sum += at(i + r + 1) - at(i + TILE - r);
            }
        }
    }
}

#[allow(
    clippy::cast_possible_truncation,
    reason = "f32 texture values, computed in f64"
)]
fn normalize(data: &mut [f32]) {
    let n = data.len() as f64;
    let mean = data.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = data
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    let inv = if var > 0.0 { 1.0 / var.sqrt() } else { 1.0 };
    for v in data {
        *v = ((f64::from(*v) - mean) * inv) as f32;
    }
}

/// A periodic 1-D profile with linear interpolation.
pub(super) struct Line(Vec<f32>);

impl Line {
    #[inline]
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "t is shifted to be non-negative: its integer part is the sample index"
    )]
    pub(super) fn at(&self, t: f32) -> f32 {
        // Shift to positive so truncation is floor (no libm call in the pixel loop); the
        // shift is a multiple of the period.
        let t = (t + (8 * LINE) as f32).max(0.0);
        let i = t as u32;
        let w = t - i as f32;
        let i = i as usize;
        let a = self.0[i & (LINE - 1)];
        let b = self.0[(i + 1) & (LINE - 1)];
        a + (b - a) * w
    }

    /// Parallel thin lines of varied brightness (stress fibres seen across their direction).
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "positions on the 1,024-sample line, masked to it"
    )]
    pub(super) fn fibres(seed: u64, scale: f32) -> Line {
        let mut rng = Rng::new(seed);
        let mut data = vec![0f32; LINE];
        let sigma = (0.9 * scale).max(0.6);
        let mut pos = 8.0;
        while pos < (LINE - 8) as f32 {
            let bright = if rng.f32() < 0.35 {
                rng.range(0.6, 1.0)
            } else {
                rng.range(0.1, 0.35)
            };
            let reach = (3.0 * sigma).ceil() as i32;
            for d in -reach..=reach {
                let j = (pos.round() as i32 + d) as usize & (LINE - 1);
                let dist = j as f32 - pos;
                data[j] += bright * (-dist * dist / (2.0 * sigma * sigma)).exp();
            }
            pos += (rng.range(5.0, 20.0) * scale).max(1.6);
        }
        Line(data)
    }

    /// Slow variation in [0.05, 1] (fibre intensity along its length: fibres start and end).
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a positive blur radius in samples"
    )]
    pub(super) fn slow(seed: u64, scale: f32) -> Line {
        let mut rng = Rng::new(seed);
        let raw: Vec<f32> = (0..LINE).map(|_| rng.f32()).collect();
        let r = (14.0 * scale).round().max(1.0) as usize;
        let mut data: Vec<f32> = (0..LINE)
            .map(|i| {
                (0..=2 * r)
                    .map(|k| raw[(i + LINE + k - r) & (LINE - 1)])
                    .sum::<f32>()
                    / (2 * r + 1) as f32
            })
            .collect();
        let (lo, hi) = data
            .iter()
            .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
        let span = (hi - lo).max(1e-6);
        for v in &mut data {
            *v = 0.05 + 0.95 * ((*v - lo) / span).powf(1.5);
        }
        Line(data)
    }
}
