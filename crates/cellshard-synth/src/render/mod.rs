//! Channel rendering: stain models over a [`Scene`], then illumination, batch gain, shot
//! noise and quantization.
//!
//! Each channel is built in one `f32` signal buffer: per-object passes (nuclei, nucleoli)
//! touch only their bounding boxes, per-cell stains are shaded in one pass over the owner
//! raster, and smooth fields (background drift, vignetting) are separable, so no per-pixel
//! transcendental functions are evaluated.

mod camera;
mod texture;

use cellshard_core::SiteMetadata;

use crate::SynthConfig;
use crate::rng::{Rng, combine, hash_str};
use crate::scene::{Cell, NONE, Scene};
use texture::{Line, Tile};

const DNA: f32 = 11_000.0;
const ER: f32 = 4_600.0;
const ACTIN: f32 = 7_000.0;
const RNA: f32 = 7_000.0;
const NUCLEOLUS: f32 = 9_000.0;
const MITO: f32 = 6_500.0;
const GOLGI: f32 = 5_500.0;

/// Render one channel (1-based) of one site: `size * size` samples, row-major (values below
/// 256 when `bit_depth` is 8). Pure and deterministic in (seed, site, channel); experiment,
/// plate, well and site of `site` place the cells, its cell type shapes them, its well type
/// and siRNA give the phenotype. Only `size`, `bit_depth` (8, else 16-bit values) and `seed`
/// of `cfg` matter here.
pub fn render_channel(cfg: &SynthConfig, site: &SiteMetadata, channel: u32) -> Vec<u16> {
    Scene::new(cfg.size, cfg.bit_depth, cfg.seed, site).render(channel)
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
    #[allow(
        clippy::cast_possible_truncation,
        reason = "pixel coordinates of an in-memory image, far below i32::MAX"
    )]
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
    #[allow(
        clippy::cast_possible_truncation,
        reason = "pixel coordinates of an in-memory image, far below i32::MAX"
    )]
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
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "pixel coordinates of an in-memory image, clamped to 0..n"
    )]
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
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::encode_png;
    use crate::fixtures::site;
    use crate::scene::batch_gain;

    fn small(size: u32) -> SynthConfig {
        SynthConfig {
            size,
            ..SynthConfig::default()
        }
    }

    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "p in 0..=1 gives an index in 0..len"
    )]
    fn percentile(v: &[u16], p: f64) -> u16 {
        let mut s = v.to_vec();
        s.sort_unstable();
        s[((s.len() - 1) as f64 * p) as usize]
    }

    fn mean(v: &[u16]) -> f64 {
        v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64
    }

    #[test]
    fn rendering_is_deterministic_in_seed_site_and_channel() {
        let cfg = small(128);
        let s = site("HUVEC-01", 1, "B03");
        for ch in 1..=6 {
            let a = render_channel(&cfg, &s, ch);
            assert_eq!(a.len(), 128 * 128);
            assert_eq!(a, render_channel(&cfg, &s, ch), "channel {ch}");
        }
        let other_seed = SynthConfig {
            seed: 1,
            ..cfg.clone()
        };
        assert_ne!(
            render_channel(&cfg, &s, 1),
            render_channel(&other_seed, &s, 1)
        );
        assert_ne!(render_channel(&cfg, &s, 1), render_channel(&cfg, &s, 2));
        assert_ne!(
            render_channel(&cfg, &s, 1),
            render_channel(&cfg, &site("HUVEC-01", 1, "B04"), 1)
        );
        let s2 = SiteMetadata {
            site: Some(2),
            ..s.clone()
        };
        assert_ne!(render_channel(&cfg, &s, 1), render_channel(&cfg, &s2, 1));
    }

    #[test]
    fn nuclei_stand_out_of_a_dark_background() {
        let cfg = small(256);
        for experiment in ["HUVEC-01", "HEPG2-03", "RPE-02", "U2OS-01"] {
            let img = render_channel(&cfg, &site(experiment, 1, "B02"), 1);
            let (median, p99) = (percentile(&img, 0.5), percentile(&img, 0.99));
            assert!(
                median > 150 && median < 1500,
                "{experiment}: median {median}"
            );
            assert!(p99 > 5 * median, "{experiment}: p99 {p99}, median {median}");
            assert!(p99 > 4_000, "{experiment}: p99 {p99}");
        }
    }

    #[test]
    fn every_channel_has_structure_and_differs() {
        let cfg = small(256);
        let s = site("U2OS-01", 2, "C05");
        let images: Vec<Vec<u16>> = (1..=6).map(|ch| render_channel(&cfg, &s, ch)).collect();
        for (i, img) in images.iter().enumerate() {
            let (p10, p50, p99) = (
                percentile(img, 0.1),
                percentile(img, 0.5),
                percentile(img, 0.99),
            );
            assert!(p10 > 100, "channel {}: p10 {p10}", i + 1);
            assert!(
                f64::from(p99) > 2.5 * f64::from(p50),
                "channel {}: p50 {p50} p99 {p99}",
                i + 1
            );
        }
        // Hoechst (nuclear) and WGA (membranes) put their light in different places.
        let corr = correlation(&images[0], &images[5]);
        assert!(corr < 0.5, "channels 1 and 6 correlate {corr}");
    }

    fn correlation(a: &[u16], b: &[u16]) -> f64 {
        let (ma, mb) = (mean(a), mean(b));
        let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
        for (&x, &y) in a.iter().zip(b) {
            let (dx, dy) = (f64::from(x) - ma, f64::from(y) - mb);
            sab += dx * dy;
            saa += dx * dx;
            sbb += dy * dy;
        }
        sab / (saa * sbb).sqrt()
    }

    #[test]
    fn eight_bit_output_fits_a_byte() {
        let cfg = SynthConfig {
            bit_depth: 8,
            ..small(256)
        };
        let s = SiteMetadata {
            well_type: "positive_control".into(),
            sirna_id: Some(1110),
            ..site("U2OS-02", 3, "D10")
        };
        for ch in 1..=6 {
            let img = render_channel(&cfg, &s, ch);
            assert!(img.iter().all(|&v| v < 256), "channel {ch}");
            assert!(
                percentile(&img, 0.999) > 20,
                "channel {ch} is too dark for 8 bits"
            );
        }
        assert!(encode_png(&cfg, &render_channel(&cfg, &s, 1)).is_ok());
        assert!(encode_png(&cfg, &[300; 256 * 256]).is_err());
        assert!(encode_png(&cfg, &[1; 10]).is_err());
    }

    #[test]
    fn experiment_and_plate_gain_change_the_mean() {
        // Find the dimmest and brightest experiments of the design's naming scheme.
        let names: Vec<String> = (1..=24).map(|i| format!("HUVEC-{i:02}")).collect();
        let gain = |e: &str| batch_gain(e, 1, 1);
        let lo = names
            .iter()
            .min_by(|a, b| gain(a).total_cmp(&gain(b)))
            .unwrap();
        let hi = names
            .iter()
            .max_by(|a, b| gain(a).total_cmp(&gain(b)))
            .unwrap();
        assert!(gain(hi) > 1.5 * gain(lo), "{} vs {}", gain(hi), gain(lo));
        let cfg = small(256);
        let mean_of = |e: &str, plate| {
            let img = render_channel(&cfg, &site(e, plate, "B02"), 1);
            mean(&img) - 200.0 // camera offset
        };
        let (m_lo, m_hi) = (mean_of(lo, 1), mean_of(hi, 1));
        assert!(m_hi > 1.3 * m_lo, "{hi}: {m_hi}, {lo}: {m_lo}");
        // Plate gain: the same experiment differs between plates, within [0.85, 1.15]^2.
        let plates: Vec<f32> = (1..=4).map(|p| batch_gain("HUVEC-01", p, 1)).collect();
        assert!(
            plates
                .iter()
                .all(|g| (0.6 * 0.85 * 0.9..1.4 * 1.15 * 1.1).contains(g))
        );
        let spread = plates.iter().cloned().fold(f32::MIN, f32::max)
            / plates.iter().cloned().fold(f32::MAX, f32::min);
        assert!(spread > 1.02, "plate gains {plates:?}");
    }
}
