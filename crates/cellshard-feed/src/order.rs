//! The epoch's sample order and each rank's share of each step.
//!
//! The order is a keyed bijection of `[0, N)`: position `i` of an epoch maps to one selected
//! row without materialising anything of size N (a Feistel network over the next power of
//! four, cycle-walked into range). It depends on (rows selected, seed, epoch, clump) only,
//! never on world size, workers, threads or prefetch. Step `t` covers global positions
//! `[start + tG, start + (t+1)G)`; within a step of `m` samples rank `r` takes positions
//! `[rm/W, (r+1)m/W)`, so shares differ by at most one and every rank runs the same steps.

/// What happens to the last, short global batch of an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tail {
    /// Keep it, padded to full shape; padded slots are masked invalid (default).
    PadMasked,
    /// Drop it: every step is full, the last `N mod G` samples of the epoch are not seen.
    Drop,
    /// Fill it with samples from the start of the epoch's order (seen twice).
    Repeat,
}

impl Tail {
    /// From `pad_masked`, `drop` or `repeat`.
    pub fn parse(s: &str) -> Option<Tail> {
        match s {
            "pad_masked" => Some(Tail::PadMasked),
            "drop" => Some(Tail::Drop),
            "repeat" => Some(Tail::Repeat),
            _ => None,
        }
    }

    /// The name [`Self::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            Tail::PadMasked => "pad_masked",
            Tail::Drop => "drop",
            Tail::Repeat => "repeat",
        }
    }

    /// Stable code for cursors.
    pub fn code(self) -> u8 {
        match self {
            Tail::PadMasked => 0,
            Tail::Drop => 1,
            Tail::Repeat => 2,
        }
    }

    /// From [`Self::code`].
    pub fn from_code(c: u8) -> Option<Tail> {
        [Tail::PadMasked, Tail::Drop, Tail::Repeat]
            .into_iter()
            .find(|t| t.code() == c)
    }
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A keyed bijection of `[0, n)`.
#[derive(Debug, Clone)]
pub struct Permutation {
    n: u64,
    half_bits: u32,
    keys: [u64; 6],
}

impl Permutation {
    /// The permutation of `[0, n)` for `key`.
    pub fn new(n: u64, key: u64) -> Self {
        let bits = 64 - n.saturating_sub(1).leading_zeros();
        let half_bits = bits.div_ceil(2).max(1);
        let mut keys = [0u64; 6];
        let mut k = key;
        for slot in &mut keys {
            k = mix(k);
            *slot = k;
        }
        Permutation { n, half_bits, keys }
    }

    fn round(&self, x: u64, key: u64) -> u64 {
        mix(x ^ key) & ((1u64 << self.half_bits) - 1)
    }

    fn forward(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut l, mut r) = (x >> self.half_bits, x & mask);
        for &k in &self.keys {
            (l, r) = (r, l ^ self.round(r, k));
        }
        (l << self.half_bits) | r
    }

    fn backward(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut l, mut r) = (x >> self.half_bits, x & mask);
        for &k in self.keys.iter().rev() {
            (l, r) = (r ^ self.round(l, k), l);
        }
        (l << self.half_bits) | r
    }

    /// Where position `i` (< n) goes.
    pub fn apply(&self, i: u64) -> u64 {
        let mut x = self.forward(i);
        while x >= self.n {
            x = self.forward(x);
        }
        x
    }

    /// The position that goes to `j` (< n).
    pub fn invert(&self, j: u64) -> u64 {
        let mut x = self.backward(j);
        while x >= self.n {
            x = self.backward(x);
        }
        x
    }
}

/// The order of one epoch: position -> row index into the selection.
#[derive(Debug, Clone)]
pub struct EpochOrder {
    n: u64,
    clump: u64,
    blocks: Permutation,
    /// Where the short last block (if any) sits in the block order.
    short_at: u64,
}

impl EpochOrder {
    /// The order of an epoch over `n` rows, keyed by `seed` and `epoch`; with `clump > 1`,
    /// runs of `clump` consecutive rows stay together (large reads from object stores).
    pub fn new(n: u64, seed: u64, epoch: u64, clump: u64) -> Self {
        let clump = clump.max(1);
        let nb = n.div_ceil(clump);
        let blocks = Permutation::new(nb.max(1), mix(seed) ^ mix(epoch.wrapping_add(0x5EED)));
        let short_at = if !n.is_multiple_of(clump) && nb > 0 {
            blocks.invert(nb - 1)
        } else {
            nb
        };
        EpochOrder {
            n,
            clump,
            blocks,
            short_at,
        }
    }

    /// Rows in the epoch.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The row at position `p` (< n).
    pub fn row(&self, p: u64) -> u64 {
        let c = self.clump;
        let short = self.n % c;
        let (j, offset) = if p < self.short_at * c {
            (p / c, p % c)
        } else if short != 0 && p < self.short_at * c + short {
            (self.short_at, p - self.short_at * c)
        } else {
            let q = p - if short != 0 { short } else { 0 };
            let q = if short != 0 { q + c } else { q };
            (q / c, q % c)
        };
        self.blocks.apply(j) * c + offset
    }
}

/// How positions are cut into steps and shared among ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Global batch size G.
    pub global_batch: u64,
    /// World size W.
    pub world_size: u64,
    /// This rank.
    pub rank: u64,
    /// The tail policy.
    pub tail: Tail,
}

impl Batching {
    /// Steps left in an epoch of `n` rows from position `start` (same on every rank).
    pub fn steps(&self, n: u64, start: u64) -> u64 {
        let left = n.saturating_sub(start);
        match self.tail {
            Tail::Drop => left / self.global_batch,
            Tail::PadMasked | Tail::Repeat => left.div_ceil(self.global_batch),
        }
    }

    /// Slots per rank and step: the largest share, so every rank's batches have one shape.
    pub fn local_batch(&self) -> u64 {
        self.global_batch.div_ceil(self.world_size)
    }

    /// This rank's global positions of the step that starts at `start`, padded with `None`
    /// to [`Self::local_batch`]. Positions past the epoch follow the tail policy.
    pub fn positions(&self, n: u64, start: u64) -> Vec<Option<u64>> {
        // The step's positions, split evenly over the ranks: a short last step is split
        // by its real samples, so shares differ by at most one in every step.
        let g = match self.tail {
            Tail::PadMasked => self.global_batch.min(n.saturating_sub(start)),
            Tail::Drop | Tail::Repeat => self.global_batch,
        };
        let lo = start + self.rank * g / self.world_size;
        let hi = start + (self.rank + 1) * g / self.world_size;
        let mut out: Vec<Option<u64>> = (lo..hi)
            .map(|p| match self.tail {
                _ if p < n => Some(p),
                Tail::Repeat if n > 0 => Some(p % n),
                _ => None,
            })
            .collect();
        out.resize(
            usize::try_from(self.local_batch()).unwrap_or(usize::MAX),
            None,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_bijections_and_invertible() {
        for n in [1u64, 2, 3, 7, 64, 100, 1000, 4097] {
            let p = Permutation::new(n, 42);
            let mut seen = vec![false; usize::try_from(n).unwrap()];
            for i in 0..n {
                let j = p.apply(i);
                let j_at = usize::try_from(j).unwrap();
                assert!(!seen[j_at], "n={n}: {j} twice");
                seen[j_at] = true;
                assert_eq!(p.invert(j), i);
            }
        }
    }

    #[test]
    fn epoch_orders_are_bijections_with_and_without_clumps() {
        for (n, c) in [
            (1000u64, 1u64),
            (1000, 16),
            (1001, 16),
            (17, 5),
            (5, 8),
            (64, 64),
        ] {
            let o = EpochOrder::new(n, 7, 3, c);
            let mut rows: Vec<u64> = (0..n).map(|p| o.row(p)).collect();
            if c > 1 {
                // Runs of a clump stay consecutive.
                let runs = rows.windows(2).filter(|w| w[1] == w[0] + 1).count();
                assert!(runs as u64 >= n - n.div_ceil(c), "n={n} c={c}");
            }
            rows.sort_unstable();
            assert_eq!(rows, (0..n).collect::<Vec<_>>(), "n={n} c={c}");
        }
        let a: Vec<u64> = (0..100)
            .map(|p| EpochOrder::new(100, 7, 0, 1).row(p))
            .collect();
        let b: Vec<u64> = (0..100)
            .map(|p| EpochOrder::new(100, 7, 1, 1).row(p))
            .collect();
        assert_ne!(a, b, "epochs differ");
    }

    #[test]
    fn shares_differ_by_at_most_one_and_cover_each_step_once() {
        for (n, g, w) in [(103u64, 10u64, 3u64), (100, 10, 4), (7, 8, 3), (50, 7, 7)] {
            for tail in [Tail::PadMasked, Tail::Drop, Tail::Repeat] {
                let steps = Batching {
                    global_batch: g,
                    world_size: w,
                    rank: 0,
                    tail,
                }
                .steps(n, 0);
                let mut seen = Vec::new();
                for t in 0..steps {
                    let mut sizes = Vec::new();
                    for r in 0..w {
                        let b = Batching {
                            global_batch: g,
                            world_size: w,
                            rank: r,
                            tail,
                        };
                        let pos = b.positions(n, t * g);
                        assert_eq!(pos.len() as u64, g.div_ceil(w));
                        let real: Vec<u64> = pos.iter().flatten().copied().collect();
                        sizes.push(real.len());
                        seen.extend(real);
                    }
                    let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                    assert!(
                        hi - lo <= 1,
                        "n={n} g={g} w={w} {tail:?} step {t}: {sizes:?}"
                    );
                }
                let mut unique = seen.clone();
                unique.sort_unstable();
                unique.dedup();
                match tail {
                    Tail::PadMasked => assert_eq!(seen.len() as u64, n),
                    Tail::Drop => assert_eq!(seen.len() as u64, n / g * g),
                    Tail::Repeat => assert_eq!(unique.len() as u64, n),
                }
                if tail != Tail::Repeat {
                    assert_eq!(unique.len(), seen.len(), "no duplicate");
                }
            }
        }
    }
}
