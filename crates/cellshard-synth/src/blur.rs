//! Out-of-focus sites on purpose: a separable Gaussian blur of standard deviation `sigma`
//! pixels (kernel to 3 sigma, normalized, image edges clamped, rounded half away from zero),
//! for tests of focus QC.

/// Blur a `size` x `size` image in place.
pub fn gaussian_blur(samples: &mut [u16], size: u32, sigma: f64) {
    if sigma <= 0.0 || size == 0 {
        return;
    }
    #[allow(clippy::cast_possible_truncation)] // a few pixels
    let r = (3.0 * sigma).ceil() as i64;
    let k: Vec<f64> = (-r..=r)
        .map(|i| (-((i * i) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f64 = k.iter().sum();
    let n = i64::from(size);
    let idx = |x: i64, y: i64| -> usize {
        // Clamped into the image, so non-negative and in range.
        #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
        let i = (y.clamp(0, n - 1) * n + x.clamp(0, n - 1)) as usize;
        i
    };
    let src: Vec<f64> = samples.iter().map(|&v| f64::from(v)).collect();
    let mut tmp = vec![0.0; src.len()];
    for y in 0..n {
        for x in 0..n {
            tmp[idx(x, y)] = (-r..=r)
                .zip(&k)
                .map(|(i, w)| w * src[idx(x + i, y)])
                .sum::<f64>()
                / total;
        }
    }
    for y in 0..n {
        for x in 0..n {
            let v = (-r..=r)
                .zip(&k)
                .map(|(i, w)| w * tmp[idx(x, y + i)])
                .sum::<f64>()
                / total;
            #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)] // clamped
            {
                samples[idx(x, y)] = v.round().clamp(0.0, 65535.0) as u16;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_spreads_and_keeps_its_sum() {
        let mut img = vec![0u16; 31 * 31];
        img[15 * 31 + 15] = 10_000;
        gaussian_blur(&mut img, 31, 2.0);
        let sum: u32 = img.iter().map(|&v| u32::from(v)).sum();
        assert!((9_900..=10_100).contains(&sum), "{sum}");
        assert!(img[15 * 31 + 15] < 10_000 / 20 && img[15 * 31 + 17] > 0);
        // sigma 0 leaves the image alone.
        let before = img.clone();
        gaussian_blur(&mut img, 31, 0.0);
        assert_eq!(img, before);
    }
}
