//! Exact per-channel histograms of u16 samples: 65,536 bins, mergeable across sites and
//! workers, from which every plate statistic is derived.

/// The 1-based nearest rank of percentile `p` among `n` samples: `ceil(p / 100 * n)`,
/// at least 1. Products within 1e-9 of an integer count as that integer, so that
/// `p = 99.9, n = 1000` gives 999 despite binary floating point.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "clamped to 1..=n first"
)]
pub fn nearest_rank(p: f64, n: u64) -> u64 {
    let x = p / 100.0 * n as f64;
    let r = x.round();
    let x = if (x - r).abs() <= 1e-9 * r.abs().max(1.0) {
        r
    } else {
        x
    };
    (x.ceil().clamp(1.0, n as f64)) as u64
}

/// Counts of every u16 value.
#[derive(Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Histogram(n={}, min={:?}, max={:?})",
            self.total(),
            self.min(),
            self.max()
        )
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            counts: vec![0; 65536],
        }
    }

    /// Count every sample.
    pub fn add(&mut self, samples: &[u16]) {
        for &s in samples {
            self.counts[usize::from(s)] += 1;
        }
    }

    /// Add another histogram's counts.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// Count of one value.
    pub fn count(&self, value: u16) -> u64 {
        self.counts[usize::from(value)]
    }

    /// Number of samples.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Smallest sample.
    #[allow(clippy::cast_possible_truncation, reason = "a bin index, below 65,536")]
    pub fn min(&self) -> Option<u16> {
        self.counts.iter().position(|&c| c > 0).map(|v| v as u16)
    }

    /// Largest sample.
    #[allow(clippy::cast_possible_truncation, reason = "a bin index, below 65,536")]
    pub fn max(&self) -> Option<u16> {
        self.counts.iter().rposition(|&c| c > 0).map(|v| v as u16)
    }

    /// Nearest-rank percentile: the smallest value `v` whose cumulative count reaches
    /// `ceil(p / 100 * N)` (at least 1). `p = 0` gives the minimum, `p = 100` the maximum.
    #[allow(clippy::cast_possible_truncation, reason = "a bin index, below 65,536")]
    pub fn percentile(&self, p: f64) -> Option<u16> {
        let n = self.total();
        if n == 0 {
            return None;
        }
        let rank = nearest_rank(p, n);
        let mut cum = 0u64;
        for (v, &c) in self.counts.iter().enumerate() {
            cum += c;
            if cum >= rank {
                return Some(v as u16);
            }
        }
        self.max()
    }

    /// Mean of the samples.
    pub fn mean(&self) -> Option<f64> {
        let n = self.total();
        (n > 0).then(|| {
            let s: f64 = self
                .counts
                .iter()
                .enumerate()
                .map(|(v, &c)| v as f64 * c as f64)
                .sum();
            s / n as f64
        })
    }

    /// Population standard deviation of the samples.
    pub fn std(&self) -> Option<f64> {
        let mean = self.mean()?;
        let n = self.total() as f64;
        let ss: f64 = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(v, &c)| {
                let d = v as f64 - mean;
                d * d * c as f64
            })
            .sum();
        Some((ss / n).sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut h = Histogram::new();
        h.add(&(1..=1000).collect::<Vec<u16>>());
        assert_eq!(h.percentile(0.0), Some(1));
        assert_eq!(h.percentile(0.1), Some(1));
        assert_eq!(h.percentile(0.15), Some(2));
        assert_eq!(h.percentile(50.0), Some(500));
        assert_eq!(h.percentile(99.9), Some(999));
        assert_eq!(h.percentile(100.0), Some(1000));
        assert_eq!(h.mean(), Some(500.5));
        assert_eq!(Histogram::new().percentile(50.0), None);
    }

    proptest! {
        #[test]
        fn merge_equals_adding_all(a in proptest::collection::vec(any::<u16>(), 0..200), b in proptest::collection::vec(any::<u16>(), 0..200)) {
            let mut ha = Histogram::new();
            ha.add(&a);
            let mut hb = Histogram::new();
            hb.add(&b);
            ha.merge(&hb);
            let mut all = Histogram::new();
            all.add(&a);
            all.add(&b);
            prop_assert_eq!(ha, all);
        }

        #[test]
        fn percentile_is_monotone_and_matches_sort(v in proptest::collection::vec(any::<u16>(), 1..300), p in 0.0f64..100.0) {
            let mut h = Histogram::new();
            h.add(&v);
            let mut s = v.clone();
            s.sort_unstable();
            let rank = usize::try_from(nearest_rank(p, s.len() as u64)).unwrap();
            prop_assert_eq!(h.percentile(p), Some(s[rank - 1]));
            prop_assert!(h.percentile(p) <= h.percentile((p + 1.0).min(100.0)));
        }
    }
}
