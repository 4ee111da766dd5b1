use super::*;

fn feature(v: &[f32], name: &str) -> f32 {
    v[FEATURE_NAMES.iter().position(|f| *f == name).unwrap()]
}

fn features(plane: &[f32], side: usize) -> Vec<f32> {
    let mut out = Vec::new();
    channel_features(plane, side, side, &mut out);
    assert_eq!(out.len(), FEATURES_PER_CHANNEL);
    out
}

/// A plane of `side^2` with a bright square of `sq` pixels a side every `period` pixels.
fn spots(side: usize, sq: usize, period: usize) -> Vec<f32> {
    (0..side * side)
        .map(|i| {
            let (y, x) = (i / side, i % side);
            if y % period < sq && x % period < sq {
                0.8
            } else {
                0.1
            }
        })
        .collect()
}

#[test]
fn intensity_features_match_hand_values() {
    // A quarter of the pixels at 0.8, the rest at 0.2.
    let side = 64;
    let plane: Vec<f32> = (0..side * side)
        .map(|i| if i % 4 == 0 { 0.8 } else { 0.2 })
        .collect();
    let f = features(&plane, side);
    let mean = 0.25 * 0.8 + 0.75 * 0.2;
    assert!((feature(&f, "mean") - mean).abs() < 1e-5);
    let std = (0.25f32 * 0.75).sqrt() * 0.6;
    assert!((feature(&f, "std") - std).abs() < 1e-4, "{f:?}");
    let near = |a: f32, b: f32| (a - b).abs() < 1.0 / 4000.0;
    assert!(near(feature(&f, "p05"), 0.2) && near(feature(&f, "p50"), 0.2));
    assert!(near(feature(&f, "p95"), 0.8));
    assert!((feature(&f, "fg_fraction") - 0.25).abs() < 1e-6);
    assert!(near(feature(&f, "fg_mean"), 0.8));
}

#[test]
fn texture_tells_fine_from_coarse_and_flat() {
    let side = 96;
    // Stripes of period 2 alternate within the co-occurrence distance (3): high contrast.
    let fine: Vec<f32> = (0..side * side)
        .map(|i| if (i % side) % 2 == 0 { 0.9 } else { 0.1 })
        .collect();
    // Blocks of 24: most pairs fall inside one block, low contrast, high homogeneity.
    let coarse = spots(side, 24, 48);
    let (f, c) = (features(&fine, side), features(&coarse, side));
    assert!(
        feature(&f, "contrast") > 5.0 * feature(&c, "contrast"),
        "{f:?} {c:?}"
    );
    assert!(feature(&c, "homogeneity") > feature(&f, "homogeneity"));
    assert!(feature(&c, "correlation") > 0.5, "{c:?}");
    let flat = features(&vec![0.3; side * side], side);
    for name in ["contrast", "correlation", "entropy"] {
        assert_eq!(feature(&flat, name), 0.0, "{name}");
    }
    assert!((feature(&flat, "asm") - 1.0).abs() < 1e-6);
}

#[test]
fn granularity_peaks_at_the_grain_size() {
    // Spots 4 pixels wide (2 after binning) vanish at the opening of half-width 1 (3 wide);
    // spots 12 wide (6 binned) survive until half-width 3 (7 wide).
    let side = 128;
    let small = features(&spots(side, 4, 16), side);
    let large = features(&spots(side, 12, 32), side);
    let g = |v: &[f32]| -> Vec<f32> {
        (1..=4)
            .map(|k| feature(v, &format!("granularity_{k}")))
            .collect()
    };
    let (s, l) = (g(&small), g(&large));
    let argmax = |v: &[f32]| {
        v.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0
    };
    assert_eq!(argmax(&s), 0, "{s:?}");
    assert_eq!(argmax(&l), 2, "{l:?}");
    assert!(s.iter().chain(&l).all(|v| *v >= -1e-4), "{s:?} {l:?}");
}

#[test]
fn names_follow_channels_and_medians_are_per_column() {
    let names = feature_names(&["DNA".to_string(), "ER".to_string()]);
    assert_eq!(names.len(), 2 * FEATURES_PER_CHANNEL);
    assert_eq!(names[0], "DNA_mean");
    assert_eq!(names[FEATURES_PER_CHANNEL + 15], "ER_granularity_4");
    let rows: [&[f32]; 4] = [&[1.0, 10.0], &[3.0, 40.0], &[2.0, 20.0], &[9.0, 30.0]];
    assert_eq!(column_medians(&rows, 2), vec![2.5, 25.0]);
    assert_eq!(column_medians(&rows[..3], 2), vec![2.0, 20.0]);
}

#[test]
fn site_features_are_deterministic_and_channel_major() {
    let side = 32;
    let a = spots(side, 3, 8);
    let b: Vec<f32> = a.iter().map(|v| 1.0 - v).collect();
    let one = site_features(&[&a, &b], side, side);
    assert_eq!(one, site_features(&[&a, &b], side, side));
    assert_eq!(&one[..FEATURES_PER_CHANNEL], &features(&a, side)[..]);
    assert_eq!(&one[FEATURES_PER_CHANNEL..], &features(&b, side)[..]);
}
