//! Viridis, the perceptually uniform colour map used for every heatmap.

/// Viridis at 0, 0.125, ..., 1 (matplotlib's values, rounded).
const VIRIDIS: [[f64; 3]; 9] = [
    [68.0, 1.0, 84.0],
    [71.0, 44.0, 122.0],
    [59.0, 81.0, 139.0],
    [44.0, 113.0, 142.0],
    [33.0, 144.0, 141.0],
    [39.0, 173.0, 129.0],
    [92.0, 200.0, 99.0],
    [170.0, 220.0, 50.0],
    [253.0, 231.0, 37.0],
];

/// The colour of `t` in 0..1 (clamped), linearly between the nine stops.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "t is clamped to 0..=1: the stop index is in 0..=8, the colour in 0..=255"
)]
pub fn viridis(t: f64) -> [u8; 3] {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (VIRIDIS.len() - 1) as f64;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f64;
    let mut out = [0u8; 3];
    for k in 0..3 {
        out[k] = (VIRIDIS[i][k] + f * (VIRIDIS[i + 1][k] - VIRIDIS[i][k])).round() as u8;
    }
    out
}

/// Hex `#rrggbb` of a colour (for HTML).
pub fn hex(c: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_and_middle_are_the_stops() {
        assert_eq!(viridis(0.0), [68, 1, 84]);
        assert_eq!(viridis(1.0), [253, 231, 37]);
        assert_eq!(viridis(0.5), [33, 144, 141]);
        assert_eq!(viridis(f64::NAN), [68, 1, 84]);
        assert_eq!(hex([255, 0, 16]), "#ff0010");
    }
}
