//! Small deterministic random numbers: SplitMix64 and string hashing.
//!
//! Everything the renderer draws comes from here, so the images are bit-identical across
//! platforms, thread counts and runs for the same seed.

/// The SplitMix64 finalizer: a strong 64-bit mixing function.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Combine a running hash with one more value.
pub(crate) fn combine(h: u64, v: u64) -> u64 {
    mix64(h ^ mix64(v.wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// FNV-1a of a string, then mixed.
pub(crate) fn hash_str(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(h)
}

/// A uniform number in `[lo, hi)` derived from a hash value.
pub(crate) fn unit_from(h: u64, lo: f32, hi: f32) -> f32 {
    let u = (h >> 40) as f32 / (1u64 << 24) as f32;
    lo + (hi - lo) * u
}

/// SplitMix64 generator.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(mix64(seed ^ 0x6a09_e667_f3bc_c909))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `[lo, hi)`.
    pub(crate) fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.f32()
    }

    /// Uniform integer in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }

    /// Approximately standard normal (Irwin-Hall sum of four uniforms, rescaled): cheap,
    /// smooth enough for shot noise and per-cell variation, bounded at about +-3.5.
    pub(crate) fn normal(&mut self) -> f32 {
        normal_from(self.next_u64())
    }
}

/// Approximately standard normal from 64 random bits (see [`Rng::normal`]).
#[inline]
pub(crate) fn normal_from(r: u64) -> f32 {
    let a = (r & 0xffff) + ((r >> 16) & 0xffff) + ((r >> 32) & 0xffff) + (r >> 48);
    // Sum of four U(0,1): mean 2, variance 1/3.
    (a as f32 * (1.0 / 65535.0) - 2.0) * 1.732_050_8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_has_unit_moments() {
        let mut rng = Rng::new(7);
        let n = 200_000;
        let (mut s, mut s2) = (0f64, 0f64);
        for _ in 0..n {
            let z = f64::from(rng.normal());
            s += z;
            s2 += z * z;
        }
        let mean = s / f64::from(n);
        let var = s2 / f64::from(n) - mean * mean;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
    }

    #[test]
    fn below_and_range_stay_in_bounds() {
        let mut rng = Rng::new(1);
        for _ in 0..10_000 {
            assert!(rng.below(5) < 5);
            let v = rng.range(2.0, 3.0);
            assert!((2.0..3.0).contains(&v));
        }
        assert_ne!(hash_str("HUVEC-01"), hash_str("HUVEC-02"));
    }
}
