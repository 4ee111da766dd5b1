//! Undoing PNG row filters (None, Sub, Up, Avg, Paeth) for 8- and 16-bit grayscale rows.
//!
//! Sub, Avg and Paeth make each byte depend on the one a pixel to its left: the work is a
//! serial chain per byte lane, so the lanes are carried together to let the CPU overlap
//! them. The property tests hold the result to the PNG specification's definitions.

/// Undo one PNG row filter: `cur = unfilter(raw)` given the previous unfiltered row `prev`
/// (all zeros for the first row). Only the common prefix of the three slices is written.
/// `bpp` is 1 or 2 (grayscale 8 or 16 bits). An unknown filter type is returned as the error.
pub fn unfilter(filter: u8, bpp: usize, raw: &[u8], prev: &[u8], cur: &mut [u8]) -> Result<(), u8> {
    let n = raw.len().min(cur.len()).min(prev.len());
    let (raw, prev, cur) = (&raw[..n], &prev[..n], &mut cur[..n]);
    if filter > 4 {
        return Err(filter);
    }
    match (filter, bpp) {
        (0, _) => cur.copy_from_slice(raw),
        (2, _) => {
            for ((c, &r), &p) in cur.iter_mut().zip(raw).zip(prev) {
                *c = r.wrapping_add(p);
            }
        }
        (_, 2) => unfilter_lanes::<2>(filter, raw, prev, cur),
        _ => unfilter_lanes::<1>(filter, raw, prev, cur),
    }
    Ok(())
}

/// Sub, Avg and Paeth for `B` bytes per pixel. Each byte lane is a serial dependency chain
/// (a byte depends on the one `B` to its left); carrying the lanes together as a small
/// array lets the CPU overlap the chains, and the left neighbour stays in a register.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "PNG byte arithmetic: the mean of two bytes, a Paeth prediction (one of three bytes) and a lane masked with 0xff each fit a byte"
)]
fn unfilter_lanes<const B: usize>(filter: u8, raw: &[u8], prev: &[u8], cur: &mut [u8]) {
    let whole = raw.len() / B * B;
    let mut a = [0u8; B];
    let rows = cur[..whole]
        .chunks_exact_mut(B)
        .zip(raw[..whole].chunks_exact(B))
        .zip(prev[..whole].chunks_exact(B));
    match filter {
        1 => {
            for ((o, r), _) in rows {
                for i in 0..B {
                    a[i] = r[i].wrapping_add(a[i]);
                    o[i] = a[i];
                }
            }
        }
        3 => {
            for ((o, r), p) in rows {
                for i in 0..B {
                    a[i] = r[i].wrapping_add(((u16::from(a[i]) + u16::from(p[i])) >> 1) as u8);
                    o[i] = a[i];
                }
            }
        }
        _ => {
            // In `i32` and in plain arrays the compiler keeps each chain in registers with
            // conditional moves. With the samples as `u8` it packed the lanes into one
            // vector register and sent every result through the stack to widen it again,
            // which put a store and a reload on the chain.
            let mut a = [0i32; B];
            let mut c = [0i32; B];
            for ((o, r), p) in rows {
                for i in 0..B {
                    let b = i32::from(p[i]);
                    a[i] = (i32::from(r[i]) + paeth(a[i], b, c[i])) & 0xff;
                    o[i] = a[i] as u8;
                    c[i] = b;
                }
            }
        }
    }
    // A partial trailing pixel (never for whole samples); finish it byte by byte.
    for i in whole..raw.len() {
        let left = if i >= B { cur[i - B] } else { 0 };
        let up_left = if i >= B { prev[i - B] } else { 0 };
        let pred = match filter {
            1 => left,
            3 => ((u16::from(left) + u16::from(prev[i])) >> 1) as u8,
            _ => paeth(left.into(), prev[i].into(), up_left.into()) as u8,
        };
        cur[i] = raw[i].wrapping_add(pred);
    }
}

/// The PNG Paeth predictor in the branch-free form of stb_image (equivalent to the
/// specification's: the tests compare them), on bytes widened to `i32`.
#[inline(always)]
fn paeth(a: i32, b: i32, c: i32) -> i32 {
    let thresh = c * 3 - (a + b);
    let lo = a.min(b);
    let hi = a.max(b);
    let t0 = if hi <= thresh { lo } else { c };
    if thresh <= lo { hi } else { t0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference unfilter, straight from the PNG specification.
    fn unfilter_spec(filter: u8, bpp: usize, raw: &[u8], prev: &[u8]) -> Vec<u8> {
        let mut cur = vec![0u8; raw.len()];
        for i in 0..raw.len() {
            let a = if i >= bpp { cur[i - bpp] } else { 0 };
            let b = prev[i];
            let c = if i >= bpp { prev[i - bpp] } else { 0 };
            let pred = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => u8::try_from((u16::from(a) + u16::from(b)) / 2).unwrap(),
                _ => {
                    let p = i32::from(a) + i32::from(b) - i32::from(c);
                    let (pa, pb, pc) = (
                        (p - i32::from(a)).abs(),
                        (p - i32::from(b)).abs(),
                        (p - i32::from(c)).abs(),
                    );
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
            };
            cur[i] = raw[i].wrapping_add(pred);
        }
        cur
    }

    proptest::proptest! {
        #[test]
        fn unfilter_matches_the_spec(
            filter in 0u8..5,
            bpp in 1usize..=2,
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
            seed in proptest::prelude::any::<u8>(),
        ) {
            let prev: Vec<u8> = (0..raw.len()).map(|i| u8::try_from(i).unwrap().wrapping_mul(37) ^ seed).collect();
            let mut cur = vec![0u8; raw.len()];
            unfilter(filter, bpp, &raw, &prev, &mut cur).unwrap();
            proptest::prop_assert_eq!(cur, unfilter_spec(filter, bpp, &raw, &prev));
        }
    }

    #[test]
    fn paeth_matches_the_spec_everywhere() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                for c in (0..=255u8).step_by(3) {
                    let p = i32::from(a) + i32::from(b) - i32::from(c);
                    let (pa, pb, pc) = (
                        (p - i32::from(a)).abs(),
                        (p - i32::from(b)).abs(),
                        (p - i32::from(c)).abs(),
                    );
                    let spec = if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    };
                    let got = paeth(a.into(), b.into(), c.into());
                    assert_eq!(got, i32::from(spec), "{a} {b} {c}");
                }
            }
        }
    }

    #[test]
    fn unknown_filter_is_an_error() {
        let mut cur = [0u8; 4];
        assert_eq!(unfilter(5, 2, &[0; 4], &[0; 4], &mut cur), Err(5));
    }
}
