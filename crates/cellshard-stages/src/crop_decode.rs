//! The crop-aware PNG decoder: inflate only as far as the last row the crop needs, unfilter
//! only the columns left of the crop's right edge, and downsample + crop as row blocks
//! complete.
//!
//! It produces exactly `center_crop(downsample(decode_full(png)))` for non-interlaced
//! grayscale PNGs of 8 or 16 bits. Per 2048x2048x16-bit channel with a 2x downsample and a
//! 512 crop it inflates 1536 of 2048 rows and unfilters 1536 x 1536 of 2048 x 2048 samples
//! (Sub, Avg and Paeth depend on the left neighbour, so the columns left of the crop are
//! needed; Up, Avg and Paeth depend on the row above, so the rows above it are too).
//!
//! Inflate is `fdeflate` (already the `png` crate's inflater; measured on this machine kind
//! against zlib-rs through flate2 on realistic level-6 streams it was as fast or faster),
//! driven as a stream into a small window that keeps the 32 KiB of history deflate
//! back-references need. Unfiltering happens in separate row buffers because the window
//! must keep the filtered bytes the stream refers back to.
//!
//! A [`CropDecoder`] owns all its buffers and reuses them from call to call: one per worker
//! thread means no allocation per channel beyond the output plane.
//!
//! The caller has already checked the chunk CRCs and the header (see
//! [`crate::decode::decode_transformed`]), so a stream that stops early cannot hide a
//! corrupt tail.

use crate::Plane;
use crate::decode::DecodeError;
use crate::downsample::mean_round_half_even;

/// Deflate back-references reach at most this far back.
const WINDOW: usize = 32 * 1024;
/// Room for new output in the window beyond the history it keeps.
const FRESH: usize = 256 * 1024;

/// Geometry of one crop-aware decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropGeometry {
    /// Source width in pixels.
    pub width: u32,
    /// Source height in pixels.
    pub height: u32,
    /// Bits per sample, 8 or 16.
    pub bit_depth: u8,
    /// Downsample factor (1 = none).
    pub factor: u32,
    /// Output width after downsample and crop.
    pub out_width: u32,
    /// Output height after downsample and crop.
    pub out_height: u32,
    /// Left edge of the crop in downsampled pixels.
    pub crop_x: u32,
    /// Top edge of the crop in downsampled pixels.
    pub crop_y: u32,
}

/// A reusable crop-aware decoder (see the module docs).
#[derive(Debug, Default)]
pub struct CropDecoder {
    idat: Vec<u8>,
    window: Vec<u8>,
    prev: Vec<u8>,
    cur: Vec<u8>,
    line: Vec<u16>,
    acc: Vec<u32>,
}

impl CropDecoder {
    /// A decoder with empty buffers; they grow on first use and are kept.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decode `png` (whose chunks and header the caller has verified) into the cropped,
    /// downsampled plane described by `g`.
    pub fn decode(&mut self, png: &[u8], g: &CropGeometry) -> Result<Plane, DecodeError> {
        let stream: &[u8] = match idat_chunks(png)? {
            // One IDAT chunk (what most encoders write for a single image): no copy.
            (1, Some(only)) => only,
            _ => {
                self.idat.clear();
                walk_chunks(png, |kind, body| {
                    if kind == b"IDAT" {
                        self.idat.extend_from_slice(body);
                    }
                })?;
                &self.idat
            }
        };
        let bpp = usize::from(g.bit_depth / 8);
        let stride = g.width as usize * bpp;
        let f = g.factor as usize;
        let row_start = (g.crop_y * g.factor) as usize;
        let row_end = ((g.crop_y + g.out_height) * g.factor) as usize;
        let col_start = (g.crop_x * g.factor) as usize;
        let span = g.out_width as usize * f;
        // Bytes of each row that must be unfiltered: everything left of the crop's right edge.
        let need = (col_start + span) * bpp;

        self.window.clear();
        self.window.resize(WINDOW + FRESH + stride + 1, 0);
        self.prev.clear();
        self.prev.resize(need, 0);
        self.cur.clear();
        self.cur.resize(need, 0);
        self.line.clear();
        self.line.resize(span, 0);
        self.acc.clear();
        self.acc.resize(g.out_width as usize, 0);
        let mut data: Vec<u16> = Vec::with_capacity(g.out_width as usize * g.out_height as usize);

        let mut inflater = fdeflate::Decompressor::new();
        // The stream usually stops early, before its checksum; the chunk CRCs were checked.
        inflater.ignore_adler32();
        let mut in_pos = 0usize;
        // Window state: bytes [0, out_pos) hold output; [row_pos, out_pos) is not yet consumed.
        let mut out_pos = 0usize;
        let mut row_pos = 0usize;
        let row_len = stride + 1;
        for y in 0..row_end {
            while out_pos - row_pos < row_len {
                if out_pos + row_len > self.window.len() {
                    // Keep the back-reference history and the unconsumed bytes; drop the rest.
                    let keep_from = out_pos.saturating_sub(WINDOW).min(row_pos);
                    self.window.copy_within(keep_from..out_pos, 0);
                    out_pos -= keep_from;
                    row_pos -= keep_from;
                }
                if inflater.is_done() {
                    return Err(truncated(y));
                }
                let (consumed, produced) = inflater
                    .read(&stream[in_pos..], &mut self.window, out_pos, true)
                    .map_err(|e| match e {
                        fdeflate::DecompressionError::InsufficientInput => truncated(y),
                        e => DecodeError::corrupt(format!(
                            "invalid PNG: corrupt deflate stream in row {y}: {e:?}"
                        )),
                    })?;
                in_pos += consumed;
                out_pos += produced;
                if consumed == 0 && produced == 0 && out_pos - row_pos < row_len {
                    return Err(truncated(y));
                }
            }
            let filter = self.window[row_pos];
            let raw = &self.window[row_pos + 1..row_pos + 1 + need];
            row_pos += row_len;
            unfilter(filter, bpp, raw, &self.prev, &mut self.cur).map_err(|kind| {
                DecodeError::corrupt(format!(
                    "invalid PNG: unknown filter type {kind} in row {y}"
                ))
            })?;
            std::mem::swap(&mut self.prev, &mut self.cur);
            if y < row_start {
                continue;
            }
            // `prev` now holds row y, unfiltered.
            let px = &self.prev[col_start * bpp..(col_start + span) * bpp];
            let block_row = (y - row_start) % f;
            if f == 2 {
                accumulate_pairs(px, bpp, block_row == 0, &mut self.acc);
                if block_row == 1 {
                    data.extend(self.acc.iter().map(|&s| mean4(s)));
                }
                continue;
            }
            widen(px, bpp, &mut self.line);
            if f == 1 {
                data.extend_from_slice(&self.line);
                continue;
            }
            if block_row == 0 {
                self.acc.iter_mut().for_each(|a| *a = 0);
            }
            for (a, block) in self.acc.iter_mut().zip(self.line.chunks_exact(f)) {
                *a += block.iter().map(|&v| u32::from(v)).sum::<u32>();
            }
            if block_row == f - 1 {
                let n = (f * f) as u32;
                data.extend(self.acc.iter().map(|&s| mean_round_half_even(s, n)));
            }
        }
        Ok(Plane::new(g.out_width, g.out_height, data))
    }
}

fn truncated(y: usize) -> DecodeError {
    DecodeError::corrupt(format!("truncated: image data ends before row {y}"))
}

/// Call `each(kind, body)` for every chunk up to `IEND` (chunks were verified, so this only
/// guards against a file changed in between).
fn walk_chunks<'a>(
    png: &'a [u8],
    mut each: impl FnMut(&[u8], &'a [u8]),
) -> Result<(), DecodeError> {
    let mut pos = 8usize;
    while pos + 8 <= png.len() {
        let len = u32::from_be_bytes([png[pos], png[pos + 1], png[pos + 2], png[pos + 3]]) as usize;
        let kind = &png[pos + 4..pos + 8];
        let body = png
            .get(pos + 8..pos + 8 + len)
            .ok_or_else(|| DecodeError::corrupt("truncated: a chunk runs past the end"))?;
        if kind == b"IEND" {
            break;
        }
        each(kind, body);
        pos += 12 + len;
    }
    Ok(())
}

/// The number of IDAT chunks and the first one's payload.
fn idat_chunks(png: &[u8]) -> Result<(usize, Option<&[u8]>), DecodeError> {
    let mut count = 0;
    let mut first = None;
    walk_chunks(png, |kind, body| {
        if kind == b"IDAT" {
            count += 1;
            first.get_or_insert(body);
        }
    })?;
    Ok((count, first))
}

/// Sum horizontal pairs of the samples in `px` into `acc` (start a new block when `first`).
#[inline]
fn accumulate_pairs(px: &[u8], bpp: usize, first: bool, acc: &mut [u32]) {
    match (bpp, first) {
        (2, true) => {
            for (a, b) in acc.iter_mut().zip(px.chunks_exact(4)) {
                *a = u32::from(u16::from_be_bytes([b[0], b[1]]))
                    + u32::from(u16::from_be_bytes([b[2], b[3]]));
            }
        }
        (2, false) => {
            for (a, b) in acc.iter_mut().zip(px.chunks_exact(4)) {
                *a += u32::from(u16::from_be_bytes([b[0], b[1]]))
                    + u32::from(u16::from_be_bytes([b[2], b[3]]));
            }
        }
        (_, true) => {
            for (a, b) in acc.iter_mut().zip(px.chunks_exact(2)) {
                *a = u32::from(b[0]) + u32::from(b[1]);
            }
        }
        (_, false) => {
            for (a, b) in acc.iter_mut().zip(px.chunks_exact(2)) {
                *a += u32::from(b[0]) + u32::from(b[1]);
            }
        }
    }
}

/// Mean of a 2x2 block sum, rounded half to even (the constant divisor lets this inline).
#[inline]
fn mean4(sum: u32) -> u16 {
    let q = sum >> 2;
    let r = sum & 3;
    let up = u32::from(r > 2) | (u32::from(r == 2) & q);
    (q + up) as u16
}

fn widen(px: &[u8], bpp: usize, out: &mut [u16]) {
    if bpp == 2 {
        for (o, b) in out.iter_mut().zip(px.chunks_exact(2)) {
            *o = u16::from_be_bytes([b[0], b[1]]);
        }
    } else {
        for (o, &b) in out.iter_mut().zip(px) {
            *o = u16::from(b);
        }
    }
}

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
fn unfilter_lanes<const B: usize>(filter: u8, raw: &[u8], prev: &[u8], cur: &mut [u8]) {
    let whole = raw.len() / B * B;
    let mut a = [0u8; B];
    let mut c = [0u8; B];
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
            for ((o, r), p) in rows {
                for i in 0..B {
                    a[i] = r[i].wrapping_add(paeth(a[i], p[i], c[i]));
                    o[i] = a[i];
                    c[i] = p[i];
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
            _ => paeth(left, prev[i], up_left),
        };
        cur[i] = raw[i].wrapping_add(pred);
    }
}

/// The PNG Paeth predictor in the branch-free form of stb_image (equivalent to the
/// specification's: the tests compare them).
#[inline(always)]
fn paeth(a: u8, b: u8, c: u8) -> u8 {
    let (a, b, c) = (i16::from(a), i16::from(b), i16::from(c));
    let thresh = c * 3 - (a + b);
    let lo = a.min(b);
    let hi = a.max(b);
    let t0 = if hi <= thresh { lo } else { c };
    let t1 = if thresh <= lo { hi } else { t0 };
    t1 as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean4_matches_the_generic_rounding() {
        for s in 0..=(4 * 65535u32) {
            assert_eq!(mean4(s), mean_round_half_even(s, 4), "{s}");
        }
    }

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
                3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
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
            let prev: Vec<u8> = (0..raw.len()).map(|i| (i as u8).wrapping_mul(37) ^ seed).collect();
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
                    assert_eq!(paeth(a, b, c), spec, "{a} {b} {c}");
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
