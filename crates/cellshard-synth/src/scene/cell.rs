//! One cell: its cell type's morphology, its cycle phase, and the placement of its nucleus,
//! nucleoli and Golgi.

use std::f32::consts::{PI, TAU};

use super::Phenotype;
use super::shape::{Ellipse, Shape};
use crate::rng::Rng;

/// Cell-type morphology, at the 2048 px scale.
#[derive(Debug, Clone, Copy)]
pub(super) struct Morph {
    /// Mean distance between neighbouring cells, px.
    pub(super) spacing: f32,
    /// Cell (cytoplasm) mean radius relative to the spacing.
    pub(super) cell_ratio: f32,
    /// Nucleus radius range, px.
    pub(super) nucleus: (f32, f32),
    /// Cell elongation (long/short axis) range.
    pub(super) elongation: (f32, f32),
    /// Amplitude of the low-frequency boundary perturbation.
    pub(super) wobble: f32,
    /// How strongly cell density varies across the field (clumping).
    pub(super) clump: f32,
    /// How strongly neighbouring cells share an orientation (0 = random).
    pub(super) align: f32,
}

/// The morphology of a cell type (RxRx1's four, and a generic one for any other).
pub(super) fn morph(cell_type: &str) -> Morph {
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

/// Shape one cell at `(x, y)` with orientation `theta`; its nucleoli go to `nucleoli`.
pub(super) fn make_cell(
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
