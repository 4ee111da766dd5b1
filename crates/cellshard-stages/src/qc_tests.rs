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

/// A separable Gaussian blur of standard deviation `sigma` px (kernel to 3 sigma, edges
/// clamped): the documented blur of the focus test.
pub(crate) fn gaussian_blur(p: &Plane, sigma: f64) -> Plane {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let r = (3.0 * sigma).ceil() as isize;
    let k: Vec<f64> = (-r..=r)
        .map(|i| (-((i * i) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let ks: f64 = k.iter().sum();
    let (w, h) = (p.width as isize, p.height as isize);
    let at =
        |d: &[f64], x: isize, y: isize| d[(y.clamp(0, h - 1) * w + x.clamp(0, w - 1)) as usize];
    let src: Vec<f64> = p.data.iter().map(|&v| f64::from(v)).collect();
    let mut tmp = vec![0.0; src.len()];
    for y in 0..h {
        for x in 0..w {
            tmp[(y * w + x) as usize] = (-r..=r)
                .map(|i| k[(i + r) as usize] * at(&src, x + i, y))
                .sum::<f64>()
                / ks;
        }
    }
    let mut out = Vec::with_capacity(src.len());
    for y in 0..h {
        for x in 0..w {
            let v = (-r..=r)
                .map(|i| k[(i + r) as usize] * at(&tmp, x, y + i))
                .sum::<f64>()
                / ks;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            out.push(v.round().clamp(0.0, 65535.0) as u16);
        }
    }
    Plane::new(p.width, p.height, out)
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
    let mut disc = |cx: i32, cy: i32, r: i32| {
        for y in 0..h as i32 {
            for x in 0..w as i32 {
                if (x - cx).pow(2) + (y - cy).pow(2) <= r * r {
                    data[(y * w as i32 + x) as usize] = 5000;
                }
            }
        }
    };
    disc(12, 12, 5);
    disc(40, 15, 6);
    disc(30, 45, 5);
    // A speck of 4 pixels is not a nucleus.
    disc(55, 55, 1);
    assert_eq!(nuclei_count(&Plane::new(w, h, data)), 3);
}
