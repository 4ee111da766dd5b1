//! The geometry of one imaged site: where the cells are, their shapes, and which cell owns
//! each pixel. Shared by the six channels of the site.
//!
//! All lengths are chosen at the 2048 px scale of RxRx1 originals and multiplied by
//! `size / 2048`, so a small image is a downscaled view of the same kind of field.

mod cell;
mod effects;
mod shape;

use std::f32::consts::{PI, TAU};
use std::sync::OnceLock;

use cellshard_core::SiteMetadata;

use crate::rng::{Rng, combine, hash_str};
pub(crate) use cell::Cell;
use cell::{Nucleolus, make_cell, morph};
pub(crate) use effects::batch_gain;
use effects::{Phenotype, phenotype};

/// "No cell" in the owner raster.
pub(crate) const NONE: u32 = u32::MAX;

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
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "grid counts and indices: small, and non-negative where they index"
    )]
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

    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "rho in 0..1 scaled to u16; cell indices far below u32::MAX"
    )]
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
