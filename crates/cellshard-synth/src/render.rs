//! Channel rendering: stain models over a [`Scene`], then illumination, batch gain, shot
//! noise and quantization.
//!
//! Each channel is built in one `f32` signal buffer: per-object passes (nuclei, nucleoli)
//! touch only their bounding boxes, per-cell stains are shaded in one pass over the owner
//! raster, and smooth fields (background drift, vignetting) are separable, so no per-pixel
//! transcendental functions are evaluated.

use crate::rng::{Rng, combine, hash_str, normal_from};
use crate::scene::{Cell, NONE, Scene, batch_gain};

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

const DNA: f32 = 11_000.0;
const ER: f32 = 4_600.0;
const ACTIN: f32 = 7_000.0;
const RNA: f32 = 7_000.0;
const NUCLEOLUS: f32 = 9_000.0;
const MITO: f32 = 6_500.0;
const GOLGI: f32 = 5_500.0;

const TILE: usize = 512;
const TILE_MASK: u32 = TILE as u32 - 1;
const LINE: usize = 1024;

/// A tileable texture, 512 x 512.
struct Tile(Vec<f32>);

impl Tile {
    #[inline]
    fn at(&self, x: i32, y: i32) -> f32 {
        let k = (((y as u32) & TILE_MASK) << 9) | ((x as u32) & TILE_MASK);
        self.0[k as usize]
    }

    /// Smoothed white noise, normalized to mean 0 and standard deviation 1.
    fn smooth(seed: u64, radius: f32) -> Tile {
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
    fn tubules(seed: u64, scale: f32) -> Tile {
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
struct Line(Vec<f32>);

impl Line {
    #[inline]
    fn at(&self, t: f32) -> f32 {
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
    fn fibres(seed: u64, scale: f32) -> Line {
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
    fn slow(seed: u64, scale: f32) -> Line {
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

/// A bump with support [0, 1): (1 - t^2)^2.
#[inline]
fn bump(t: f32) -> f32 {
    if t < 1.0 {
        let u = 1.0 - t * t;
        u * u
    } else {
        0.0
    }
}

#[inline]
fn smooth01(t: f32) -> f32 {
    let t = t.clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// What the per-cell shaders see at one pixel.
struct Px {
    xi: i32,
    yi: i32,
    x: f32,
    y: f32,
    /// Normalized radius in the owning cell: 0 at its centre, 1 at its free boundary.
    rho: f32,
    /// Normalized distance to the nearest boundary (free edge or neighbouring cell).
    edge: f32,
}

impl Scene {
    /// Render one channel (1-based; channels above 6 reuse the six stain models with their
    /// own noise) as `n * n` samples.
    pub(crate) fn render(&self, channel: u32) -> Vec<u16> {
        let model = ((channel.max(1) - 1) % 6) as usize;
        let seed = combine(combine(self.seed, hash_str("channel")), u64::from(channel));
        let n = self.n;
        let mut sig = vec![0f32; n * n];
        let sub = |k: u64| combine(seed, k);
        let s = self.scale;
        // Optics blur everything over a pixel or two: no texture is finer than that.
        let fine_r = (1.2 * s).max(1.0);
        match model {
            0 => {
                let coarse = Tile::smooth(sub(1), 3.0 * s);
                let fine = Tile::smooth(sub(2), fine_r);
                self.nuclei(&mut sig, &coarse, &fine);
                self.nucleoli_pass(&mut sig, |cell, b, _| -0.38 * b * cell.dna.min(1.3), true);
            }
            1 => {
                let net = Tile::smooth(sub(1), 1.6 * s);
                let fine = Tile::smooth(sub(2), fine_r);
                self.shade(&mut sig, |c, p| {
                    let rn = c.nuc_r(p.x, p.y);
                    let (tx, ty) = (p.xi + c.tex[0], p.yi + c.tex[1]);
                    let t = net.at(tx, ty);
                    let ridge = (1.0 - 0.6 * t.abs()).max(0.0);
                    let tex = (0.45 + 0.8 * ridge * ridge) * (1.0 + 0.2 * fine.at(tx, ty));
                    let g = (rn - 1.0).max(0.0);
                    let peri = 1.0 / (1.0 + 0.9 * g * g);
                    let inside = if rn < 1.0 {
                        0.3 + 0.7 * smooth01((rn - 0.72) / 0.28)
                    } else {
                        1.0
                    };
                    let fade = 0.25 + 0.75 * smooth01(p.edge / (3.0 * c.edge_w));
                    ER * c.fac[1] * (0.15 + 0.85 * peri) * inside * fade * tex
                });
            }
            2 => {
                let fibres = Line::fibres(sub(1), s);
                let slow = Line::slow(sub(2), s);
                let fine = Tile::smooth(sub(3), fine_r);
                self.shade(&mut sig, |c, p| {
                    let dx = p.x - c.cyto.ellipse.cx;
                    let dy = p.y - c.cyto.ellipse.cy;
                    let [cs, sn, o1, o2] = c.fibre;
                    let across = -sn * dx + cs * dy + o1;
                    let along = cs * dx + sn * dy + o2;
                    let mut fib = fibres.at(across) * slow.at(along) * (0.4 + 0.6 * p.rho);
                    if c.nuc_r(p.x, p.y) < 1.0 {
                        fib *= 0.5;
                    }
                    let t = fine.at(p.xi + c.tex[0], p.yi + c.tex[1]);
                    let band = bump(p.edge / (1.5 * c.edge_w)) * (0.7 + 0.3 * t);
                    let mitotic = if c.mitotic { 1.6 } else { 1.0 };
                    ACTIN
                        * c.fac[2]
                        * mitotic
                        * (0.45 * band + 0.9 * fib + 0.12 * (1.0 + 0.3 * t)).max(0.0)
                });
            }
            3 => {
                let fine = Tile::smooth(sub(1), fine_r);
                let coarse = Tile::smooth(sub(2), 2.5 * s);
                self.shade(&mut sig, |c, p| {
                    let rn = c.nuc_r(p.x, p.y);
                    let (tx, ty) = (p.xi + c.tex[0], p.yi + c.tex[1]);
                    if rn < 1.0 {
                        let edge = smooth01((1.0 - rn) / c.nuc_edge + 0.5);
                        RNA * c.fac[3] * 0.45 * edge * (1.0 + 0.15 * coarse.at(tx, ty))
                    } else {
                        let g = rn - 1.0;
                        let peri = 1.0 / (1.0 + 0.8 * g * g);
                        let fade = 0.3 + 0.7 * smooth01(p.edge / (3.0 * c.edge_w));
                        RNA * c.fac[3]
                            * (0.08 + 0.17 * peri)
                            * fade
                            * (1.0 + 0.3 * fine.at(tx, ty)).max(0.0)
                    }
                });
                self.nucleoli_pass(
                    &mut sig,
                    |cell, b, t| NUCLEOLUS * cell.fac[3] * b * (0.85 + 0.15 * t),
                    false,
                );
            }
            4 => {
                let tubules = Tile::tubules(sub(1), s);
                self.shade(&mut sig, |c, p| {
                    let rn = c.nuc_r(p.x, p.y);
                    let g = (rn - 1.0).max(0.0);
                    let peri = 1.0 / (1.0 + 1.5 * g * g);
                    let fade = smooth01(p.edge / (2.0 * c.edge_w));
                    let over_nucleus = if rn < 1.0 { 0.3 } else { 1.0 };
                    let w = tubules.at(p.xi + c.tex[0], p.yi + c.tex[1]);
                    MITO * c.fac[4] * (0.06 + 0.94 * peri) * fade * over_nucleus * (1.3 * w + 0.06)
                });
            }
            _ => {
                let fine = Tile::smooth(sub(1), fine_r);
                let coarse = Tile::smooth(sub(2), 2.0 * s);
                self.shade(&mut sig, |c, p| {
                    let (tx, ty) = (p.xi + c.tex[0], p.yi + c.tex[1]);
                    let membrane = bump(p.edge / (0.8 * c.edge_w));
                    let q = c.golgi.q(p.x, p.y);
                    let golgi = if q < 1.0 {
                        (1.0 - q) * (0.3 + 0.7 * (0.5 + 0.5 * coarse.at(tx, ty)).max(0.0))
                    } else {
                        0.0
                    };
                    let rn = c.nuc_r(p.x, p.y);
                    let envelope = bump((rn - 1.0).abs() / 0.12);
                    let vesicles = (fine.at(tx, ty) - 1.7).max(0.0);
                    GOLGI
                        * c.fac[5]
                        * (0.6 * membrane + 1.3 * golgi + 0.1 * envelope + 0.6 * vesicles + 0.1)
                });
            }
        }
        self.finish(channel, model, seed, &sig)
    }

    /// Shade every pixel that belongs to a cell.
    fn shade<F: Fn(&Cell, &Px) -> f32>(&self, sig: &mut [f32], f: F) {
        let owner = self.owner();
        let n = self.n;
        const Q: f32 = 1.0 / 65535.0;
        for y in 0..n {
            let row = y * n;
            for x in 0..n {
                let k = row + x;
                let id = owner.id[k];
                if id == NONE {
                    continue;
                }
                let Some(cell) = self.cells.get(id as usize) else {
                    continue;
                };
                let rho = f32::from(owner.best[k]) * Q;
                let second = f32::from(owner.second[k]) * Q;
                let p = Px {
                    xi: x as i32,
                    yi: y as i32,
                    x: x as f32 + 0.5,
                    y: y as f32 + 0.5,
                    rho,
                    edge: (1.0 - rho).min(0.5 * (second - rho)),
                };
                sig[k] += f(cell, &p);
            }
        }
    }

    /// Hoechst: bright, slightly domed nuclei with chromatin texture.
    fn nuclei(&self, sig: &mut [f32], coarse: &Tile, fine: &Tile) {
        let n = self.n;
        for c in &self.cells {
            let Some((_, ys)) = c.nucleus.clipped(n) else {
                continue;
            };
            let contrast = if c.mitotic { 0.5 } else { 0.22 };
            for y in ys {
                let py = y as f32 + 0.5;
                for x in c.nucleus.row_span(y, n) {
                    let r = c.nucleus.rho(x as f32 + 0.5, py);
                    let soft = smooth01((1.0 - r) / c.nuc_edge + 0.5);
                    if soft <= 0.0 {
                        continue;
                    }
                    let (tx, ty) = (x as i32 + c.tex[0], y as i32 + c.tex[1]);
                    let dome = 0.8 + 0.2 * (1.0 - r * r).max(0.0);
                    let tex = (1.0 + contrast * coarse.at(tx, ty) + 0.1 * fine.at(tx, ty)).max(0.2);
                    sig[y * n + x] += DNA * c.dna * c.fac[0] * soft * dome * tex;
                }
            }
        }
    }

    /// Nucleoli: `f(cell, profile, texture)` is added, or (when `relative`) multiplies the
    /// signal by `1 + f` (Hoechst sees nucleoli as darker holes).
    fn nucleoli_pass<F: Fn(&Cell, f32, f32) -> f32>(&self, sig: &mut [f32], f: F, relative: bool) {
        let n = self.n as i32;
        let mut rng = Rng::new(combine(self.seed, hash_str("nucleoli")));
        for nu in &self.nucleoli {
            let Some(cell) = self.cells.get(nu.cell) else {
                continue;
            };
            let t = rng.normal();
            let reach = nu.r + 1.0;
            let (x0, x1) = (
                ((nu.x - reach).floor() as i32).max(0),
                ((nu.x + reach).ceil() as i32).min(n),
            );
            let (y0, y1) = (
                ((nu.y - reach).floor() as i32).max(0),
                ((nu.y + reach).ceil() as i32).min(n),
            );
            let inv = 1.0 / (nu.r + 0.5);
            for y in y0..y1 {
                for x in x0..x1 {
                    let d =
                        ((x as f32 + 0.5 - nu.x).powi(2) + (y as f32 + 0.5 - nu.y).powi(2)).sqrt();
                    let b = bump(d * inv) * nu.bright;
                    if b <= 0.0 {
                        continue;
                    }
                    let k = (y * n + x) as usize;
                    let v = f(cell, b, t);
                    if relative {
                        sig[k] *= (1.0 + v).max(0.0);
                    } else {
                        sig[k] += v;
                    }
                }
            }
        }
    }

    /// Background drift, vignetting, batch gain, phenotype, shot and read noise, quantization.
    fn finish(&self, channel: u32, model: usize, seed: u64, sig: &[f32]) -> Vec<u16> {
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
