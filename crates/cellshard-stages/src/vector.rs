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
}
