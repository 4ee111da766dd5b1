//! Per-site profiles without a model: a fixed, documented vector of per-channel intensity,
//! texture and granularity features, a CellProfiler-lite set (`MeasureImageIntensity`,
//! `MeasureTexture`, `MeasureGranularity` on the whole image, not per cell).
//!
//! Each channel's plane is taken in `[0, 1]` (an integer tensor divided by its type's
//! maximum) and gives [`FEATURES_PER_CHANNEL`] values, in [`FEATURE_NAMES`] order:
//!
//! - **intensity** (`mean`, `std`, `p05`, `p50`, `p95`, `fg_fraction`, `fg_mean`): the
//!   percentiles from a 4096-bin histogram (bin centres); the foreground is the pixels above
//!   the plane's Otsu threshold, its fraction and mean intensity.
//! - **texture** (`contrast`, `correlation`, `homogeneity`, `entropy`, `asm`): Haralick's
//!   features of the grey-level co-occurrence matrix at distance [`TEXTURE_DISTANCE`],
//!   horizontal and vertical offsets pooled (CellProfiler averages four directions and keeps
//!   each), with the plane quantised to [`GREY_LEVELS`] levels over its 0.5th to 99.5th
//!   percentile (CellProfiler rescales over min to max, which one hot pixel decides).
//! - **granularity** (`granularity_1` .. `granularity_4`): on the plane binned 2x, the
//!   percentage of its total intensity that a grey-level opening with a square of half-width
//!   k removes beyond the opening of half-width k - 1 (CellProfiler's spectrum uses disks and
//!   opening by reconstruction after a background tophat; squares and plain openings are
//!   separable and cheap).
//!
//! A site's vector is its channels' features, channel by channel: `{channel}_{feature}`.

#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "bins and grey levels from values clamped to their range first"
)]

/// Features of one channel, in order.
pub const FEATURE_NAMES: [&str; FEATURES_PER_CHANNEL] = [
    "mean",
    "std",
    "p05",
    "p50",
    "p95",
    "fg_fraction",
    "fg_mean",
    "contrast",
    "correlation",
    "homogeneity",
    "entropy",
    "asm",
    "granularity_1",
    "granularity_2",
    "granularity_3",
    "granularity_4",
];

/// Values per channel.
pub const FEATURES_PER_CHANNEL: usize = 16;

/// Bins of the intensity histogram.
const BINS: usize = 4096;

/// Grey levels of the co-occurrence matrix.
pub const GREY_LEVELS: usize = 16;

/// Pixel offset of the co-occurrence pairs.
pub const TEXTURE_DISTANCE: usize = 3;

/// Largest half-width of the granularity openings.
const GRANULARITY_SCALES: usize = 4;

/// The names of a vector's values for channels named `channels`.
pub fn feature_names(channels: &[String]) -> Vec<String> {
    channels
        .iter()
        .flat_map(|c| FEATURE_NAMES.iter().map(move |f| format!("{c}_{f}")))
        .collect()
}

/// The features of one plane (`width * height` values in `[0, 1]`), appended to `out`.
pub fn channel_features(plane: &[f32], width: usize, height: usize, out: &mut Vec<f32>) {
    debug_assert_eq!(plane.len(), width * height);
    let start = out.len();
    out.resize(start + FEATURES_PER_CHANNEL, 0.0);
    if plane.is_empty() {
        return;
    }
    let f = &mut out[start..];
    let bin = |v: f32| ((v.clamp(0.0, 1.0) * (BINS - 1) as f32).round()) as usize;
    let mut hist = vec![0u64; BINS];
    let (mut sum, mut sum2) = (0f64, 0f64);
    for &v in plane {
        hist[bin(v)] += 1;
        let v = f64::from(v);
        sum += v;
        sum2 += v * v;
    }
    let n = plane.len() as f64;
    let mean = sum / n;
    let centre = |b: usize| b as f64 / (BINS - 1) as f64;
    let pct = |q: f64| centre(quantile_bin(&hist, plane.len(), q));
    let t = otsu_bin(&hist);
    let (mut fg_n, mut fg_sum) = (0u64, 0f64);
    for (b, &c) in hist.iter().enumerate().skip(t + 1) {
        fg_n += c;
        fg_sum += c as f64 * centre(b);
    }
    let values = [
        mean,
        (sum2 / n - mean * mean).max(0.0).sqrt(),
        pct(0.05),
        pct(0.5),
        pct(0.95),
        fg_n as f64 / n,
        if fg_n > 0 { fg_sum / fg_n as f64 } else { 0.0 },
    ];
    let (lo, hi) = (pct(0.005), pct(0.995));
    let texture = haralick(plane, width, height, lo, hi);
    let granularity = granularity(plane, width, height);
    for (o, v) in f
        .iter_mut()
        .zip(values.iter().chain(&texture).chain(&granularity))
    {
        *o = *v as f32;
    }
}

/// The bin holding quantile `q` of `n` counted values.
fn quantile_bin(hist: &[u64], n: usize, q: f64) -> usize {
    let target = ((n as f64 - 1.0) * q).floor() as u64;
    let mut seen = 0u64;
    for (b, &c) in hist.iter().enumerate() {
        seen += c;
        if seen > target {
            return b;
        }
    }
    hist.len() - 1
}

/// Otsu's threshold bin: the last bin of the background class.
fn otsu_bin(hist: &[u64]) -> usize {
    let total: u64 = hist.iter().sum();
    let weighted: f64 = hist
        .iter()
        .enumerate()
        .map(|(b, &c)| b as f64 * c as f64)
        .sum();
    let (mut w0, mut s0, mut best, mut best_t) = (0f64, 0f64, -1f64, 0usize);
    for (b, &c) in hist.iter().enumerate() {
        w0 += c as f64;
        s0 += b as f64 * c as f64;
        let w1 = total as f64 - w0;
        if w0 == 0.0 || w1 == 0.0 {
            continue;
        }
        let (m0, m1) = (s0 / w0, (weighted - s0) / w1);
        let between = w0 * w1 * (m0 - m1) * (m0 - m1);
        if between > best {
            best = between;
            best_t = b;
        }
    }
    best_t
}

/// Haralick's contrast, correlation, homogeneity, entropy and angular second moment of the
/// symmetric, normalised co-occurrence matrix (horizontal and vertical pairs pooled).
fn haralick(plane: &[f32], width: usize, height: usize, lo: f64, hi: f64) -> [f64; 5] {
    let d = TEXTURE_DISTANCE;
    let span = (hi - lo).max(1e-12);
    let q: Vec<u8> = plane
        .iter()
        .map(|&v| {
            let l = ((f64::from(v) - lo) / span * GREY_LEVELS as f64).floor();
            l.clamp(0.0, (GREY_LEVELS - 1) as f64) as u8
        })
        .collect();
    let mut glcm = [[0u64; GREY_LEVELS]; GREY_LEVELS];
    for y in 0..height {
        let row = &q[y * width..(y + 1) * width];
        for x in 0..width.saturating_sub(d) {
            glcm[row[x] as usize][row[x + d] as usize] += 1;
        }
        if y + d < height {
            let below = &q[(y + d) * width..(y + d + 1) * width];
            for (a, b) in row.iter().zip(below) {
                glcm[*a as usize][*b as usize] += 1;
            }
        }
    }
    // Symmetric: each pair counted both ways.
    let mut p = [[0f64; GREY_LEVELS]; GREY_LEVELS];
    let mut total = 0f64;
    for i in 0..GREY_LEVELS {
        for j in 0..GREY_LEVELS {
            let c = (glcm[i][j] + glcm[j][i]) as f64;
            p[i][j] = c;
            total += c;
        }
    }
    if total == 0.0 {
        return [0.0; 5];
    }
    let (mut mu, mut contrast, mut homogeneity, mut entropy, mut asm) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (i, row) in p.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v /= total;
            let diff = i as f64 - j as f64;
            mu += i as f64 * *v;
            contrast += diff * diff * *v;
            homogeneity += *v / (1.0 + diff * diff);
            asm += *v * *v;
            if *v > 0.0 {
                entropy -= *v * v.log2();
            }
        }
    }
    let mut var = 0.0;
    let mut cov = 0.0;
    for (i, row) in p.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            var += (i as f64 - mu) * (i as f64 - mu) * v;
            cov += (i as f64 - mu) * (j as f64 - mu) * v;
        }
    }
    // The matrix is symmetric, so both marginals have mean `mu` and variance `var`; a flat
    // plane has no variance and is given no correlation.
    let correlation = if var > 0.0 { cov / var } else { 0.0 };
    [contrast, correlation, homogeneity, entropy, asm]
}

/// Sliding minimum (`max == false`) or maximum over a window of `2r + 1` along `len`
/// values `step` apart, starting at `base`, into `out` (same indexing).
fn slide(src: &[f32], dst: &mut [f32], base: usize, step: usize, len: usize, r: usize, max: bool) {
    for i in 0..len {
        let (a, b) = (i.saturating_sub(r), (i + r).min(len - 1));
        let mut m = src[base + a * step];
        for k in a + 1..=b {
            let v = src[base + k * step];
            m = if max { m.max(v) } else { m.min(v) };
        }
        dst[base + i * step] = m;
    }
}

/// Grey-level erosion (`max == false`) or dilation by a `(2r+1)^2` square, separably.
fn morph(img: &[f32], w: usize, h: usize, r: usize, max: bool) -> Vec<f32> {
    let mut tmp = vec![0f32; img.len()];
    let mut out = vec![0f32; img.len()];
    for y in 0..h {
        slide(img, &mut tmp, y * w, 1, w, r, max);
    }
    for x in 0..w {
        slide(&tmp, &mut out, x, w, h, r, max);
    }
    out
}

/// The granularity spectrum: percent of the binned plane's intensity removed by each
/// opening beyond the previous one.
fn granularity(plane: &[f32], width: usize, height: usize) -> [f64; GRANULARITY_SCALES] {
    let (w, h) = ((width / 2).max(1), (height / 2).max(1));
    let mut binned = vec![0f32; w * h];
    if width >= 2 && height >= 2 {
        for y in 0..h {
            for x in 0..w {
                let at = |dy: usize, dx: usize| plane[(2 * y + dy) * width + 2 * x + dx];
                binned[y * w + x] = (at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1)) / 4.0;
            }
        }
    } else {
        binned.copy_from_slice(&plane[..w * h]);
    }
    let total: f64 = binned.iter().map(|&v| f64::from(v)).sum();
    let mut out = [0f64; GRANULARITY_SCALES];
    if total <= 0.0 {
        return out;
    }
    let mut previous = total;
    for (k, o) in out.iter_mut().enumerate() {
        let opened = morph(&morph(&binned, w, h, k + 1, false), w, h, k + 1, true);
        let now: f64 = opened.iter().map(|&v| f64::from(v)).sum();
        *o = 100.0 * (previous - now) / total;
        previous = now;
    }
    out
}

/// Features of a site: `planes` are its channels, each `width * height` values in
/// `[0, 1]`; `FEATURES_PER_CHANNEL` values per channel.
pub fn site_features(planes: &[&[f32]], width: usize, height: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(planes.len() * FEATURES_PER_CHANNEL);
    for p in planes {
        channel_features(p, width, height, &mut out);
    }
    out
}

/// The median of each column of `rows` (rows of `dim`): a well's profile from its sites'
/// (pycytominer aggregates by the median).
pub fn column_medians(rows: &[&[f32]], dim: usize) -> Vec<f32> {
    let mut col = Vec::with_capacity(rows.len());
    (0..dim)
        .map(|j| {
            col.clear();
            col.extend(rows.iter().map(|r| r[j]));
            col.sort_by(f32::total_cmp);
            match col.len() {
                0 => 0.0,
                n if n % 2 == 1 => col[n / 2],
                n => (col[n / 2 - 1] + col[n / 2]) / 2.0,
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "profile_tests.rs"]
mod tests;
