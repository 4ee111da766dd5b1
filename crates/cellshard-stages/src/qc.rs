//! Image quality of one site's planes, measured at ingest on the cropped planes before
//! normalization (no extra read):
//!
//! - **focus**: CellProfiler's `PowerLogLogSlope` (MeasureImageQuality): the slope of a
//!   least-squares line through (log radius, log power) of the radially summed power
//!   spectrum, radii 2 up to an eighth of the image side. Blur removes high frequencies, so
//!   a blurred plane has a steeper, more negative slope. Ours differs in one way: the plane
//!   is binned 2x first (256 x 256 for a 512 crop), a quarter of the FFT's work, and the fit
//!   takes the same frequencies in cycles per field (radii 2 to 64 for a 512 crop), slightly
//!   damped by the binning; the ranking of sites by focus is what the measure is used for.
//! - **saturation**: the fraction of pixels at the top of the bit depth (65535 or 255).
//! - **foreground**: the fraction of pixels above the plane's Otsu threshold (256 bins, as
//!   scikit-image's `threshold_otsu`, from the plane's 0.5th to its 99.5th percentile, the
//!   values beyond in the end bins, so a few hot pixels do not squeeze the rest into one).
//! - **nuclei**: an *estimate* of the nuclei in the DNA plane: pixels above its Otsu
//!   threshold, 8-connected components of at least [`MIN_NUCLEUS_AREA`] pixels in a 512 x
//!   512 plane (scaled with the plane's area, at least 4). Touching nuclei count once,
//!   debris of that size counts; it tracks density, it is not a segmentation.

use crate::Plane;

/// Smallest component counted as a nucleus, in pixels of a 512 x 512 plane.
pub const MIN_NUCLEUS_AREA: usize = 30;

/// One plane's quality.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChannelQc {
    /// `PowerLogLogSlope` (more negative: less in focus); 0 for a flat plane.
    pub focus: f64,
    /// Fraction of pixels at the bit depth's maximum.
    pub saturation: f64,
    /// Fraction of pixels above the Otsu threshold.
    pub foreground: f64,
}

/// One site's quality.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteQc {
    /// Per channel.
    pub channels: Vec<ChannelQc>,
    /// Estimated nuclei in the DNA channel.
    pub nuclei: u32,
}

/// The quality of a site's planes; `dna` is the DNA channel's index.
pub fn site_qc(planes: &[Plane], bit_depth: u8, dna: usize) -> SiteQc {
    SiteQc {
        channels: planes.iter().map(|p| channel_qc(p, bit_depth)).collect(),
        nuclei: planes.get(dna).map_or(0, nuclei_count),
    }
}

/// Why each of a plate's sites fails QC under `cfg` (empty: it passes): `saturated`,
/// `empty`, `out_of_focus` (the DNA channel's focus more than `cfg.focus_mads` median
/// absolute deviations below the plate's median; never when the deviation is 0).
pub fn plate_flags(
    sites: &[&SiteQc],
    dna: usize,
    cfg: &cellshard_core::pipeline::QcConfig,
) -> Vec<Vec<&'static str>> {
    let focus: Vec<f64> = sites
        .iter()
        .filter_map(|s| s.channels.get(dna).map(|c| c.focus))
        .collect();
    let median = |v: &mut Vec<f64>| -> f64 {
        if v.is_empty() {
            return 0.0;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    let med = median(&mut focus.clone());
    let mad = median(&mut focus.iter().map(|f| (f - med).abs()).collect());
    sites
        .iter()
        .map(|s| {
            let mut flags = Vec::new();
            if s.channels.iter().any(|c| c.saturation > cfg.max_saturation) {
                flags.push("saturated");
            }
            if s.nuclei < cfg.min_nuclei {
                flags.push("empty");
            }
            if let Some(c) = s.channels.get(dna)
                && mad > 0.0
                && (med - c.focus) / mad > cfg.focus_mads
            {
                flags.push("out_of_focus");
            }
            flags
        })
        .collect()
}

/// The quality of `plane`, whose samples have `bit_depth` bits.
pub fn channel_qc(plane: &Plane, bit_depth: u8) -> ChannelQc {
    let top = if bit_depth == 8 { 255 } else { u16::MAX };
    let n = plane.data.len().max(1) as f64;
    let counts = value_counts(&plane.data);
    let t = otsu_of_counts(&counts, plane.data.len());
    let above: u64 = counts[usize::from(t) + 1..]
        .iter()
        .map(|&c| u64::from(c))
        .sum();
    ChannelQc {
        focus: power_log_log_slope(plane),
        saturation: f64::from(counts[usize::from(top)]) / n,
        foreground: above as f64 / n,
    }
}

/// How many samples take each of the 65,536 values (one pass, no sort).
fn value_counts(data: &[u16]) -> Vec<u32> {
    let mut counts = vec![0u32; 65_536];
    for &v in data {
        counts[usize::from(v)] += 1;
    }
    counts
}

/// The value of rank `k` (0-based) in sorted order, from value counts.
fn value_at_rank(counts: &[u32], k: usize) -> u16 {
    let mut seen = 0usize;
    for (v, &c) in counts.iter().enumerate() {
        seen += c as usize;
        if seen > k {
            return u16::try_from(v).unwrap_or(u16::MAX);
        }
    }
    u16::MAX
}

/// Otsu's threshold of `data` over 256 bins from its 0.5th to its 99.5th percentile: the
/// value at the top of the last bin of the background class (`v > threshold` is foreground).
pub fn otsu(data: &[u16]) -> u16 {
    otsu_of_counts(&value_counts(data), data.len())
}

fn otsu_of_counts(counts: &[u32], len: usize) -> u16 {
    if len == 0 {
        return 0;
    }
    // A robust range: a few saturated or hot pixels would otherwise squeeze every other
    // value into the lowest bins.
    let k = len / 200;
    let lo = value_at_rank(counts, k);
    let hi = value_at_rank(counts, len - 1 - k);
    if lo == hi {
        return hi;
    }
    let span = f64::from(hi - lo);
    let bin = |v: u16| -> usize {
        // Bounded: values outside the range go to the end bins.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let b = (f64::from(v.clamp(lo, hi) - lo) / span * 255.0) as usize;
        b.min(255)
    };
    let mut hist = [0u64; 256];
    for (v, &c) in counts.iter().enumerate() {
        if c > 0 {
            hist[bin(u16::try_from(v).unwrap_or(u16::MAX))] += u64::from(c);
        }
    }
    let total = len as f64;
    let sum_all: f64 = hist
        .iter()
        .enumerate()
        .map(|(i, &c)| i as f64 * c as f64)
        .sum();
    let (mut w0, mut sum0) = (0.0, 0.0);
    let (mut best, mut best_k) = (-1.0, 0usize);
    for (k, &c) in hist.iter().enumerate().take(255) {
        w0 += c as f64;
        sum0 += k as f64 * c as f64;
        let w1 = total - w0;
        if w0 == 0.0 || w1 == 0.0 {
            continue;
        }
        let d = sum0 / w0 - (sum_all - sum0) / w1;
        let between = w0 * w1 * d * d;
        if between > best {
            best = between;
            best_k = k;
        }
    }
    // The largest value falling in bin `best_k`.
    let mut t = hi;
    while t > lo && bin(t) > best_k {
        t -= 1;
    }
    t
}

/// An estimate of the nuclei in a DNA plane (see the module docs).
pub fn nuclei_count(plane: &Plane) -> u32 {
    let t = otsu(&plane.data);
    let (w, h) = (plane.width as usize, plane.height as usize);
    let min_area = (MIN_NUCLEUS_AREA * w * h / (512 * 512)).max(4);
    let fg: Vec<bool> = plane.data.iter().map(|&v| v > t).collect();
    let mut seen = vec![false; fg.len()];
    let mut stack = Vec::new();
    let mut count = 0u32;
    for start in 0..fg.len() {
        if !fg[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let mut area = 0usize;
        while let Some(i) = stack.pop() {
            area += 1;
            let (x, y) = (i % w, i / w);
            for dy in [-1isize, 0, 1] {
                for dx in [-1isize, 0, 1] {
                    let (Some(nx), Some(ny)) = (x.checked_add_signed(dx), y.checked_add_signed(dy))
                    else {
                        continue;
                    };
                    if nx < w && ny < h {
                        let j = ny * w + nx;
                        if fg[j] && !seen[j] {
                            seen[j] = true;
                            stack.push(j);
                        }
                    }
                }
            }
        }
        if area >= min_area {
            count += 1;
        }
    }
    count
}

/// `PowerLogLogSlope` of the plane binned 2x (see the module docs).
pub fn power_log_log_slope(plane: &Plane) -> f64 {
    let (w, h) = (plane.width as usize / 2, plane.height as usize / 2);
    // Power-of-two sides for the FFT: the centred window of the binned plane.
    let side = prev_pow2(w.min(h));
    if side < 16 {
        return 0.0;
    }
    let (ox, oy) = ((w - side) / 2, (h - side) / 2);
    let pw = plane.width as usize;
    let mut img = vec![0f64; side * side];
    for y in 0..side {
        for x in 0..side {
            let (sx, sy) = (2 * (ox + x), 2 * (oy + y));
            let s = u32::from(plane.data[sy * pw + sx])
                + u32::from(plane.data[sy * pw + sx + 1])
                + u32::from(plane.data[(sy + 1) * pw + sx])
                + u32::from(plane.data[(sy + 1) * pw + sx + 1]);
            img[y * side + x] = f64::from(s) / 4.0;
        }
    }
    let mean = img.iter().sum::<f64>() / img.len() as f64;
    // Intensity invariance: divide by the median absolute deviation from the mean.
    let mut dev: Vec<f64> = img.iter().map(|v| (v - mean).abs()).collect();
    let mid = dev.len() / 2;
    let (_, mad, _) = dev.select_nth_unstable_by(mid, f64::total_cmp);
    let scale = if *mad > 0.0 { *mad } else { 1.0 };
    let centred: Vec<f64> = img.iter().map(|v| (v - mean) / scale).collect();
    // Radial sums of the power by floor(radius) + 1, radii folded to the nearest corner,
    // up to an eighth of the unbinned side: the frequencies (cycles per field) CellProfiler
    // fits on the unbinned plane.
    let max_label = side / 4;
    let power = radial_power(&centred, side, max_label);
    let points: Vec<(f64, f64)> = (2..max_label)
        .filter(|&l| power[l] > 0.0)
        .map(|l| ((l as f64).ln(), power[l].ln()))
        .collect();
    if points.len() < 2 {
        return 0.0;
    }
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (num, den) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    if den == 0.0 { 0.0 } else { num / den }
}

fn prev_pow2(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        1 << (usize::BITS - 1 - n.leading_zeros())
    }
}

/// The power spectrum of a real `side` x `side` image summed by radial label
/// (`floor(radius) + 1`, frequencies folded to the nearest corner), for labels below
/// `max_label`. Only what those labels need is transformed: rows two at a time (a real
/// pair packed as one complex row), then the columns of frequencies below `max_label`
/// (a real image's spectrum is conjugate-symmetric, so column `side - x` adds what column
/// `x` adds).
fn radial_power(img: &[f64], side: usize, max_label: usize) -> Vec<f64> {
    let tw: Vec<(f64, f64)> = (0..side / 2)
        .map(|k| {
            let (s, c) = (-2.0 * std::f64::consts::PI * k as f64 / side as f64).sin_cos();
            (c, s)
        })
        .collect();
    let cols = max_label.min(side / 2);
    // Row spectra, columns 0..cols, column-major for the column pass.
    let mut spec_re = vec![0f64; cols * side];
    let mut spec_im = vec![0f64; cols * side];
    let (mut zr, mut zi) = (vec![0f64; side], vec![0f64; side]);
    for pair in 0..side / 2 {
        let (a, b) = (2 * pair, 2 * pair + 1);
        zr.copy_from_slice(&img[a * side..(a + 1) * side]);
        zi.copy_from_slice(&img[b * side..(b + 1) * side]);
        fft(&mut zr, &mut zi, &tw);
        for k in 0..cols {
            let m = (side - k) % side;
            // X = (Z[k] + conj Z[-k]) / 2, Y = (Z[k] - conj Z[-k]) / 2i.
            let (xr, xi) = ((zr[k] + zr[m]) / 2.0, (zi[k] - zi[m]) / 2.0);
            let (yr, yi) = ((zi[k] + zi[m]) / 2.0, (zr[m] - zr[k]) / 2.0);
            spec_re[k * side + a] = xr;
            spec_im[k * side + a] = xi;
            spec_re[k * side + b] = yr;
            spec_im[k * side + b] = yi;
        }
    }
    let mut power = vec![0f64; max_label];
    for k in 0..cols {
        let col = k * side..(k + 1) * side;
        let (re, im) = (&mut spec_re[col.clone()], &mut spec_im[col]);
        fft(re, im, &tw);
        let weight = if k == 0 { 1.0 } else { 2.0 };
        for y in 0..side {
            let fy = y.min(side - y);
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // >= 0, < side
            let label = ((k * k + fy * fy) as f64).sqrt().floor() as usize + 1;
            if (2..max_label).contains(&label) {
                power[label] += weight * (re[y] * re[y] + im[y] * im[y]);
            }
        }
    }
    power
}

/// Iterative radix-2 FFT of a power-of-two length `n`; `tw` holds exp(-2 pi i k / n).
fn fft(re: &mut [f64], im: &mut [f64], tw: &[(f64, f64)]) {
    let n = re.len();
    let mut j = 0;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let stride = n / len;
        for start in (0..n).step_by(len) {
            for k in 0..len / 2 {
                let (c, s) = tw[k * stride];
                let (a, b) = (start + k, start + k + len / 2);
                let (tr, ti) = (re[b] * c - im[b] * s, re[b] * s + im[b] * c);
                re[b] = re[a] - tr;
                im[b] = im[a] - ti;
                re[a] += tr;
                im[a] += ti;
            }
        }
        len <<= 1;
    }
}

#[cfg(test)]
#[path = "qc_tests.rs"]
mod tests;
