//! RxRx1's channel facts, kept in one place: stain names, the viewer colours and the
//! display maxima of rxrx1-utils. Channels are 1-based in names and 0-based in arrays.

/// Stains of channels 1..6 (Cell Painting).
pub const STAINS: [&str; 6] = [
    "Hoechst",
    "ConA",
    "Phalloidin",
    "Syto14",
    "MitoTracker",
    "WGA",
];

/// Viewer colours (rxrx1-utils) of channels 1..6, as RGB on a 0..255 scale.
pub const VIEWER_RGB: [[f64; 3]; 6] = [
    [19.0, 0.0, 249.0],
    [42.0, 255.0, 31.0],
    [255.0, 0.0, 25.0],
    [45.0, 255.0, 252.0],
    [250.0, 0.0, 253.0],
    [254.0, 255.0, 40.0],
];

/// Display maxima of channels 1..6 on the 0..255 display scale: a value at or above its
/// channel's maximum shows at full colour.
pub const DISPLAY_MAX: [f64; 6] = [51.0, 107.0, 64.0, 191.0, 89.0, 191.0];

/// Name of channel `c` (1-based): `w2 ConA`, or `w7` past the six stains.
pub fn channel_label(c: usize) -> String {
    match c.checked_sub(1).and_then(|i| STAINS.get(i)) {
        Some(n) => format!("w{c} {n}"),
        None => format!("w{c}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_the_stain_within_the_six() {
        assert_eq!(channel_label(2), "w2 ConA");
        assert_eq!(channel_label(7), "w7");
        assert_eq!(channel_label(0), "w0");
    }
}
