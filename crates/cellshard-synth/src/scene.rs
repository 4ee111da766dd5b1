//! The geometry of one imaged site: where the cells are, their shapes, and which cell owns
//! each pixel. Shared by the six channels of the site.
//!
//! All lengths are chosen at the 2048 px scale of RxRx1 originals and multiplied by
//! `size / 2048`, so a small image is a downscaled view of the same kind of field.

use std::f32::consts::{PI, TAU};
use std::sync::OnceLock;

use cellshard_core::SiteMetadata;

use crate::rng::{Rng, combine, hash_str, unit_from};

/// Perturbation lookup-table bins (over the "diamond angle", see [`diamond_angle`]).
const LUT: usize = 64;
/// "No cell" in the owner raster.
pub(crate) const NONE: u32 = u32::MAX;

/// Cell-type morphology, at the 2048 px scale.
#[derive(Debug, Clone, Copy)]
struct Morph {
    /// Mean distance between neighbouring cells, px.
    spacing: f32,
    /// Cell (cytoplasm) mean radius relative to the spacing.
    cell_ratio: f32,
    /// Nucleus radius range, px.
    nucleus: (f32, f32),
    /// Cell elongation (long/short axis) range.
    elongation: (f32, f32),
    /// Amplitude of the low-frequency boundary perturbation.
    wobble: f32,
    /// How strongly cell density varies across the field (clumping).
    clump: f32,
    /// How strongly neighbouring cells share an orientation (0 = random).
    align: f32,
}

fn morph(cell_type: &str) -> Morph {
    match cell_type.to_ascii_uppercase().as_str() {
        // Endothelial: elongated, spindle-like, locally aligned, confluent.
        "HUVEC" => Morph {
            spacing: 84.0,
            cell_ratio: 0.74,
            nucleus: (13.0, 17.0),
            elongation: (1.4, 3.0),
            wobble: 0.16,
            clump: 0.15,
            align: 0.75,
        },
        // Hepatocellular: small, round, growing in dense clumps with gaps between.
        "HEPG2" => Morph {
            spacing: 66.0,
            cell_ratio: 0.66,
            nucleus: (11.0, 15.0),
            elongation: (1.0, 1.4),
            wobble: 0.12,
            clump: 0.8,
            align: 0.0,
        },
        // Retinal pigment epithelium: cobblestone.
        "RPE" => Morph {
            spacing: 90.0,
            cell_ratio: 0.74,
            nucleus: (14.0, 19.0),
            elongation: (1.0, 1.6),
            wobble: 0.14,
            clump: 0.15,
            align: 0.2,
        },
        // Osteosarcoma: large, flat, irregular nuclei.
        "U2OS" => Morph {
            spacing: 96.0,
            cell_ratio: 0.76,
            nucleus: (17.0, 24.0),
            elongation: (1.1, 2.0),
            wobble: 0.22,
            clump: 0.3,
            align: 0.2,
        },
        _ => Morph {
            spacing: 90.0,
            cell_ratio: 0.72,
            nucleus: (13.0, 19.0),
            elongation: (1.0, 1.8),
            wobble: 0.16,
            clump: 0.3,
            align: 0.2,
        },
    }
}

/// A monotone stand-in for `atan2(v, u)` over `[0, 4)`: one division, no trig.
#[inline]
fn diamond_angle(u: f32, v: f32) -> f32 {
    if v >= 0.0 {
        if u >= 0.0 {
            v / (u + v)
        } else {
            1.0 - u / (v - u)
        }
    } else if u < 0.0 {
        2.0 - v / (-u - v)
    } else {
        3.0 + u / (u - v)
    }
}

/// The true angle of diamond angle `d` (the inverse of [`diamond_angle`] on the unit diamond).
fn angle_of_diamond(d: f32) -> f32 {
    let (x, y) = if d < 1.0 {
        (1.0 - d, d)
    } else if d < 2.0 {
        (1.0 - d, 2.0 - d)
    } else if d < 3.0 {
        (d - 3.0, 2.0 - d)
    } else {
        (d - 3.0, d - 4.0)
    };
    y.atan2(x)
}

/// An ellipse: maps a pixel offset to coordinates where the ellipse is the unit circle.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ellipse {
    pub(crate) cx: f32,
    pub(crate) cy: f32,
    m: [f32; 4],
}

impl Ellipse {
    fn new(cx: f32, cy: f32, a: f32, b: f32, theta: f32) -> Self {
        let (s, c) = theta.sin_cos();
        let (a, b) = (a.max(0.5), b.max(0.5));
        Ellipse {
            cx,
            cy,
            m: [c / a, s / a, -s / b, c / b],
        }
    }

    /// Squared normalized radius (1 on the boundary).
    #[inline]
    pub(crate) fn q(&self, px: f32, py: f32) -> f32 {
        let (u, v) = self.uv(px, py);
        u * u + v * v
    }

    #[inline]
    fn uv(&self, px: f32, py: f32) -> (f32, f32) {
        let dx = px - self.cx;
        let dy = py - self.cy;
        (
            self.m[0] * dx + self.m[1] * dy,
            self.m[2] * dx + self.m[3] * dy,
        )
    }
}

/// An ellipse with a low-frequency radial perturbation: `r(phi) = r_ellipse(phi) * P(phi)`.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pub(crate) ellipse: Ellipse,
    /// `1 / P` sampled over the diamond angle, with a wrap-around entry.
    inv_p: [f32; LUT + 1],
    /// Largest `P`, squared: beyond it a pixel is outside for sure.
    pmax2: f32,
    /// `1 / pmax2`.
    inv_pmax2: f32,
    /// Pixel bounds `[x0, y0, x1, y1)`, unclipped.
    pub(crate) bbox: [i32; 4],
}

impl Shape {
    fn new(cx: f32, cy: f32, a: f32, b: f32, theta: f32, harmonics: &[(f32, f32)]) -> Self {
        let ellipse = Ellipse::new(cx, cy, a, b, theta);
        let mut inv_p = [1.0; LUT + 1];
        let mut pmax: f32 = 1.0;
        for (i, slot) in inv_p.iter_mut().take(LUT).enumerate() {
            let phi = angle_of_diamond(i as f32 * 4.0 / LUT as f32);
            let mut p = 1.0;
            for (k, &(amp, phase)) in harmonics.iter().enumerate() {
                p += amp * ((k as f32 + 2.0) * phi + phase).cos();
            }
            let p = p.max(0.55);
            pmax = pmax.max(p);
            *slot = 1.0 / p;
        }
        inv_p[LUT] = inv_p[0];
        let (s, c) = theta.sin_cos();
        let (a, b) = (a.max(0.5), b.max(0.5));
        let hx = ((a * c).powi(2) + (b * s).powi(2)).sqrt() * pmax + 2.0;
        let hy = ((a * s).powi(2) + (b * c).powi(2)).sqrt() * pmax + 2.0;
        let bbox = [
            (cx - hx).floor() as i32,
            (cy - hy).floor() as i32,
            (cx + hx).ceil() as i32,
            (cy + hy).ceil() as i32,
        ];
        Shape {
            ellipse,
            inv_p,
            pmax2: pmax * pmax,
            inv_pmax2: 1.0 / (pmax * pmax),
            bbox,
        }
    }

    /// Normalized radius at a pixel centre: below 1 inside, `INFINITY` far outside.
    #[inline]
    pub(crate) fn rho(&self, px: f32, py: f32) -> f32 {
        let (u, v) = self.ellipse.uv(px, py);
        let r2 = u * u + v * v;
        if r2 >= self.pmax2 {
            return f32::INFINITY;
        }
        if r2 < 1e-12 {
            return 0.0;
        }
        let t = diamond_angle(u, v) * (LUT as f32 / 4.0);
        let i = (t as usize).min(LUT - 1);
        let w = t - i as f32;
        let inv = self.inv_p[i] + (self.inv_p[i + 1] - self.inv_p[i]) * w;
        r2.sqrt() * inv
    }

    /// The pixels of row `y` where [`Shape::rho`] can be finite, clipped to `0..n`.
    pub(crate) fn row_span(&self, y: usize, n: usize) -> std::ops::Range<usize> {
        let e = &self.ellipse;
        let dy = y as f32 + 0.5 - e.cy;
        let [m0, m1, m2, m3] = e.m;
        let a = m0 * m0 + m2 * m2;
        let b = 2.0 * dy * (m0 * m1 + m2 * m3);
        let c = dy * dy * (m1 * m1 + m3 * m3) - self.pmax2;
        let disc = b * b - 4.0 * a * c;
        if disc <= 0.0 || a <= 0.0 {
            return 0..0;
        }
        let root = disc.sqrt();
        let x0 = e.cx + (-b - root) / (2.0 * a) - 0.5;
        let x1 = e.cx + (-b + root) / (2.0 * a) + 0.5;
        let x0 = x0.floor().max(0.0) as usize;
        let x1 = (x1.ceil().max(0.0) as usize).min(n);
        x0.min(x1)..x1
    }

    /// The bounding box clipped to an `n` x `n` image, as ranges.
    pub(crate) fn clipped(
        &self,
        n: usize,
    ) -> Option<(std::ops::Range<usize>, std::ops::Range<usize>)> {
        let n = n as i32;
        let [x0, y0, x1, y1] = self.bbox;
        let (x0, y0, x1, y1) = (x0.max(0), y0.max(0), x1.min(n), y1.min(n));
        (x0 < x1 && y0 < y1).then_some((x0 as usize..x1 as usize, y0 as usize..y1 as usize))
    }
}

/// A nucleolus: a small round dense body inside a nucleus.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Nucleolus {
    pub(crate) x: f32,
    pub(crate) y: f32,
    pub(crate) r: f32,
    pub(crate) bright: f32,
    pub(crate) cell: usize,
}

/// One cell.
#[derive(Debug, Clone)]
pub(crate) struct Cell {
    pub(crate) cyto: Shape,
    pub(crate) nucleus: Shape,
    pub(crate) golgi: Ellipse,
    /// Membrane band half-width, in units of the normalized cell radius.
    pub(crate) edge_w: f32,
    /// Soft nuclear edge width, in units of the normalized nucleus radius.
    pub(crate) nuc_edge: f32,
    /// Per-channel stain uptake of this cell.
    pub(crate) fac: [f32; 6],
    /// DNA content relative to G1 (brightness of the Hoechst stain).
    pub(crate) dna: f32,
    pub(crate) mitotic: bool,
    /// Stress fibre direction (cos, sin) and lookup offsets.
    pub(crate) fibre: [f32; 4],
    /// Texture lookup offset.
    pub(crate) tex: [i32; 2],
}

impl Cell {
    /// Normalized nucleus radius (plain ellipse, no perturbation): 1 on the nuclear envelope.
    #[inline]
    pub(crate) fn nuc_r(&self, px: f32, py: f32) -> f32 {
        self.nucleus.ellipse.q(px, py).sqrt()
    }
}

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

/// Which cell owns each pixel, with the best and second-best normalized radii (quantized to
/// u16, 65535 = 1.0): their difference measures the distance to the cell-cell boundary.
#[derive(Debug)]
pub(crate) struct Owner {
    pub(crate) id: Vec<u32>,
    pub(crate) best: Vec<u16>,
    pub(crate) second: Vec<u16>,
}

/// One site's field of cells.
#[derive(Debug)]
pub(crate) struct Scene {
    /// Image side, px.
    pub(crate) n: usize,
    /// `n / 2048`.
    pub(crate) scale: f32,
    /// Seed of this site (from the config seed and the site's identity).
    pub(crate) seed: u64,
    pub(crate) experiment: String,
    pub(crate) plate: u32,
    pub(crate) eight_bit: bool,
    pub(crate) phenotype: Phenotype,
    pub(crate) cells: Vec<Cell>,
    pub(crate) nucleoli: Vec<Nucleolus>,
    owner: OnceLock<Owner>,
}

impl Scene {
    /// Lay out the cells of a site. Cheap: pixels are only touched by [`Scene::owner`] and
    /// the channel renderers.
    pub(crate) fn new(size: u32, bit_depth: u8, seed: u64, site: &SiteMetadata) -> Scene {
        let n = size as usize;
        let scale = size as f32 / 2048.0;
        let mut h = combine(hash_str("cellshard-synth/site"), seed);
        h = combine(h, hash_str(&site.experiment));
        h = combine(h, u64::from(site.plate));
        h = combine(h, hash_str(&site.well));
        h = combine(h, u64::from(site.site.unwrap_or(1)));
        let mut rng = Rng::new(h);
        let m = morph(&site.cell_type);
        let phenotype = phenotype(&site.well_type, site.sirna_id);

        let spacing = (m.spacing * scale / phenotype.density.sqrt()).max(1.0);
        // Low-frequency density field: cells clump and leave empty patches.
        let waves: Vec<(f32, f32, f32)> = (0..3)
            .map(|_| {
                let dir = rng.range(0.0, TAU);
                let freq = rng.range(1.5, 4.0) * TAU;
                (dir.cos() * freq, dir.sin() * freq, rng.range(0.0, TAU))
            })
            .collect();
        let per_well_density = rng.range(0.88, 0.97);
        // Low-frequency orientation field: neighbouring cells align (strongly for HUVEC).
        let flow: Vec<(f32, f32, f32)> = (0..2)
            .map(|_| {
                let dir = rng.range(0.0, TAU);
                let freq = rng.range(0.8, 2.0) * TAU;
                (dir.cos() * freq, dir.sin() * freq, rng.range(0.0, TAU))
            })
            .collect();
        let flow_base = rng.range(0.0, PI);

        let grid = (n as f32 / spacing).ceil() as i32 + 2;
        let mut placed: Vec<Option<(f32, f32)>> = vec![None; (grid * grid) as usize];
        let mut cells = Vec::new();
        let mut nucleoli = Vec::new();
        for gy in 0..grid {
            for gx in 0..grid {
                let x = (gx as f32 - 0.5 + rng.range(-0.42, 0.42)) * spacing;
                let y = (gy as f32 - 0.5 + rng.range(-0.42, 0.42)) * spacing;
                let keep = rng.f32();
                let (fx, fy) = (x / n.max(1) as f32, y / n.max(1) as f32);
                let field: f32 = waves
                    .iter()
                    .map(|&(wx, wy, p)| (wx * fx + wy * fy + p).cos())
                    .sum::<f32>()
                    / 3.0;
                let occupancy = (per_well_density * (1.0 + m.clump * field)).clamp(0.05, 1.0);
                if keep > occupancy {
                    continue;
                }
                let too_close = (-1..=1).any(|dy| {
                    (-1..=1).any(|dx| {
                        let (cx, cy) = (gx + dx, gy + dy);
                        if cx < 0 || cy < 0 || cx >= grid || cy >= grid {
                            return false;
                        }
                        placed[(cy * grid + cx) as usize].is_some_and(|(px, py)| {
                            (px - x).powi(2) + (py - y).powi(2) < (0.5 * spacing).powi(2)
                        })
                    })
                });
                if too_close {
                    continue;
                }
                placed[(gy * grid + gx) as usize] = Some((x, y));
                let index = cells.len();
                let field_angle = flow_base
                    + 0.9
                        * flow
                            .iter()
                            .map(|&(wx, wy, p)| (wx * fx + wy * fy + p).cos())
                            .sum::<f32>();
                let theta = field_angle
                    + (1.0 - m.align) * rng.range(-PI / 2.0, PI / 2.0)
                    + 0.15 * rng.normal();
                cells.push(make_cell(
                    &mut rng,
                    &m,
                    &phenotype,
                    (scale, spacing),
                    (x, y, theta),
                    index,
                    &mut nucleoli,
                ));
            }
        }
        Scene {
            n,
            scale,
            seed: h,
            experiment: site.experiment.clone(),
            plate: site.plate,
            eight_bit: bit_depth == 8,
            phenotype,
            cells,
            nucleoli,
            owner: OnceLock::new(),
        }
    }

    /// The owner raster, computed on first use and shared by the channels.
    pub(crate) fn owner(&self) -> &Owner {
        self.owner.get_or_init(|| self.compute_owner())
    }

    fn compute_owner(&self) -> Owner {
        let n = self.n;
        let mut id = vec![NONE; n * n];
        let mut best = vec![u16::MAX; n * n];
        let mut second = vec![u16::MAX; n * n];
        for (i, cell) in self.cells.iter().enumerate() {
            let Some((_, ys)) = cell.cyto.clipped(n) else {
                continue;
            };
            for y in ys {
                let py = y as f32 + 0.5;
                let row = y * n;
                for x in cell.cyto.row_span(y, n) {
                    let k = row + x;
                    // rho >= |uv| / pmax: skip the exact radius where it could not even be
                    // second best (second >= best).
                    let lower = cell.cyto.ellipse.q(x as f32 + 0.5, py) * cell.cyto.inv_pmax2;
                    if lower >= second_q(second[k]) {
                        continue;
                    }
                    let r = cell.cyto.rho(x as f32 + 0.5, py);
                    if r >= 1.0 {
                        continue;
                    }
                    let q = (r * 65535.0) as u16;
                    if q < best[k] {
                        second[k] = best[k];
                        best[k] = q;
                        id[k] = i as u32;
                    } else if q < second[k] {
                        second[k] = q;
                    }
                }
            }
        }
        // A nucleus always belongs to its own cell.
        for (i, cell) in self.cells.iter().enumerate() {
            let Some((_, ys)) = cell.nucleus.clipped(n) else {
                continue;
            };
            for y in ys {
                let py = y as f32 + 0.5;
                for x in cell.nucleus.row_span(y, n) {
                    let px = x as f32 + 0.5;
                    if cell.nucleus.rho(px, py) >= 1.0 {
                        continue;
                    }
                    let k = y * n + x;
                    let r = cell.cyto.rho(px, py).min(0.97);
                    id[k] = i as u32;
                    best[k] = (r * 65535.0) as u16;
                    second[k] = u16::MAX;
                }
            }
        }
        Owner { id, best, second }
    }
}

fn make_cell(
    rng: &mut Rng,
    m: &Morph,
    phenotype: &Phenotype,
    (scale, spacing): (f32, f32),
    (x, y, theta): (f32, f32, f32),
    index: usize,
    nucleoli: &mut Vec<Nucleolus>,
) -> Cell {
    // Cell cycle: G1, S, G2, or mitosis (rounded up, condensed bright chromatin).
    let phase = rng.f32();
    let (dna, nuc_size, mitotic) = match phase {
        p if p < 0.03 => (2.3, 0.72, true),
        p if p < 0.15 => (1.3, 1.15, false),
        p if p < 0.35 => (1.12, 1.07, false),
        _ => (1.0, 1.0, false),
    };
    let mut radius = m.cell_ratio * spacing * rng.range(0.85, 1.2) * phenotype.size;
    let mut elongation = rng.range(m.elongation.0, m.elongation.1);
    let mut wobble = m.wobble;
    if mitotic {
        radius *= 0.6;
        elongation = 1.05;
        wobble *= 0.3;
    }
    let (a, b) = (radius * elongation.sqrt(), radius / elongation.sqrt());
    let harmonics: Vec<(f32, f32)> = (0..6)
        .map(|k| {
            (
                wobble * rng.range(0.2, 1.0) / (k as f32 + 1.0).powf(0.6),
                rng.range(0.0, TAU),
            )
        })
        .collect();

    let rn =
        (rng.range(m.nucleus.0, m.nucleus.1) * scale * nuc_size * phenotype.size.sqrt()).max(0.6);
    let nuc_elong = if mitotic {
        1.0
    } else {
        1.0 + (elongation - 1.0) * 0.35 + rng.range(0.0, 0.15)
    };
    let nuc_theta = theta + 0.3 * rng.normal();
    let (an, bn) = (rn * nuc_elong.sqrt(), rn / nuc_elong.sqrt());
    // The nucleus sits off-centre; the Golgi faces the larger side of the cytoplasm.
    let off_dir = rng.range(0.0, TAU);
    let off = rng.range(0.0, 0.3) * (b - bn).max(0.0);
    let (nx, ny) = (x + off * off_dir.cos(), y + off * off_dir.sin());
    let nuc_harm: Vec<(f32, f32)> = (0..3)
        .map(|_| (rng.range(0.0, 0.05), rng.range(0.0, TAU)))
        .collect();
    let nucleus = Shape::new(nx, ny, an, bn, nuc_theta, &nuc_harm);

    let golgi_dir = off_dir + PI + 0.6 * rng.normal();
    let golgi_dist = rn * rng.range(1.0, 1.25);
    let golgi = Ellipse::new(
        nx + golgi_dist * golgi_dir.cos(),
        ny + golgi_dist * golgi_dir.sin(),
        rn * rng.range(0.6, 0.9),
        rn * rng.range(0.3, 0.45),
        golgi_dir + PI / 2.0,
    );

    if !mitotic {
        let count = 1 + rng.below(4);
        let (s, c) = nuc_theta.sin_cos();
        for _ in 0..count {
            let ang = rng.range(0.0, TAU);
            let dist = rng.f32().sqrt() * 0.5;
            let (u, v) = (dist * ang.cos() * an, dist * ang.sin() * bn);
            nucleoli.push(Nucleolus {
                x: nx + c * u - s * v,
                y: ny + s * u + c * v,
                r: (rn * rng.range(0.14, 0.26)).max(0.5),
                bright: rng.range(0.6, 1.0),
                cell: index,
            });
        }
    }

    let mut fac = [1.0; 6];
    for f in &mut fac {
        *f = (1.0 + 0.2 * rng.normal()).max(0.4);
    }
    let fibre_dir = theta + 0.2 * rng.normal();
    let fibre = [
        fibre_dir.cos(),
        fibre_dir.sin(),
        rng.range(0.0, 1024.0),
        rng.range(0.0, 1024.0),
    ];
    let tex = [rng.below(512) as i32, rng.below(512) as i32];
    Cell {
        cyto: Shape::new(x, y, a, b, theta, &harmonics),
        nucleus,
        golgi,
        edge_w: (2.5 * scale).max(0.7) / radius.max(0.5),
        nuc_edge: (1.2 * scale).max(0.5) / rn,
        fac,
        dna,
        mitotic,
        fibre,
        tex,
    }
}

/// A quantized second-best radius, squared, as a float.
#[inline]
fn second_q(q: u16) -> f32 {
    let v = f32::from(q) * (1.0 / 65535.0);
    v * v
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn diamond_angle_round_trips() {
        for i in 0..400 {
            let d = i as f32 * 0.01;
            let phi = angle_of_diamond(d);
            let back = diamond_angle(phi.cos(), phi.sin());
            let back = if back > 3.99 && d < 0.01 {
                back - 4.0
            } else {
                back
            };
            assert!((back - d).abs() < 1e-3, "{d} -> {phi} -> {back}");
        }
    }

    #[test]
    fn shape_contains_its_centre_and_not_far_points() {
        let s = Shape::new(50.0, 50.0, 20.0, 10.0, 0.3, &[(0.1, 0.0), (0.05, 1.0)]);
        assert_eq!(s.rho(50.0, 50.0), 0.0);
        assert!(s.rho(52.0, 51.0) < 0.5);
        assert!(s.rho(50.0, 80.0) > 1.0);
        let [x0, y0, x1, y1] = s.bbox;
        // Everything inside lies within the bounding box.
        for y in 0..100 {
            for x in 0..100 {
                if s.rho(x as f32 + 0.5, y as f32 + 0.5).is_finite() {
                    assert!(x >= x0 && x < x1 && y >= y0 && y < y1, "{x},{y}");
                    assert!(
                        s.row_span(y as usize, 100).contains(&(x as usize)),
                        "{x},{y}"
                    );
                }
            }
        }
    }

    #[test]
    fn cells_cover_the_field_at_plausible_density() {
        let meta = SiteMetadata {
            cell_type: "HUVEC".into(),
            dataset: Some("train".into()),
            experiment: "HUVEC-01".into(),
            plate: 1,
            well: "B02".into(),
            site: Some(1),
            well_type: "negative_control".into(),
            sirna_id: Some(1138),
            extra: vec![],
        };
        let scene = Scene::new(512, 16, 0, &meta);
        // ~ one cell per 86 x 86 px at 2048 -> ~ (512/21.5)^2 ~ 570 per 2048-equivalent field.
        let inside = scene.cells.iter().filter(|c| {
            let e = c.cyto.ellipse;
            (0.0..512.0).contains(&e.cx) && (0.0..512.0).contains(&e.cy)
        });
        let count = inside.count();
        assert!((300..800).contains(&count), "{count} cells");
        let owner = scene.owner();
        let covered =
            owner.id.iter().filter(|&&i| i != NONE).count() as f64 / owner.id.len() as f64;
        assert!((0.5..0.97).contains(&covered), "coverage {covered}");
    }
}
