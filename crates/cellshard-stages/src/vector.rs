//! Vector kernels for nearest-neighbour search: unit vectors, dot products over many rows,
//! top k. Here, in the optimised pixel crate, because a search runs them over every vector
//! of a model.

/// Unit vectors of `flat` (rows of `dim`); zero rows stay zero.
pub fn normalize(flat: &mut [f32], dim: usize) {
    for row in flat.chunks_exact_mut(dim) {
        let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if n > 0.0 {
            row.iter_mut().for_each(|v| *v /= n);
        }
    }
}

/// Dot product, with eight running sums (vectorises).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        let (x, y): (&[f32; 8], &[f32; 8]) = (
            x.try_into().unwrap_or(&[0.0; 8]),
            y.try_into().unwrap_or(&[0.0; 8]),
        );
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + ra.iter().zip(rb).map(|(x, y)| x * y).sum::<f32>()
}

/// `out[i]` = the dot product of row `i` of `rows` (rows of `dim`) with `q`.
pub fn dots(rows: &[f32], dim: usize, q: &[f32], out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(dim)) {
        *o = dot(row, q);
    }
}

/// The `k` best of `scores` as (index, score), best first, ties by index.
pub fn top_k(scores: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    let cmp = |a: &usize, b: &usize| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b));
    if k == 0 {
        return Vec::new();
    }
    if idx.len() > k {
        idx.select_nth_unstable_by(k - 1, cmp);
        idx.truncate(k);
    }
    idx.sort_by(cmp);
    idx.into_iter().map(|i| (i, scores[i])).collect()
}

/// A candidate in [`best_dots`]' heap, ordered so the heap's top is the worst kept: lower
/// score, then higher index, is worse.
#[derive(Debug, Clone, Copy)]
struct Worst(f32, usize);

impl PartialEq for Worst {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o).is_eq()
    }
}
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Worst {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // Greater = worse, so a max-heap's top is the worst.
        o.0.total_cmp(&self.0).then(self.1.cmp(&o.1))
    }
}

/// The `k` rows of `rows` (rows of `dim`) with the highest dot product with `q`, as
/// (`first + row`, score), best first, ties by index; rows `keep` marks false (when given,
/// indexed from 0 like `rows`) are left out. One pass, a heap of `k`: no per-row buffer.
pub fn best_dots(
    rows: &[f32],
    dim: usize,
    q: &[f32],
    k: usize,
    first: usize,
    keep: Option<&[bool]>,
) -> Vec<(usize, f32)> {
    let mut heap = std::collections::BinaryHeap::with_capacity(k + 1);
    if k == 0 {
        return Vec::new();
    }
    for (i, row) in rows.chunks_exact(dim).enumerate() {
        if keep.is_some_and(|m| !m.get(i).copied().unwrap_or(false)) {
            continue;
        }
        let c = Worst(dot(row, q), first + i);
        if heap.len() < k {
            heap.push(c);
        } else if heap.peek().is_some_and(|w| c < *w) {
            heap.pop();
            heap.push(c);
        }
    }
    let mut out: Vec<(usize, f32)> = heap.into_iter().map(|Worst(s, i)| (i, s)).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

/// Average precision of retrieving the positives among positives and negatives ranked by
/// similarity (highest first; on a tie a positive ranks first, as copairs orders them):
/// the mean over positives of the precision at each one's rank. NaN without positives.
pub fn average_precision(pos: &[f32], neg: &[f32]) -> f64 {
    let mut all: Vec<(f32, bool)> = pos
        .iter()
        .map(|&s| (s, true))
        .chain(neg.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
    let (mut tp, mut sum) = (0u32, 0f64);
    for (k, (_, positive)) in all.iter().enumerate() {
        if *positive {
            tp += 1;
            sum += f64::from(tp) / (k + 1) as f64;
        }
    }
    sum / pos.len() as f64
}

/// Average precision of `n_pos` positives at uniformly random ranks among `n_total`
/// (the null of [`average_precision`]), drawn with `next` (uniform in `0..bound`): Floyd's
/// sampling of distinct ranks, so the cost grows with `n_pos`, not `n_total`.
pub fn random_average_precision(
    n_pos: usize,
    n_total: usize,
    ranks: &mut Vec<usize>,
    next: &mut impl FnMut(usize) -> usize,
) -> f64 {
    let n_pos = n_pos.min(n_total);
    if n_pos == 0 {
        return f64::NAN;
    }
    ranks.clear();
    for j in n_total - n_pos..n_total {
        let t = next(j + 1);
        let pick = if ranks.contains(&t) { j } else { t };
        ranks.push(pick);
    }
    ranks.sort_unstable();
    ranks
        .iter()
        .enumerate()
        .map(|(i, r)| (i + 1) as f64 / (r + 1) as f64)
        .sum::<f64>()
        / n_pos as f64
}

/// How [`center_scale`] centres and scales each feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scaling {
    /// Mean and standard deviation (pycytominer's `standardize`).
    Standardize,
    /// Median and 1.4826 x the median absolute deviation (pycytominer's `mad_robustize`).
    Robust,
}

impl Scaling {
    /// From its name: `standardize` or `robust` (`mad_robustize`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "standardize" => Some(Self::Standardize),
            "robust" | "mad_robustize" => Some(Self::Robust),
            _ => None,
        }
    }
}

/// Smallest scale divided by, so a feature constant over the references does not explode.
pub const SCALE_EPSILON: f32 = 1e-6;

/// Centre and scale every row of `flat` (rows of `dim`) by the statistics of the rows
/// `reference` marks (all rows when none is marked): `(x - centre) / max(scale, eps)`, per
/// feature, as pycytominer's `normalize` and EFAAR's control centering do for a plate.
pub fn center_scale(flat: &mut [f32], dim: usize, reference: &[bool], how: Scaling) {
    let rows = flat.len() / dim.max(1);
    let any = reference.iter().take(rows).any(|r| *r);
    let refs: Vec<usize> = (0..rows)
        .filter(|&i| !any || reference.get(i).copied().unwrap_or(false))
        .collect();
    if refs.is_empty() {
        return;
    }
    let mut col = Vec::with_capacity(refs.len());
    for j in 0..dim {
        col.clear();
        col.extend(refs.iter().map(|&i| f64::from(flat[i * dim + j])));
        let (centre, scale) = match how {
            Scaling::Standardize => {
                let n = col.len() as f64;
                let mean = col.iter().sum::<f64>() / n;
                let var = col.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
                (mean, var.sqrt())
            }
            Scaling::Robust => {
                let median = median(&mut col);
                let mut dev: Vec<f64> = col.iter().map(|v| (v - median).abs()).collect();
                (median, 1.4826 * self::median(&mut dev))
            }
        };
        #[allow(clippy::cast_possible_truncation, reason = "feature values are f32")]
        let (centre, scale) = (centre as f32, (scale as f32).max(SCALE_EPSILON));
        for i in 0..rows {
            let v = &mut flat[i * dim + j];
            *v = (*v - centre) / scale;
        }
    }
}

/// The median of `v` (reordered); the mean of the middle two for an even count.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_on_hand_values() {
        assert_eq!(
            top_k(&[0.1, 0.9, 0.5, 0.9, -1.0], 3),
            vec![(1, 0.9), (3, 0.9), (2, 0.5)]
        );
        assert_eq!(top_k(&[0.2], 5), vec![(0, 0.2)]);
        let a: Vec<f32> = (0..19).map(|i| i as f32).collect();
        assert_eq!(dot(&a, &a), (0..19).map(|i| (i * i) as f32).sum::<f32>());
        let mut v = vec![3.0, 4.0, 0.0, 0.0];
        normalize(&mut v, 2);
        assert_eq!(v, [0.6, 0.8, 0.0, 0.0]);
        let mut out = [0.0; 2];
        dots(&v, 2, &[1.0, 1.0], &mut out);
        assert!((out[0] - 1.4).abs() < 1e-6 && out[1] == 0.0);
        // Positives at ranks 1 and 3 of 4: (1/1 + 2/3) / 2.
        let ap = average_precision(&[0.9, 0.5], &[0.7, 0.1]);
        assert!((ap - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        // A tie ranks the positive first.
        assert_eq!(average_precision(&[0.5], &[0.5]), 1.0);
        // The null's mean for 1 positive among 4 is the mean of 1/r: (1 + 1/2 + 1/3 + 1/4) / 4.
        let mut x = 1u64;
        let mut next = |b: usize| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) as usize) % b
        };
        let mut ranks = Vec::new();
        let m: f64 = (0..40_000)
            .map(|_| random_average_precision(1, 4, &mut ranks, &mut next))
            .sum::<f64>()
            / 40_000.0;
        assert!((m - 25.0 / 48.0).abs() < 0.01, "{m}");
    }

    #[test]
    fn center_scale_uses_the_references_or_all_rows() {
        // Two features; references are rows 0 and 1.
        let mut m = vec![1.0, 10.0, 3.0, 10.0, 5.0, 40.0];
        center_scale(&mut m, 2, &[true, true, false], Scaling::Standardize);
        // Feature 0: mean 2, sd 1; feature 1: mean 10, sd 0 (eps).
        assert_eq!(&m[..4], &[-1.0, 0.0, 1.0, 0.0]);
        assert_eq!(m[4], 3.0);
        assert!((m[5] - 30.0 / SCALE_EPSILON).abs() / m[5] < 1e-6, "{m:?}");
        // No reference marked: all rows; robust uses the median and 1.4826 MAD.
        let mut r = vec![1.0, 2.0, 4.0, 9.0];
        center_scale(&mut r, 1, &[false; 4], Scaling::Robust);
        // median 3, deviations 2,1,1,6 -> MAD 1.5.
        let s = 1.4826 * 1.5;
        for (got, x) in r.iter().zip([1.0f32, 2.0, 4.0, 9.0]) {
            assert!((got - (x - 3.0) / s).abs() < 1e-6, "{r:?}");
        }
        assert_eq!(Scaling::parse("mad_robustize"), Some(Scaling::Robust));
        assert_eq!(Scaling::parse("median"), None);
    }

    #[test]
    fn best_dots_equals_a_full_sort() {
        let dim = 3;
        let rows: Vec<f32> = (0..300).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
        let q = [0.5, -1.0, 2.0];
        let keep: Vec<bool> = (0..100).map(|i| i % 7 != 3).collect();
        for k in [1, 5, 40, 100, 500] {
            let mut all: Vec<(usize, f32)> = rows
                .chunks_exact(dim)
                .enumerate()
                .filter(|(i, _)| keep[*i])
                .map(|(i, r)| (i + 1000, dot(r, &q)))
                .collect();
            all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            all.truncate(k);
            assert_eq!(
                best_dots(&rows, dim, &q, k, 1000, Some(&keep)),
                all,
                "k {k}"
            );
        }
        assert_eq!(best_dots(&rows, dim, &q, 3, 0, None).len(), 3);
        assert!(best_dots(&rows, dim, &q, 0, 0, None).is_empty());
    }
}
