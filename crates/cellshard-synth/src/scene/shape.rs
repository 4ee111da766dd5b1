//! Cell outlines: ellipses with a low-frequency radial perturbation, and the fast
//! inside/outside test that the owner raster and the stain passes share.

/// Perturbation lookup-table bins (over the "diamond angle", see [`diamond_angle`]).
const LUT: usize = 64;

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
    pub(super) fn new(cx: f32, cy: f32, a: f32, b: f32, theta: f32) -> Self {
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
    pub(super) inv_pmax2: f32,
    /// Pixel bounds `[x0, y0, x1, y1)`, unclipped.
    pub(crate) bbox: [i32; 4],
}

impl Shape {
    #[allow(
        clippy::cast_possible_truncation,
        reason = "the bounding box of a cell, in pixel coordinates"
    )]
    pub(super) fn new(
        cx: f32,
        cy: f32,
        a: f32,
        b: f32,
        theta: f32,
        harmonics: &[(f32, f32)],
    ) -> Self {
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
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "t is a non-negative angle index, capped at LUT - 1"
    )]
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
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "clamped at 0 first, and at n after"
    )]
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
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "the image size fits an i32; the box is clamped to 0..n first"
    )]
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
                        s.row_span(usize::try_from(y).unwrap(), 100)
                            .contains(&usize::try_from(x).unwrap()),
                        "{x},{y}"
                    );
                }
            }
        }
    }
}
