//! The crop-aware PNG decoder: inflate only as far as the last row the crop needs, unfilter
//! only the columns left of the crop's right edge, and downsample + crop as row blocks
//! complete.
//!
//! It produces exactly `center_crop(downsample(decode_full(png)))` for non-interlaced
//! grayscale PNGs of 8 or 16 bits. With a 2x downsample and a crop of a quarter of the side
//! it inflates three quarters of the rows and unfilters at most three quarters of the
//! columns of those (Sub, Avg and Paeth depend on the left neighbour, so the columns left
//! of the crop are needed; Up, Avg and Paeth depend on the row above, so the rows above it
//! are too). Rows filtered None or Sub do not read the row above, so unfiltering starts at
//! the last such row above the crop; adaptive filtering picks them often on noisy
//! microscopy, which leaves little above the crop to unfilter.
//!
//! The identity geometry (factor 1, no crop) is a full decode: [`super::decode_full`] uses
//! it for non-interlaced images.
//!
//! A [`CropDecoder`] owns all its buffers and reuses them from call to call: one per worker
//! thread means no allocation per channel beyond the output plane.
//!
//! It decodes a [`PngChunks`], whose walk checked every chunk's CRC, so a stream that stops
//! early cannot hide a corrupt tail. The header must have been checked against the spec.

use std::cell::RefCell;

use super::chunks::{Header, PngChunks};
use super::error::DecodeError;
use super::inflate::{BulkInflater, stream_rows};
use super::unfilter::unfilter;
use crate::Plane;
use crate::crop::crop_offset;
use crate::downsample::mean_round_half_even;

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

impl CropGeometry {
    /// The geometry of decode, downsample by `factor` and centre crop to `crop` (none: the
    /// whole downsampled image) for an image with `header`.
    pub fn new(header: &Header, factor: u32, crop: Option<u32>) -> Result<Self, DecodeError> {
        let (w, h) = (header.width, header.height);
        if factor == 0 {
            return Err(DecodeError::format("a downsample factor of 0"));
        }
        let (dw, dh) = (w / factor, h / factor);
        let (out_width, out_height, crop_x, crop_y) = match crop {
            Some(c) if c > dw || c > dh => {
                return Err(DecodeError::format(format!(
                    "{w}x{h} is too small for a {c} crop after {factor}x downsampling"
                )));
            }
            Some(c) => {
                let (ox, oy) = crop_offset(dw, dh, c);
                (c, c, ox, oy)
            }
            None => (dw, dh, 0, 0),
        };
        Ok(Self {
            width: w,
            height: h,
            bit_depth: header.bit_depth,
            factor,
            out_width,
            out_height,
            crop_x,
            crop_y,
        })
    }

    /// Bytes of the inflated stream the decode needs: every row (filter byte and samples)
    /// down to the last one the crop reads.
    pub fn inflated_len(&self) -> usize {
        let p = RowPlan::new(self);
        p.row_end * p.row_len
    }
}

/// A reusable crop-aware decoder (see the module docs).
#[derive(Default)]
pub struct CropDecoder {
    /// The concatenated IDAT bodies of a file with more than one.
    idat: Vec<u8>,
    /// The bulk path: the filtered rows up to the crop's last.
    bulk: BulkInflater,
    /// The streaming path's window.
    window: Vec<u8>,
    rows: RowState,
}

impl std::fmt::Debug for CropDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CropDecoder")
            .field("bulk", &self.bulk)
            .field("window", &self.window.len())
            .finish_non_exhaustive()
    }
}

/// The buffers of the row consumer: unfilter, then downsample and crop.
#[derive(Debug, Default)]
struct RowState {
    prev: Vec<u8>,
    cur: Vec<u8>,
    line: Vec<u16>,
    acc: Vec<u32>,
}

/// What every row of one decode shares.
#[derive(Debug, Clone, Copy)]
struct RowPlan {
    bpp: usize,
    /// Filter byte plus samples.
    row_len: usize,
    factor: usize,
    row_start: usize,
    row_end: usize,
    col_start: usize,
    span: usize,
    /// Bytes of each row that must be unfiltered: everything left of the crop's right edge.
    need: usize,
}

impl RowPlan {
    fn new(g: &CropGeometry) -> Self {
        let bpp = usize::from(g.bit_depth / 8);
        let f = g.factor as usize;
        let col_start = (g.crop_x * g.factor) as usize;
        let span = g.out_width as usize * f;
        RowPlan {
            bpp,
            row_len: g.width as usize * bpp + 1,
            factor: f,
            row_start: (g.crop_y * g.factor) as usize,
            row_end: ((g.crop_y + g.out_height) * g.factor) as usize,
            col_start,
            span,
            need: (col_start + span) * bpp,
        }
    }
}

impl RowState {
    fn reset(&mut self, p: &RowPlan, out_width: usize) {
        for v in [&mut self.prev, &mut self.cur] {
            v.clear();
            v.resize(p.need, 0);
        }
        self.line.clear();
        self.line.resize(p.span, 0);
        self.acc.clear();
        self.acc.resize(out_width, 0);
    }

    /// Consume filtered row `y` (filter byte first) and append any finished output row.
    #[inline]
    fn push(
        &mut self,
        p: &RowPlan,
        y: usize,
        row: &[u8],
        data: &mut Vec<u16>,
    ) -> Result<(), DecodeError> {
        let filter = row[0];
        let raw = &row[1..1 + p.need];
        unfilter(filter, p.bpp, raw, &self.prev, &mut self.cur)
            .map_err(|kind| DecodeError::bad_filter(kind, y))?;
        std::mem::swap(&mut self.prev, &mut self.cur);
        if y < p.row_start {
            return Ok(());
        }
        // `prev` now holds row y, unfiltered.
        let px = &self.prev[p.col_start * p.bpp..(p.col_start + p.span) * p.bpp];
        let f = p.factor;
        let block_row = (y - p.row_start) % f;
        if f == 2 {
            accumulate_pairs(px, p.bpp, block_row == 0, &mut self.acc);
            if block_row == 1 {
                data.extend(self.acc.iter().map(|&s| mean4(s)));
            }
            return Ok(());
        }
        widen(px, p.bpp, &mut self.line);
        if f == 1 {
            data.extend_from_slice(&self.line);
            return Ok(());
        }
        if block_row == 0 {
            self.acc.iter_mut().for_each(|a| *a = 0);
        }
        for (a, block) in self.acc.iter_mut().zip(self.line.chunks_exact(f)) {
            *a += block.iter().map(|&v| u32::from(v)).sum::<u32>();
        }
        if block_row == f - 1 {
            let n = u32::try_from(f * f).map_err(|_| {
                DecodeError::format(format!("a downsample factor of {f} is too large"))
            })?;
            data.extend(self.acc.iter().map(|&s| mean_round_half_even(s, n)));
        }
        Ok(())
    }
}

impl CropDecoder {
    /// A decoder with empty buffers; they grow on first use and are kept.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decode `png` into the cropped, downsampled plane described by `g`, which
    /// [`CropGeometry::new`] made from `png`'s header. The header should have been checked
    /// against the spec; a non-interlaced grayscale image of 8 or 16 bits is required.
    ///
    /// The fast path inflates with libdeflate into one buffer bounded just past the last
    /// needed row and then walks the rows. A stream it cannot inflate that far takes the
    /// streaming path, which reports the row where it fails.
    pub fn decode(&mut self, png: &PngChunks<'_>, g: &CropGeometry) -> Result<Plane, DecodeError> {
        let h = &png.header;
        if h.color_type != 0 || !matches!(h.bit_depth, 8 | 16) || h.interlaced {
            return Err(DecodeError::format(
                "the crop-aware decoder takes non-interlaced grayscale PNGs of 8 or 16 bits",
            ));
        }
        if (g.width, g.height, g.bit_depth) != (h.width, h.height, h.bit_depth) {
            return Err(DecodeError::format(format!(
                "a crop geometry for {}x{} {}-bit images applied to a {}x{} {}-bit image",
                g.width, g.height, g.bit_depth, h.width, h.height, h.bit_depth
            )));
        }
        self.decode_with(png, g, true)
    }

    /// [`CropDecoder::decode`], with the bulk path tried first or not.
    fn decode_with(
        &mut self,
        png: &PngChunks<'_>,
        g: &CropGeometry,
        try_bulk: bool,
    ) -> Result<Plane, DecodeError> {
        let stream = png.zlib_stream(&mut self.idat);
        let p = RowPlan::new(g);
        self.rows.reset(&p, g.out_width as usize);
        let mut data: Vec<u16> = Vec::with_capacity(g.out_width as usize * g.out_height as usize);
        let limit = p.row_end * p.row_len;
        let inflated = if try_bulk {
            self.bulk.inflate(stream, limit)
        } else {
            None
        };
        if let Some(rows) = inflated {
            let first = restart_row(rows, &p)?;
            for (y, row) in rows.chunks_exact(p.row_len).enumerate().skip(first) {
                self.rows.push(&p, y, row, &mut data)?;
            }
        } else {
            // The bulk path hands over no rows unless it inflated them all, so the row state
            // is still fresh here.
            let rows = &mut self.rows;
            stream_rows(&mut self.window, stream, p.row_len, p.row_end, |y, row| {
                rows.push(&p, y, row, &mut data)
            })?;
        }
        Ok(Plane::new(g.out_width, g.out_height, data))
    }
}

thread_local! {
    /// One crop decoder per thread (per CPU-pool worker), so its buffers are reused.
    static CROP_DECODER: RefCell<CropDecoder> = RefCell::new(CropDecoder::new());
}

/// Run `f` on this thread's decoder.
pub(crate) fn with_thread_decoder<R>(f: impl FnOnce(&mut CropDecoder) -> R) -> R {
    CROP_DECODER.with(|d| match d.try_borrow_mut() {
        Ok(mut d) => f(&mut d),
        // Only reachable through re-entrancy, which this module never does; stay correct.
        Err(_) => f(&mut CropDecoder::new()),
    })
}

/// The row to start unfiltering at: the last row above the crop whose filter (None or
/// Sub) does not read the row above, or row 0. The rows before it cannot change the crop,
/// so they are neither unfiltered nor downsampled; their filter bytes are still checked, in
/// order, so a bad one is reported as the row-by-row walk would report it.
fn restart_row(rows: &[u8], p: &RowPlan) -> Result<usize, DecodeError> {
    let mut first = 0;
    for (y, row) in rows.chunks_exact(p.row_len).take(p.row_start).enumerate() {
        match row[0] {
            0 | 1 => first = y,
            2..=4 => {}
            kind => return Err(DecodeError::bad_filter(kind, y)),
        }
    }
    Ok(first)
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
#[allow(
    clippy::cast_possible_truncation,
    reason = "sum is of four u16 samples, so the rounded mean is at most 65535"
)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean4_matches_the_generic_rounding() {
        for s in 0..=(4 * 65535u32) {
            assert_eq!(mean4(s), mean_round_half_even(s, 4), "{s}");
        }
    }

    /// Decode the PNG file `png` with `d`, taking the bulk path first or not.
    fn decode_bytes(
        d: &mut CropDecoder,
        png: &[u8],
        g: &CropGeometry,
        try_bulk: bool,
    ) -> Result<Plane, DecodeError> {
        d.decode_with(&PngChunks::read(png)?, g, try_bulk)
    }

    #[test]
    fn refuses_a_geometry_made_for_another_image() {
        use crate::png::fixtures::encode_rows;
        let px: Vec<u16> = (0..32 * 32).map(|i| u16::try_from(i).unwrap()).collect();
        let png = encode_rows(32, 32, 16, &px, &[1], 1 << 20);
        let c = PngChunks::read(&png).unwrap();
        let mut g = CropGeometry::new(&c.header, 2, Some(8)).unwrap();
        let mut d = CropDecoder::new();
        assert_eq!(d.decode(&c, &g).unwrap().data.len(), 64);
        g.width = 64;
        let e = d.decode(&c, &g).unwrap_err();
        assert!(e.message.contains("crop geometry for 64x32"), "{e}");
    }

    /// Both inflate paths give the same plane, and the same error for the same bad input.
    #[test]
    #[allow(
        clippy::cast_possible_truncation,
        reason = "keeps the low 16 bits of a hash"
    )]
    fn bulk_and_streaming_paths_agree() {
        use crate::png::fixtures::encode_rows;
        let mut d = CropDecoder::new();
        for (w, h, depth, factor, out, filters) in [
            (2048u32, 40u32, 16u8, 2u32, 16u32, &[4u8, 1, 2, 3, 0][..]),
            (300, 300, 8, 2, 100, &[4][..]),
            (97, 64, 16, 1, 30, &[3, 4, 2][..]),
            (90, 90, 16, 3, 20, &[1][..]),
        ] {
            let px: Vec<u16> = (0..w * h)
                .map(|i| {
                    (i.wrapping_mul(2_654_435_761) >> 7) as u16
                        % if depth == 8 { 256 } else { 65_535 }
                })
                .collect();
            let g = CropGeometry {
                width: w,
                height: h,
                bit_depth: depth,
                factor,
                out_width: out,
                out_height: out.min(h / factor),
                crop_x: (w / factor - out) / 2,
                crop_y: (h / factor - out.min(h / factor)) / 2,
            };
            for idat_len in [5usize, 1 << 20] {
                let png = encode_rows(w, h, depth, &px, filters, idat_len);
                let bulk = decode_bytes(&mut d, &png, &g, true).unwrap();
                let streamed = decode_bytes(&mut d, &png, &g, false).unwrap();
                assert_eq!(bulk, streamed, "{w}x{h} {depth}-bit f{factor}");
            }
            let bad = encode_rows(w, h, depth, &px, &[4, 9], 1 << 20);
            let a = decode_bytes(&mut d, &bad, &g, true).unwrap_err();
            let b = decode_bytes(&mut d, &bad, &g, false).unwrap_err();
            assert_eq!(a.to_string(), b.to_string());
        }
    }

    /// Unfiltering may start at a None or Sub row above the crop, never anywhere else: with
    /// filters that read the row above everywhere but in one such row, the crop is the same
    /// wherever that row is, and a bad filter byte above the restart row is still reported,
    /// in row order.
    #[test]
    #[allow(
        clippy::cast_possible_truncation,
        reason = "keeps the low 16 bits of a hash"
    )]
    fn unfiltering_restarts_only_at_rows_that_ignore_the_row_above() {
        use crate::png::fixtures::encode_rows;
        let (w, h, out) = (64u32, 64u32, 16u32);
        let g = CropGeometry {
            width: w,
            height: h,
            bit_depth: 16,
            factor: 2,
            out_width: out,
            out_height: out,
            crop_x: 8,
            crop_y: 8,
        };
        let px: Vec<u16> = (0..w * h)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u16)
            .collect();
        let plain = encode_rows(w, h, 16, &px, &[4], 1 << 20);
        let mut d = CropDecoder::new();
        let want = decode_bytes(&mut d, &plain, &g, false).unwrap();
        // The crop starts at source row 16.
        for (restart, kind) in [(0, 1u8), (3, 0), (15, 1), (16, 1), (40, 0)] {
            // Up, Avg and Paeth in turn: each reads the row above.
            let mut filters: Vec<u8> = (0..h as usize)
                .map(|y| 2 + u8::try_from(y % 3).unwrap())
                .collect();
            filters[restart] = kind;
            let png = encode_rows(w, h, 16, &px, &filters, 1 << 20);
            assert_eq!(
                decode_bytes(&mut d, &png, &g, true).unwrap(),
                want,
                "row {restart}"
            );
            // Each row's own filter byte is checked before the restart row too.
            filters[2] = 7;
            let bad = encode_rows(w, h, 16, &px, &filters, 1 << 20);
            let err = decode_bytes(&mut d, &bad, &g, true)
                .unwrap_err()
                .to_string();
            assert!(err.contains("unknown filter type 7 in row 2"), "{err}");
        }
    }
}
