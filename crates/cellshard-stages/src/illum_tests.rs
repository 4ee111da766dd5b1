use super::*;

/// Deterministic noise in [0, 1).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // Clamped to u16 first.
fn to_u16(x: f64) -> u16 {
    x.round().clamp(0.0, 65535.0) as u16
}

fn noise_plane(rng: &mut Lcg, w: u32, h: u32) -> Plane {
    let data = (0..w * h).map(|_| to_u16(rng.next() * 65535.0)).collect();
    Plane::new(w, h, data)
}

fn sum_of(planes: &[Plane]) -> IllumSum {
    let mut sum = IllumSum::new(planes[0].width, planes[0].height);
    for p in planes {
        sum.add(p).unwrap();
    }
    sum
}

fn params(block: u32, filter_fraction: f64) -> IllumParams {
    let d = IllumParams::default();
    IllumParams {
        block,
        filter_fraction,
        ..d
    }
}

#[test]
fn sum_is_exact_and_order_independent() {
    let mut rng = Lcg(1);
    let planes: Vec<Plane> = (0..6).map(|_| noise_plane(&mut rng, 7, 5)).collect();
    let forward = sum_of(&planes);
    let reversed: Vec<Plane> = planes.iter().rev().cloned().collect();
    assert_eq!(forward, sum_of(&reversed));
    assert_eq!(forward.images, 6);
    let pixel_3: u64 = planes.iter().map(|p| u64::from(p.data[3])).sum();
    assert_eq!(forward.sum[3], pixel_3);
    let pick = |ids: [usize; 3]| ids.map(|i| planes[i].clone());
    let mut evens = sum_of(&pick([0, 2, 4]));
    let odds = sum_of(&pick([1, 3, 5]));
    evens.merge(&odds).unwrap();
    assert_eq!(evens, forward);
    let a = IllumFunction::compute(&forward, params(2, 0.1)).unwrap();
    let b = IllumFunction::compute(&evens, params(2, 0.1)).unwrap();
    assert_eq!(a.grid_le_bytes(), b.grid_le_bytes());
}

#[test]
fn size_mismatches_are_errors_naming_both_sizes() {
    let mut sum = IllumSum::new(5, 3);
    let err = sum.add(&Plane::new(4, 3, vec![0; 12])).unwrap_err();
    let want = IllumError::Size {
        expected: (5, 3),
        got: (4, 3),
    };
    assert_eq!(err, want);
    assert_eq!(err.to_string(), "size 4x3 does not match 5x3");
    assert_eq!(sum.images, 0);
    let err = sum.merge(&IllumSum::new(5, 4)).unwrap_err();
    assert!(matches!(err, IllumError::Size { got: (5, 4), .. }), "{err}");
    let f = IllumFunction::from_full(2, 2, vec![1.0; 4]).unwrap();
    let mut plane = Plane::new(2, 3, vec![0; 6]);
    let err = f.apply(&f.expand(), &mut plane).unwrap_err();
    assert_eq!(err.to_string(), "size 2x3 does not match 2x2");
    let mut plane = Plane::new(2, 2, vec![0; 4]);
    assert!(matches!(
        f.apply(&[1.0; 3], &mut plane),
        Err(IllumError::Invalid(_))
    ));
    assert!(IllumFunction::from_full(2, 2, vec![1.0; 3]).is_err());
}

#[test]
fn compute_rejects_empty_sums_and_bad_params() {
    let empty = IllumSum::new(4, 4);
    let res = IllumFunction::compute(&empty, IllumParams::default());
    assert_eq!(res, Err(IllumError::Empty));
    assert_eq!(IllumError::Empty.to_string(), "no images to average");
    let one = sum_of(&[Plane::new(4, 4, vec![7; 16])]);
    for bad in [params(0, 0.1), params(2, f64::NAN), params(2, -1.0)] {
        let res = IllumFunction::compute(&one, bad);
        assert!(matches!(res, Err(IllumError::Invalid(_))), "{bad:?}");
    }
    let bad = IllumParams {
        robust_min_percentile: 101.0,
        ..IllumParams::default()
    };
    assert!(IllumFunction::compute(&one, bad).is_err());
    let flat = IllumFunction::compute(&one, IllumParams::default()).unwrap();
    assert_eq!(
        (flat.grid_width, flat.grid_height, flat.grid),
        (1, 1, vec![1.0])
    );
}

/// `1 - 0.6 r^2 / r_max^2` from the centre, times a flat 10000, with 2 % noise.
fn vignetted_planes() -> Vec<Plane> {
    let (n, c) = (64u32, 31.5);
    let mut rng = Lcg(7);
    let mut planes = Vec::new();
    for _ in 0..20 {
        let mut data = Vec::new();
        for y in 0..n {
            for x in 0..n {
                let r2 = (f64::from(x) - c).powi(2) + (f64::from(y) - c).powi(2);
                let f = 1.0 - 0.6 * r2 / (2.0 * c * c);
                data.push(to_u16(10_000.0 * f * (0.98 + 0.04 * rng.next())));
            }
        }
        planes.push(Plane::new(n, n, data));
    }
    planes
}

/// Mean of the four 8x8 corners over the mean of the central 8x8, over all planes. (The
/// median window shrinks at the borders, so the outermost pixels keep some of the falloff, as
/// with CellProfiler: 4x4 corners come out at 0.90.)
fn corner_to_centre(planes: &[Plane]) -> f64 {
    let mean = |x0: u32, y0: u32| {
        let mut s = 0.0;
        for p in planes {
            for y in y0..y0 + 8 {
                for x in x0..x0 + 8 {
                    s += f64::from(p.get(x, y));
                }
            }
        }
        s
    };
    let corners = mean(0, 0) + mean(56, 0) + mean(0, 56) + mean(56, 56);
    corners / 4.0 / mean(28, 28)
}

#[test]
fn vignetting_is_flattened() {
    let mut planes = vignetted_planes();
    let before = corner_to_centre(&planes);
    assert!(before < 0.6, "{before}");
    let f = IllumFunction::compute(&sum_of(&planes), params(2, 0.075)).unwrap();
    assert_eq!((f.grid_width, f.grid_height), (32, 32));
    let mut sorted = f.grid.clone();
    sorted.sort_by(f32::total_cmp);
    assert!(sorted[0] >= 1.0, "{}", sorted[0]);
    let p2 = sorted[sorted.len() * 2 / 100];
    assert!((p2 - 1.0).abs() < 1e-6, "{p2}");
    assert!(sorted[sorted.len() - 1] > 1.5);
    let expanded = f.expand();
    assert_eq!(expanded.len(), 64 * 64);
    assert!(expanded.iter().all(|&v| v >= 1.0));
    for p in &mut planes {
        f.apply(&expanded, p).unwrap();
    }
    let after = corner_to_centre(&planes);
    assert!((0.95..1.05).contains(&after), "{after}");
}

#[test]
fn window_side_follows_the_jump_recipe() {
    assert_eq!(window_side(0.075, 270, 270), 21); // 20.25 -> 20 -> 21
    assert_eq!(window_side(0.075, 270, 200), 21);
    assert_eq!(window_side(0.075, 32, 32), 3); // 2.4 -> 2 -> 3
    assert_eq!(window_side(0.1, 50, 10), 5);
    assert_eq!(window_side(0.0, 50, 50), 3);
    assert_eq!(window_side(10.0, 4, 4), 5);
    assert_eq!(window_side(0.5, 1, 1), 1);
}

#[test]
fn median_filter_of_a_hand_grid() {
    #[rustfmt::skip]
    let grid = [
        1.0, 2.0, 3.0,
        4.0, 100.0, 6.0,
        7.0, 8.0, 9.0,
    ];
    // Corners see 4 values, edges 6, the centre 9; even counts average the middle two.
    let want = [3.0, 3.5, 4.5, 5.5, 6.0, 7.0, 7.5, 7.5, 8.5];
    assert_eq!(median_filter(&grid, 3, 3, 3), want);
    assert_eq!(median_filter(&grid, 3, 3, 1), grid);
    assert_eq!(median_filter(&[5.0, 1.0, 9.0], 3, 1, 5), [5.0; 3]);
}

#[test]
fn median_removes_a_spike() {
    let mut data = vec![100; 49];
    data[24] = 60_000;
    let sum = sum_of(&[Plane::new(7, 7, data)]);
    let f = IllumFunction::compute(&sum, params(1, 0.4)).unwrap();
    assert_eq!(f.grid, vec![1.0; 49]);
}

#[test]
fn block_mean_averages_partial_edge_blocks() {
    let sum = IllumSum {
        width: 5,
        height: 3,
        images: 2,
        sum: (0..15).map(|v| v * 2).collect(),
    };
    // Pixel means are 0..=14 row-major; blocks of 2: full, full, 1 wide; bottom row 1 high.
    let want = [3.0, 5.0, 6.5, 10.5, 12.5, 14.0];
    assert_eq!(block_mean(&sum, 2, 3), want);
}

#[test]
fn robust_minimum_follows_cellprofiler() {
    let values: Vec<f64> = (0..100).map(f64::from).collect();
    // 99 positive values: index floor(99 * 2 / 100) = 1, the value 2.
    let f = robust_min_rescale(&values, 2.0);
    assert_eq!(&f[..4], &[1.0, 1.0, 1.0, 1.5]);
    assert_eq!(f[99], 49.5);
    assert_eq!(robust_min_rescale(&[0.0, 0.0], 2.0), [1.0, 1.0]);
}

#[test]
fn expanding_a_full_resolution_function_is_the_identity() {
    let mut rng = Lcg(3);
    let values: Vec<f32> = (0..35).map(|_| narrow(1.0 + rng.next() * 3.0)).collect();
    let f = IllumFunction::from_full(7, 5, values.clone()).unwrap();
    assert_eq!(f.expand(), values);
}

#[test]
fn bilinear_expand_of_a_two_by_two_grid() {
    let bytes: Vec<u8> = [1.0f32, 2.0, 3.0, 5.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let f = IllumFunction::from_grid_le_bytes(4, 4, 2, 2, &bytes).unwrap();
    // Grid centres sit at pixel 0.5 and 2.5 on each axis; outside them the edge value holds.
    #[rustfmt::skip]
    let want = [
        1.0, 1.25, 1.75, 2.0,
        1.5, 1.8125, 2.4375, 2.75,
        2.5, 2.9375, 3.8125, 4.25,
        3.0, 3.5, 4.5, 5.0,
    ];
    assert_eq!(f.expand(), want);
    let wide = IllumFunction::from_grid_le_bytes(3, 1, 1, 1, &2.5f32.to_le_bytes()).unwrap();
    assert_eq!(wide.expand(), [2.5; 3]);
}

#[test]
fn grid_bytes_round_trip_and_are_checked() {
    let f = IllumFunction::from_full(3, 1, vec![1.0, 1.5, 2.25]).unwrap();
    let bytes = f.grid_le_bytes();
    assert_eq!(bytes.len(), 12);
    assert_eq!(&bytes[4..8], &1.5f32.to_le_bytes());
    assert_eq!(IllumFunction::from_grid_le_bytes(3, 1, 3, 1, &bytes), Ok(f));
    let res = IllumFunction::from_grid_le_bytes(3, 1, 3, 1, &bytes[..8]);
    assert_eq!(
        res.unwrap_err().to_string(),
        "invalid illumination input: 8 values, expected 12"
    );
    assert!(IllumFunction::from_grid_le_bytes(3, 1, 0, 1, &[]).is_err());
    let err = IllumFunction::from_full(2, 1, vec![1.0, 0.0]).unwrap_err();
    assert_eq!(
        err,
        IllumError::Value {
            index: 1,
            value: 0.0
        }
    );
    assert_eq!(
        err.to_string(),
        "illumination value 0 at index 1 is not finite and > 0"
    );
    let err = IllumFunction::from_full(2, 1, vec![f32::INFINITY, -1.0]).unwrap_err();
    assert!(matches!(err, IllumError::Value { index: 0, .. }), "{err}");
}

#[test]
fn apply_rounds_half_to_even_and_clamps() {
    let f = IllumFunction::from_full(3, 2, vec![2.0, 2.0, 4.0, 0.5, 1.0, 3.0]).unwrap();
    let mut plane = Plane::new(3, 2, vec![5, 3, 10, 40_000, 7, 0]);
    f.apply(&f.expand(), &mut plane).unwrap();
    // 2.5 -> 2, 1.5 -> 2, 2.5 -> 2, 80000 -> 65535, 7, 0.
    assert_eq!(plane.data, [2, 2, 2, 65_535, 7, 0]);
    let mut plane = Plane::new(3, 2, vec![7, 9, 65_535, 1, 0, 65_535]);
    f.apply(&[2.0, 2.0, 1.0, 0.0, 0.0, f32::NAN], &mut plane)
        .unwrap();
    assert_eq!(plane.data, [4, 4, 65_535, 65_535, 0, 0]);
}

/// A .npy file with a hand-written header (version 1 has a u16 length, 2 and 3 a u32).
fn npy_file(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = b"\x93NUMPY".to_vec();
    out.extend([version, 0]);
    let len = u32::try_from(header.len()).unwrap().to_le_bytes();
    out.extend_from_slice(if version == 1 { &len[..2] } else { &len });
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn header(descr: &str, fortran: &str, shape: &str) -> String {
    format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}\n")
}

#[test]
fn npy_round_trip() {
    let values: Vec<f32> = (0..12u8).map(|v| 1.0 + f32::from(v) / 8.0).collect();
    let bytes = write_npy_f32(3, 4, &values);
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    assert_eq!((bytes.len() - 12 * 4) % 64, 0);
    assert_eq!(bytes[bytes.len() - 12 * 4 - 1], b'\n');
    assert_eq!(read_npy(&bytes), Ok((3, 4, values)));
}

#[test]
fn npy_reads_f8_big_endian_and_fortran_order() {
    let f8: Vec<u8> = [1.5f64, -2.0, 0.1]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let file = npy_file(1, &header("<f8", "False", "(1, 3)"), &f8);
    assert_eq!(read_npy(&file), Ok((1, 3, vec![1.5, -2.0, 0.1f32])));
    let be: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let file = npy_file(2, &header(">f4", "False", "(2, 2)"), &be);
    assert_eq!(read_npy(&file), Ok((2, 2, vec![1.0, 2.0, 3.0, 4.0])));
    // Column-major [[1, 2, 3], [4, 5, 6]] in a version 3.0 file.
    let cols: Vec<u8> = [1.0f32, 4.0, 2.0, 5.0, 3.0, 6.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let file = npy_file(3, &header("<f4", "True", "(2, 3)"), &cols);
    assert_eq!(
        read_npy(&file),
        Ok((2, 3, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
    );
    let native = if cfg!(target_endian = "little") {
        "=f4"
    } else {
        "<f4"
    };
    let file = npy_file(1, &header(native, "False", "(1L, 2L)"), &cols[..8]);
    assert_eq!(read_npy(&file), Ok((1, 2, vec![1.0, 4.0])));
}

#[test]
fn npy_rejections_name_the_cause() {
    let four = [0u8; 16];
    let reason = |bytes: &[u8]| match read_npy(bytes) {
        Err(IllumError::Npy(reason)) => reason,
        other => panic!("not an npy error: {other:?}"),
    };
    let good = npy_file(1, &header("<f4", "False", "(2, 2)"), &four);
    assert!(read_npy(&good).is_ok());
    let cases = [
        (b"\x93NUMPX\x01\x00".to_vec(), "bad magic"),
        (
            npy_file(4, &header("<f4", "False", "(2, 2)"), &four),
            "version 4.0",
        ),
        (
            npy_file(1, &header("<i4", "False", "(2, 2)"), &four),
            "dtype '<i4'",
        ),
        (
            npy_file(1, &header("<f4", "False", "(1, 2, 2)"), &four),
            "3-D shape",
        ),
        (
            npy_file(1, &header("<f4", "False", "(4,)"), &four),
            "1-D shape",
        ),
        (
            npy_file(1, &header("<f4", "False", "(2, 2)"), &four[..15]),
            "truncated data",
        ),
        (
            npy_file(1, &header("<f4", "False", "(2, 2)"), &[0; 17]),
            "trailing bytes",
        ),
        (
            npy_file(1, &header("<f4", "Maybe", "(2, 2)"), &four),
            "fortran_order",
        ),
        (
            npy_file(1, &header("<f4", "False", "(16384, 16385)"), &four),
            "2^28",
        ),
        (
            npy_file(1, &header("<f4", "False", "(4294967296, 1)"), &four),
            "bad shape",
        ),
        (
            npy_file(1, "{'descr': '<f4', }", &four),
            "no 'fortran_order'",
        ),
        (npy_file(2, &" ".repeat(70_000), &four), "header too long"),
        (good[..good.len() - 20].to_vec(), "truncated"),
        (good[..9].to_vec(), "truncated header"),
    ];
    for (bytes, cause) in cases {
        let reason = reason(&bytes);
        assert!(reason.contains(cause), "{reason:?} lacks {cause:?}");
        assert!(!reason.contains('\n'), "{reason:?}");
    }
    let err = read_npy(b"nope").unwrap_err();
    assert_eq!(err.to_string(), "npy: bad magic, not a .npy file");
}
