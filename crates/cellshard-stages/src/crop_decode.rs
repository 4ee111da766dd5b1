//! The crop-aware PNG decoder: inflate only as far as the last row the crop needs, unfilter
//! only the columns left of the crop's right edge, and downsample + crop as row blocks
//! complete.
//!
//! It produces exactly `center_crop(downsample(decode_full(png)))` for non-interlaced
//! grayscale PNGs of 8 or 16 bits. Per 2048x2048x16-bit channel with a 2x downsample and a
//! 512 crop it inflates 1536 of 2048 rows and unfilters at most 1536 x 1536 of 2048 x 2048
//! samples (Sub, Avg and Paeth depend on the left neighbour, so the columns left of the crop are
//! needed; Up, Avg and Paeth depend on the row above, so the rows above it are too). Rows
//! filtered None or Sub do not read the row above, so unfiltering starts at the last such
//! row above the crop. Adaptive filtering picks them often on noisy microscopy (the png
//! crate chose Sub for 31% of the synthetic rows), which leaves almost nothing above the
//! crop to unfilter.
//!
//! Inflate is libdeflate (`libdeflater`), called once per channel with an output buffer
//! that ends just past the last needed row: libdeflate stops when the buffer is full, having
//! written everything before the point where it stopped. On this machine kind (2-core
//! AMD EPYC, 2048x2048x16-bit synthetic channels at zlib level 6) it made the one-core
//! decode ceiling 25-30% faster than `fdeflate` driven as a stream (6.06 -> 7.59 and
//! 5.57 -> 7.32 sites/s in back-to-back runs); inflating is still about three quarters of
//! decoding. Unfiltering two rows side by side, to overlap their dependency chains, was
//! tried and measured no faster. A stream libdeflate rejects (or one
//! that ends before the needed rows) goes through `fdeflate` as a stream into a small window
//! that keeps the 32 KiB of back-reference history. That path names the row where the data
//! fails, so its error is the one reported.
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
#[derive(Default)]
pub struct CropDecoder {
    idat: Vec<u8>,
    /// The bulk path's output: the filtered rows up to the crop's last, plus slack.
    inflated: Vec<u8>,
    bulk: Option<libdeflater::Decompressor>,
    window: Vec<u8>,
    rows: RowState,
}

impl std::fmt::Debug for CropDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CropDecoder")
            .field("inflated", &self.inflated.len())
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
            .map_err(|kind| bad_filter(kind, y))?;
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
            let n = (f * f) as u32;
            data.extend(self.acc.iter().map(|&s| mean_round_half_even(s, n)));
        }
        Ok(())
    }
}

/// Slack past the last needed byte for the bulk inflate: libdeflate stops, without writing
/// it, at a stored block (up to 65,535 bytes) or a match (up to 258) that would overrun the
/// buffer, so with this much room every byte before the slack is written when it stops.
const BULK_SLACK: usize = 65_535 + 258 + 1;

impl CropDecoder {
    /// A decoder with empty buffers; they grow on first use and are kept.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decode `png` (whose chunks and header the caller has verified) into the cropped,
    /// downsampled plane described by `g`.
    ///
    /// The fast path inflates with libdeflate into one buffer bounded just past the last
    /// needed row (libdeflate stops there) and then walks the rows. A stream it cannot
    /// inflate that far takes the streaming path, which reports the row where it fails.
    pub fn decode(&mut self, png: &[u8], g: &CropGeometry) -> Result<Plane, DecodeError> {
        self.decode_with(png, g, true)
    }

    /// [`CropDecoder::decode`], with the bulk path tried first or not.
    fn decode_with(
        &mut self,
        png: &[u8],
        g: &CropGeometry,
        try_bulk: bool,
    ) -> Result<Plane, DecodeError> {
        let stream = idat_stream(png, &mut self.idat)?;
        let p = RowPlan::new(g);
        self.rows.reset(&p, g.out_width as usize);
        let mut data: Vec<u16> = Vec::with_capacity(g.out_width as usize * g.out_height as usize);
        let limit = p.row_end * p.row_len;
        if try_bulk && inflate_bulk(&mut self.bulk, &mut self.inflated, stream, limit) {
            let rows = &self.inflated[..limit];
            let first = restart_row(rows, &p)?;
            for (y, row) in rows.chunks_exact(p.row_len).enumerate().skip(first) {
                self.rows.push(&p, y, row, &mut data)?;
            }
        } else {
            // The bulk path hands over no rows unless it inflated them all, so the row state
            // is still fresh here.
            stream_rows(&mut self.window, &mut self.rows, stream, &p, &mut data)?;
        }
        Ok(Plane::new(g.out_width, g.out_height, data))
    }

    /// Inflate only: gather the IDAT data and inflate it with libdeflate up to the last row
    /// the crop needs, as [`CropDecoder::decode`] does, and nothing else (no unfiltering, no
    /// downsampling). Returns the bytes inflated. `cellshard bench` times it as the limit
    /// above the decoder: however the other steps are done, no decode of these files that
    /// inflates with libdeflate is faster than this.
    pub fn inflate_only(&mut self, png: &[u8], g: &CropGeometry) -> Result<usize, DecodeError> {
        let stream = idat_stream(png, &mut self.idat)?;
        let p = RowPlan::new(g);
        let limit = p.row_end * p.row_len;
        if inflate_bulk(&mut self.bulk, &mut self.inflated, stream, limit) {
            Ok(limit)
        } else {
            Err(DecodeError::corrupt(format!(
                "libdeflate could not inflate the {limit} bytes of rows the crop needs"
            )))
        }
    }
}

/// The zlib stream of `png`: the one IDAT chunk's body in place (what most encoders write
/// for a single image), or every IDAT chunk's body copied, in order, into `idat`.
fn idat_stream<'a>(png: &'a [u8], idat: &'a mut Vec<u8>) -> Result<&'a [u8], DecodeError> {
    Ok(match idat_chunks(png)? {
        (1, Some(only)) => only,
        _ => {
            idat.clear();
            walk_chunks(png, |kind, body| {
                if kind == b"IDAT" {
                    idat.extend_from_slice(body);
                }
            })?;
            idat
        }
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
            kind => return Err(bad_filter(kind, y)),
        }
    }
    Ok(first)
}

/// Inflate the zlib `stream` with libdeflate into `out` until at least `limit` bytes are
/// out. False when it cannot (a corrupt or short stream, a preset dictionary).
fn inflate_bulk(
    bulk: &mut Option<libdeflater::Decompressor>,
    out: &mut Vec<u8>,
    stream: &[u8],
    limit: usize,
) -> bool {
    // The zlib header: deflate method, no preset dictionary, a valid check value. The
    // Adler-32 trailer is never reached (the chunk CRCs were checked).
    let [cmf, flg, ..] = *stream else {
        return false;
    };
    if cmf & 0x0f != 8 || flg & 0x20 != 0 || (u16::from(cmf) << 8 | u16::from(flg)) % 31 != 0 {
        return false;
    }
    let size = limit + BULK_SLACK;
    if out.len() < size {
        out.resize(size, 0);
    }
    let d = bulk.get_or_insert_with(libdeflater::Decompressor::new);
    match d.deflate_decompress(&stream[2..], &mut out[..size]) {
        Ok(n) => n >= limit,
        Err(libdeflater::DecompressionError::InsufficientSpace) => true,
        Err(libdeflater::DecompressionError::BadData) => false,
    }
}

/// The streaming path: fdeflate into a small window that keeps the 32 KiB of history
/// deflate back-references need, handing each row to `rows` as it completes.
fn stream_rows(
    window: &mut Vec<u8>,
    rows: &mut RowState,
    stream: &[u8],
    p: &RowPlan,
    data: &mut Vec<u16>,
) -> Result<(), DecodeError> {
    let row_len = p.row_len;
    window.clear();
    window.resize(WINDOW + FRESH + row_len, 0);
    let mut inflater = fdeflate::Decompressor::new();
    // The stream usually stops early, before its checksum; the chunk CRCs were checked.
    inflater.ignore_adler32();
    let mut in_pos = 0usize;
    // Window state: bytes [0, out_pos) hold output; [row_pos, out_pos) is not yet consumed.
    let mut out_pos = 0usize;
    let mut row_pos = 0usize;
    for y in 0..p.row_end {
        while out_pos - row_pos < row_len {
            if out_pos + row_len > window.len() {
                // Keep the back-reference history and the unconsumed bytes; drop the rest.
                let keep_from = out_pos.saturating_sub(WINDOW).min(row_pos);
                window.copy_within(keep_from..out_pos, 0);
                out_pos -= keep_from;
                row_pos -= keep_from;
            }
            if inflater.is_done() {
                return Err(truncated(y));
            }
            let (consumed, produced) = inflater
                .read(&stream[in_pos..], window, out_pos, true)
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
        rows.push(p, y, &window[row_pos..row_pos + row_len], data)?;
        row_pos += row_len;
    }
    Ok(())
}

fn bad_filter(kind: u8, y: usize) -> DecodeError {
    DecodeError::corrupt(format!(
        "invalid PNG: unknown filter type {kind} in row {y}"
    ))
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
            // which put a store and a reload on the chain: 1.6x slower per pixel (5.2-5.4
            // against 3.2-3.3 ns at 16 bits, random rows, `-C opt-level=3`).
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
                    let got = paeth(a.into(), b.into(), c.into());
                    assert_eq!(got, i32::from(spec), "{a} {b} {c}");
                }
            }
        }
    }

    /// Both inflate paths give the same plane, and the same error for the same bad input.
    #[test]
    fn bulk_and_streaming_paths_agree() {
        use crate::decode::tests::encode_rows;
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
                let bulk = d.decode_with(&png, &g, true).unwrap();
                let streamed = d.decode_with(&png, &g, false).unwrap();
                assert_eq!(bulk, streamed, "{w}x{h} {depth}-bit f{factor}");
            }
            let bad = encode_rows(w, h, depth, &px, &[4, 9], 1 << 20);
            let a = d.decode_with(&bad, &g, true).unwrap_err();
            let b = d.decode_with(&bad, &g, false).unwrap_err();
            assert_eq!(a.to_string(), b.to_string());
        }
    }

    /// Unfiltering may start at a None or Sub row above the crop, never anywhere else: with
    /// filters that read the row above everywhere but in one such row, the crop is the same
    /// wherever that row is, and a bad filter byte above the restart row is still reported,
    /// in row order.
    #[test]
    fn unfiltering_restarts_only_at_rows_that_ignore_the_row_above() {
        use crate::decode::tests::encode_rows;
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
        let want = d.decode_with(&plain, &g, false).unwrap();
        // The crop starts at source row 16.
        for (restart, kind) in [(0, 1u8), (3, 0), (15, 1), (16, 1), (40, 0)] {
            // Up, Avg and Paeth in turn: each reads the row above.
            let mut filters: Vec<u8> = (0..h as usize).map(|y| 2 + (y % 3) as u8).collect();
            filters[restart] = kind;
            let png = encode_rows(w, h, 16, &px, &filters, 1 << 20);
            assert_eq!(
                d.decode_with(&png, &g, true).unwrap(),
                want,
                "row {restart}"
            );
            // Each row's own filter byte is checked before the restart row too.
            filters[2] = 7;
            let bad = encode_rows(w, h, 16, &px, &filters, 1 << 20);
            let err = d.decode_with(&bad, &g, true).unwrap_err().to_string();
            assert!(err.contains("unknown filter type 7 in row 2"), "{err}");
        }
    }

    #[test]
    fn unknown_filter_is_an_error() {
        let mut cur = [0u8; 4];
        assert_eq!(unfilter(5, 2, &[0; 4], &[0; 4], &mut cur), Err(5));
    }
}
