//! Tests of [`crate::qc`]: the FFT against a direct DFT, focus falling with blur, and
//! saturation, foreground and nuclei on planes built by hand.

use super::*;

/// A direct DFT, the FFT's reference.
fn dft(re: &[f64], im: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let n = re.len();
    let mut out = (vec![0.0; n], vec![0.0; n]);
    for k in 0..n {
        for t in 0..n {
            let a = -2.0 * std::f64::consts::PI * (k * t) as f64 / n as f64;
            out.0[k] += re[t] * a.cos() - im[t] * a.sin();
            out.1[k] += re[t] * a.sin() + im[t] * a.cos();
        }
    }
    out
}

#[test]
fn the_fft_equals_a_direct_dft() {
    for n in [2usize, 8, 32] {
        let re: Vec<f64> = (0..n).map(|i| ((i * 7919) % 13) as f64 - 6.0).collect();
        let im: Vec<f64> = (0..n).map(|i| ((i * 104_729) % 5) as f64).collect();
        let (want_re, want_im) = dft(&re, &im);
        let tw: Vec<(f64, f64)> = (0..n / 2)
            .map(|k| {
                let (s, c) = (-2.0 * std::f64::consts::PI * k as f64 / n as f64).sin_cos();
                (c, s)
            })
            .collect();
        let (mut r, mut i) = (re.clone(), im.clone());
        fft(&mut r, &mut i, &tw);
        for k in 0..n {
            assert!((r[k] - want_re[k]).abs() < 1e-9 && (i[k] - want_im[k]).abs() < 1e-9);
        }
    }
}

/// The focus test's documented blur: `cellshard_synth::gaussian_blur` of `sigma` px.
fn gaussian_blur(p: &Plane, sigma: f64) -> Plane {
    let mut data = p.data.clone();
    cellshard_synth::gaussian_blur(&mut data, p.width, sigma);
    Plane::new(p.width, p.height, data)
}

fn synthetic_site(seed: u64, site: u32) -> Plane {
    let cfg = cellshard_synth::SynthConfig {
        size: 256,
        seed,
        ..Default::default()
    };
    let meta = cellshard_core::SiteMetadata {
        cell_type: "HUVEC".into(),
        dataset: None,
        experiment: "HUVEC-01".into(),
        plate: 1,
        well: "B02".into(),
        site: Some(site),
        well_type: "treatment".into(),
        sirna_id: Some(1),
        extra: Vec::new(),
    };
    Plane::new(256, 256, cellshard_synth::render_channel(&cfg, &meta, 1))
}

#[test]
fn blur_makes_the_power_spectrum_steeper() {
    let mut sharp = Vec::new();
    let mut blurred = Vec::new();
    for s in 1..=4 {
        let p = synthetic_site(s.into(), s);
        sharp.push(channel_qc(&p, 16).focus);
        blurred.push(channel_qc(&gaussian_blur(&p, 2.0), 16).focus);
    }
    let worst_sharp = sharp.iter().copied().fold(f64::INFINITY, f64::min);
    let best_blurred = blurred.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert!(
        best_blurred < worst_sharp,
        "sharp {sharp:?} blurred {blurred:?}"
    );
    // A flat plane has no slope.
    assert_eq!(
        power_log_log_slope(&Plane::new(64, 64, vec![7; 64 * 64])),
        0.0
    );
}

#[test]
fn saturation_and_foreground_on_hand_built_planes() {
    let mut data = vec![100u16; 16];
    data[..3].fill(u16::MAX);
    let q = channel_qc(&Plane::new(4, 4, data), 16);
    assert_eq!(q.saturation, 3.0 / 16.0);
    let q = channel_qc(&Plane::new(2, 2, vec![255, 255, 0, 17]), 8);
    assert_eq!(q.saturation, 0.5);
    // Two populations: the threshold splits them.
    let mut data = vec![100u16; 64];
    data[40..].fill(1000);
    let t = otsu(&data);
    assert!((100..1000).contains(&t), "{t}");
    let q = channel_qc(&Plane::new(8, 8, data), 16);
    assert_eq!(q.foreground, 24.0 / 64.0);
    assert_eq!(
        channel_qc(&Plane::new(2, 2, vec![5; 4]), 16).foreground,
        0.0
    );
}

#[test]
fn nuclei_are_counted_as_large_enough_bright_components() {
    let (w, h) = (64u32, 64u32);
    let mut data = vec![200u16; (w * h) as usize];
    let mut disc = |cx: usize, cy: usize, r: usize| {
        for y in 0..h as usize {
            for x in 0..w as usize {
                if x.abs_diff(cx).pow(2) + y.abs_diff(cy).pow(2) <= r * r {
                    data[y * w as usize + x] = 5000;
                }
            }
        }
    };
    disc(12, 12, 5);
    disc(40, 15, 6);
    disc(30, 45, 5);
    // A speck of 2 pixels is not a nucleus (at least 4 in so small a plane).
    data[55 * 64 + 55] = 5000;
    data[55 * 64 + 56] = 5000;
    assert_eq!(nuclei_count(&Plane::new(w, h, data)), 3);
}

#[test]
fn radial_power_equals_the_full_spectrum_summed_by_radius() {
    let side = 32;
    let img: Vec<f64> = (0..side * side)
        .map(|i| ((i * 7919 + 13) % 101) as f64 / 10.0 - 5.0)
        .collect();
    let max_label = side / 4;
    // Every frequency of a direct 2-D DFT.
    let mut want = vec![0f64; max_label];
    for ky in 0..side {
        for kx in 0..side {
            let (mut re, mut im) = (0.0, 0.0);
            for y in 0..side {
                for x in 0..side {
                    let a = -2.0 * std::f64::consts::PI * ((kx * x + ky * y) as f64) / side as f64;
                    re += img[y * side + x] * a.cos();
                    im += img[y * side + x] * a.sin();
                }
            }
            let (fx, fy) = (kx.min(side - kx), ky.min(side - ky));
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let label = ((fx * fx + fy * fy) as f64).sqrt().floor() as usize + 1;
            if (2..max_label).contains(&label) {
                want[label] += re * re + im * im;
            }
        }
    }
    let got = radial_power(&img, side, max_label);
    for l in 2..max_label {
        assert!(
            (got[l] - want[l]).abs() < 1e-6 * want[l].max(1.0),
            "{l}: {got:?} {want:?}"
        );
    }
}
