//! Downsample by an integer factor: each output pixel is the mean of its `f` x `f` block,
//! rounded half to even. Trailing rows and columns that do not fill a block are dropped.

use crate::Plane;

/// `sum / n` rounded to the nearest integer, ties to even.
#[inline]
#[allow(
    clippy::cast_possible_truncation,
    reason = "sum is of n u16 samples, so the rounded mean is at most 65535"
)]
pub fn mean_round_half_even(sum: u32, n: u32) -> u16 {
    let q = sum / n;
    let r = sum % n;
    let up = match (2 * r).cmp(&n) {
        std::cmp::Ordering::Greater => 1,
        std::cmp::Ordering::Equal => q & 1,
        std::cmp::Ordering::Less => 0,
    };
    (q + up) as u16
}

/// Downsample a whole plane (the straightforward path; the fused decoder must match it).
pub fn downsample(p: &Plane, factor: u32) -> Plane {
    if factor == 1 {
        return p.clone();
    }
    let (w, h) = (p.width / factor, p.height / factor);
    let n = factor * factor;
    let mut data = Vec::with_capacity(w as usize * h as usize);
    for oy in 0..h {
        for ox in 0..w {
            let mut sum = 0u32;
            for dy in 0..factor {
                for dx in 0..factor {
                    sum += u32::from(p.get(ox * factor + dx, oy * factor + dy));
                }
            }
            data.push(mean_round_half_even(sum, n));
        }
    }
    Plane::new(w, h, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rounds_half_to_even() {
        assert_eq!(mean_round_half_even(2, 4), 0); // 0.5 -> 0
        assert_eq!(mean_round_half_even(6, 4), 2); // 1.5 -> 2
        assert_eq!(mean_round_half_even(10, 4), 2); // 2.5 -> 2
        assert_eq!(mean_round_half_even(11, 4), 3); // 2.75 -> 3
        assert_eq!(mean_round_half_even(9, 4), 2); // 2.25 -> 2
        assert_eq!(mean_round_half_even(4 * 65535, 4), 65535);
    }

    #[test]
    fn two_by_two_blocks() {
        let p = Plane::new(4, 2, vec![0, 1, 10, 10, 1, 0, 10, 11 /* */]);
        let d = downsample(&p, 2);
        assert_eq!((d.width, d.height), (2, 1));
        assert_eq!(d.data, vec![0, 10]); // 0.5 -> 0; 10.25 -> 10
        let odd = Plane::new(3, 3, vec![1; 9]);
        assert_eq!(downsample(&odd, 2), Plane::new(1, 1, vec![1]));
    }

    proptest! {
        #[test]
        fn matches_float_mean(vals in proptest::collection::vec(any::<u16>(), 16), f in 1u32..=4) {
            let p = Plane::new(4, 4, vals);
            let d = downsample(&p, f);
            for oy in 0..d.height {
                for ox in 0..d.width {
                    let mut s = 0f64;
                    for dy in 0..f { for dx in 0..f { s += f64::from(p.get(ox*f+dx, oy*f+dy)); } }
                    let mean = s / f64::from(f * f);
                    let expect = {
                        let fl = mean.floor();
                        let frac = mean - fl;
                        if frac > 0.5 || (frac == 0.5 && fl % 2.0 == 1.0) { fl + 1.0 } else { fl }
                    };
                    prop_assert_eq!(f64::from(d.get(ox, oy)), expect);
                }
            }
        }

        #[test]
        fn constant_stays_constant(v in any::<u16>(), w in 1u32..9, h in 1u32..9) {
            let p = Plane::new(w * 2, h * 2, vec![v; (w * h * 4) as usize]);
            let d = downsample(&p, 2);
            prop_assert!(d.data.iter().all(|&x| x == v));
            prop_assert_eq!((d.width, d.height), (w, h));
        }
    }
}
