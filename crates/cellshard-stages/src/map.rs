//! The numeric core of replicate mean average precision (SQL's `replicate_map`): average
//! precision of each group's sites against the controls, and a permutation p-value from a
//! pool of null APs per (positives, total) configuration. Here, in the optimised pixel
//! crate, because the null draws run billions of times over a full dataset.

use std::collections::HashMap;

/// A small deterministic generator (SplitMix64) for the null draws.
pub(crate) struct SplitMix(u64);

impl SplitMix {
    pub(crate) fn below(&mut self, bound: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // Lemire's multiply-shift: a bounded draw without a division (the null draws are
        // most of replicate_map's time).
        let wide = u128::from(z) * bound as u128;
        #[allow(clippy::cast_possible_truncation)]
        let r = (wide >> 64) as usize;
        r
    }
}

/// FNV-1a of a group's name: the seed of its null draws.
pub(crate) fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

/// Each group's mAP and p-value: its sites (rows of `flat`, rows of `dim`, unit vectors)
/// against `controls`, with `null_size` null draws.
pub fn score_groups(
    groups: &[(&String, &Vec<usize>)],
    flat: &[f32],
    dim: usize,
    controls: &[usize],
    null_size: usize,
) -> Vec<(f64, f64)> {
    let row = |i: usize| &flat[i * dim..(i + 1) * dim];
    let dot = crate::vector::dot;
    let mut ranks = Vec::new();
    let mut pools: HashMap<(usize, usize), Vec<f64>> = HashMap::new();
    let mut out = Vec::with_capacity(groups.len());
    for &(name, members) in groups {
        let map = members
            .iter()
            .map(|&q| {
                let pos: Vec<f32> = members
                    .iter()
                    .filter(|&&p| p != q)
                    .map(|&p| dot(row(q), row(p)))
                    .collect();
                let neg: Vec<f32> = controls.iter().map(|&c| dot(row(q), row(c))).collect();
                crate::vector::average_precision(&pos, &neg)
            })
            .sum::<f64>()
            / members.len() as f64;
        let (n_pos, n_total) = (members.len() - 1, members.len() - 1 + controls.len());
        // The null APs of this (positives, total) configuration, drawn once.
        let pool = pools.entry((n_pos, n_total)).or_insert_with(|| {
            let mut rng = SplitMix(seed_of(&format!("{n_pos}/{n_total}")));
            let mut next = |b: usize| rng.below(b);
            (0..null_size)
                .map(|_| {
                    crate::vector::random_average_precision(n_pos, n_total, &mut ranks, &mut next)
                })
                .collect::<Vec<f64>>()
        });
        // Null mAPs: means of as many draws from the pool as the group has sites.
        let mut rng = SplitMix(seed_of(name));
        let mut above = 0usize;
        for _ in 0..null_size {
            let null = (0..members.len())
                .map(|_| pool[rng.below(pool.len())])
                .sum::<f64>()
                / members.len() as f64;
            above += usize::from(null >= map);
        }
        out.push((map, (1 + above) as f64 / (1 + null_size) as f64));
    }
    out
}
