//! PNG decoding to u16 samples, with guards, and the crop-aware fused path.
//!
//! [`decode_full`] decodes every row. [`decode_transformed`] produces exactly
//! `center_crop(downsample(decode_full(png)))` with the crop-aware decoder of
//! [`crate::crop_decode`]: it inflates only up to the last row the crop needs, unfilters
//! only the columns left of the crop's right edge and downsamples as row pairs complete.
//! [`decode_transformed_rows`] is the earlier fused path on the `png` crate's row reader,
//! kept as a baseline. Because stopping early would skip the
//! checksums of the rest of the file, every chunk's CRC and the file's completeness are
//! verified up front by [`verify_chunks`] (a cheap CRC pass), so a truncated or corrupt
//! file is rejected whichever path runs.

use std::cell::RefCell;
use std::fmt;
use std::io::Cursor;

use crate::Plane;
use crate::crop::crop_offset;
use crate::crop_decode::{CropDecoder, CropGeometry};
use crate::downsample::mean_round_half_even;

/// What a decoder accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeSpec {
    /// Required bit depth (8 or 16).
    pub bit_depth: u8,
    /// Required width, if fixed.
    pub width: Option<u32>,
    /// Required height, if fixed.
    pub height: Option<u32>,
    /// Headers claiming more pixels are refused before any allocation.
    pub max_pixels: u64,
}

/// Broad class of a decode failure, mapped to reject reasons by the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// Not a PNG, truncated, bad CRC, corrupt stream.
    Corrupt,
    /// A valid PNG of the wrong bit depth, colour type or size.
    Format,
}

/// A decode failure with a message in plain words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Class of the failure.
    pub kind: DecodeErrorKind,
    /// What is wrong.
    pub message: String,
}

impl DecodeError {
    pub(crate) fn corrupt(message: impl Into<String>) -> Self {
        Self {
            kind: DecodeErrorKind::Corrupt,
            message: message.into(),
        }
    }
    fn format(message: impl Into<String>) -> Self {
        Self {
            kind: DecodeErrorKind::Format,
            message: message.into(),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DecodeError {}

impl From<png::DecodingError> for DecodeError {
    fn from(e: png::DecodingError) -> Self {
        match e {
            png::DecodingError::LimitsExceeded => {
                Self::format("the image exceeds the decoder's memory limit")
            }
            other => Self::corrupt(format!("invalid PNG: {other}")),
        }
    }
}

const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];

/// Walk the chunk list: signature, lengths within the file, every CRC, an `IEND` at the end.
pub fn verify_chunks(bytes: &[u8]) -> Result<(), DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::corrupt("the file is empty (0 bytes)"));
    }
    if bytes.len() < 8 || bytes[..8] != SIGNATURE {
        return Err(DecodeError::corrupt("not a PNG file (bad signature)"));
    }
    let mut pos = 8usize;
    loop {
        if pos + 8 > bytes.len() {
            return Err(DecodeError::corrupt(format!(
                "truncated: the file ends at byte {} inside a chunk header",
                bytes.len()
            )));
        }
        let len = u32::from_be_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]])
            as usize;
        let kind = &bytes[pos + 4..pos + 8];
        let end = pos + 8 + len + 4;
        if end > bytes.len() {
            return Err(DecodeError::corrupt(format!(
                "truncated: chunk {} at byte {pos} needs {} bytes, the file has {}",
                String::from_utf8_lossy(kind),
                end - pos,
                bytes.len() - pos
            )));
        }
        let crc = u32::from_be_bytes([
            bytes[end - 4],
            bytes[end - 3],
            bytes[end - 2],
            bytes[end - 1],
        ]);
        if crc32fast::hash(&bytes[pos + 4..end - 4]) != crc {
            return Err(DecodeError::corrupt(format!(
                "bad CRC in chunk {} at byte {pos}",
                String::from_utf8_lossy(kind)
            )));
        }
        if kind == b"IEND" {
            return Ok(());
        }
        pos = end;
    }
}

/// Open a decoder after checking the chunks, and the header against the spec (before
/// allocating pixels).
fn open<'a>(
    bytes: &'a [u8],
    spec: &DecodeSpec,
) -> Result<png::Reader<Cursor<&'a [u8]>>, DecodeError> {
    verify_chunks(bytes)?;
    Ok(checked_header(bytes, spec)?.read_info()?)
}

/// A decoder that has read the header and checked it against the spec: size limit, grayscale,
/// bit depth, expected size.
fn checked_header<'a>(
    bytes: &'a [u8],
    spec: &DecodeSpec,
) -> Result<png::Decoder<Cursor<&'a [u8]>>, DecodeError> {
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let info = decoder.read_header_info()?;
    let (w, h) = (info.width, info.height);
    if u64::from(w) * u64::from(h) > spec.max_pixels {
        return Err(DecodeError::format(format!(
            "the header claims {w}x{h} pixels, over the limit of {} pixels (refused before decoding)",
            spec.max_pixels
        )));
    }
    if info.color_type != png::ColorType::Grayscale {
        return Err(DecodeError::format(format!(
            "colour type {:?}; a single-channel grayscale PNG is expected",
            info.color_type
        )));
    }
    let depth = info.bit_depth as u8;
    if depth != spec.bit_depth {
        return Err(DecodeError::format(format!(
            "bit depth {depth}; the pipeline expects {}",
            spec.bit_depth
        )));
    }
    if spec.width.is_some_and(|x| x != w) || spec.height.is_some_and(|x| x != h) {
        return Err(DecodeError::format(format!(
            "size {w}x{h}; the pipeline expects {}x{}",
            spec.width.map_or("any".into(), |x| x.to_string()),
            spec.height.map_or("any".into(), |x| x.to_string())
        )));
    }
    Ok(decoder)
}

fn widen_row(row: &[u8], depth: u8, out: &mut [u16]) {
    if depth == 16 {
        for (o, b) in out.iter_mut().zip(row.chunks_exact(2)) {
            *o = u16::from_be_bytes([b[0], b[1]]);
        }
    } else {
        for (o, &b) in out.iter_mut().zip(row) {
            *o = u16::from(b);
        }
    }
}

/// Decode every pixel (the straightforward path).
pub fn decode_full(bytes: &[u8], spec: &DecodeSpec) -> Result<Plane, DecodeError> {
    let mut reader = open(bytes, spec)?;
    let (w, h) = reader.info().size();
    let depth = spec.bit_depth;
    let mut raw = vec![
        0u8;
        reader
            .output_buffer_size()
            .ok_or_else(|| DecodeError::format("image too large"))?
    ];
    reader.next_frame(&mut raw)?;
    let mut data = vec![0u16; w as usize * h as usize];
    let row_bytes = w as usize * usize::from(depth / 8);
    for (y, out) in data.chunks_exact_mut(w as usize).enumerate() {
        widen_row(&raw[y * row_bytes..(y + 1) * row_bytes], depth, out);
    }
    Ok(Plane::new(w, h, data))
}

/// Output geometry of decode + downsample + crop for a `w` x `h` source.
fn geometry(
    w: u32,
    h: u32,
    bit_depth: u8,
    factor: u32,
    crop: Option<u32>,
) -> Result<CropGeometry, DecodeError> {
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
    Ok(CropGeometry {
        width: w,
        height: h,
        bit_depth,
        factor,
        out_width,
        out_height,
        crop_x,
        crop_y,
    })
}

/// The straightforward path for interlaced images, whose rows arrive in passes.
fn transformed_via_full(
    bytes: &[u8],
    spec: &DecodeSpec,
    factor: u32,
    crop: Option<u32>,
) -> Result<Plane, DecodeError> {
    let full = decode_full(bytes, spec)?;
    let d = crate::downsample::downsample(&full, factor);
    Ok(match crop {
        Some(c) => crate::crop::center_crop(&d, c),
        None => d,
    })
}

thread_local! {
    /// One crop decoder per thread (per CPU-pool worker), so its buffers are reused.
    static CROP_DECODER: RefCell<CropDecoder> = RefCell::new(CropDecoder::new());
}

/// Decode, downsample by `factor` and center-crop to `crop`, doing only the work the crop
/// needs (see [`crate::crop_decode`]). Equals `center_crop(downsample(decode_full(..)))`.
/// Interlaced images take the straightforward path.
pub fn decode_transformed(
    bytes: &[u8],
    spec: &DecodeSpec,
    factor: u32,
    crop: Option<u32>,
) -> Result<Plane, DecodeError> {
    let reader = open(bytes, spec)?;
    let (w, h) = reader.info().size();
    let g = geometry(w, h, spec.bit_depth, factor, crop)?;
    if reader.info().interlaced {
        return transformed_via_full(bytes, spec, factor, crop);
    }
    drop(reader);
    CROP_DECODER.with(|d| match d.try_borrow_mut() {
        Ok(mut d) => d.decode(bytes, &g),
        // Only reachable through re-entrancy, which this module never does; stay correct.
        Err(_) => CropDecoder::new().decode(bytes, &g),
    })
}

/// Only the inflating that [`decode_transformed`] does, on this thread's decoder: the header
/// read and checked as for decoding, the IDAT gathered and inflated up to the last row the
/// crop needs (see [`CropDecoder::inflate_only`]). No chunk CRCs beyond the header's,
/// unfiltering or downsampling. Returns the bytes inflated. For `cellshard bench`, which
/// reports it as the limit above the decode ceiling.
pub fn inflate_only(
    bytes: &[u8],
    spec: &DecodeSpec,
    factor: u32,
    crop: Option<u32>,
) -> Result<usize, DecodeError> {
    let mut decoder = checked_header(bytes, spec)?;
    let info = decoder.read_header_info()?;
    if info.interlaced {
        return Err(DecodeError::format(
            "interlace method 1 (Adam7); the crop-aware decoder takes non-interlaced PNGs",
        ));
    }
    let g = geometry(info.width, info.height, spec.bit_depth, factor, crop)?;
    CROP_DECODER.with(|d| match d.try_borrow_mut() {
        Ok(mut d) => d.inflate_only(bytes, &g),
        Err(_) => CropDecoder::new().inflate_only(bytes, &g),
    })
}

/// The previous fused path: the `png` crate's row reader, downsampling as rows arrive and
/// stopping after the last needed row. Kept as the baseline the benches compare against.
pub fn decode_transformed_rows(
    bytes: &[u8],
    spec: &DecodeSpec,
    factor: u32,
    crop: Option<u32>,
) -> Result<Plane, DecodeError> {
    let mut reader = open(bytes, spec)?;
    let (w, h) = reader.info().size();
    let g = geometry(w, h, spec.bit_depth, factor, crop)?;
    if reader.info().interlaced {
        return transformed_via_full(bytes, spec, factor, crop);
    }
    let (cw, ch, ox, oy) = (g.out_width, g.out_height, g.crop_x, g.crop_y);
    let depth = spec.bit_depth;
    let bpp = usize::from(depth / 8);
    let (row_start, row_end) = (oy * factor, (oy + ch) * factor);
    let col_start = (ox * factor) as usize;
    let span = (cw * factor) as usize;
    let n = factor * factor;
    let mut acc = vec![0u32; cw as usize];
    let mut line = vec![0u16; span];
    let mut data = Vec::with_capacity(cw as usize * ch as usize);
    for y in 0..row_end {
        let row = reader.next_row()?.ok_or_else(|| {
            DecodeError::corrupt(format!("truncated: image data ends before row {y}"))
        })?;
        if y < row_start {
            continue;
        }
        let bytes = &row.data()[col_start * bpp..(col_start + span) * bpp];
        widen_row(bytes, depth, &mut line);
        if factor == 1 {
            data.extend_from_slice(&line);
            continue;
        }
        for (a, block) in acc.iter_mut().zip(line.chunks_exact(factor as usize)) {
            *a += block.iter().map(|&v| u32::from(v)).sum::<u32>();
        }
        if (y - row_start + 1) % factor == 0 {
            data.extend(acc.iter().map(|&s| mean_round_half_even(s, n)));
            acc.iter_mut().for_each(|a| *a = 0);
        }
    }
    Ok(Plane::new(cw, ch, data))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::crop::center_crop;
    use crate::downsample::downsample;

    /// Encode a grayscale PNG; `filter` varies per image so every unfilter path is exercised.
    pub(crate) fn encode(w: u32, h: u32, depth: u8, px: &[u16], filter: png::Filter) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut e = png::Encoder::new(&mut out, w, h);
            e.set_color(png::ColorType::Grayscale);
            e.set_depth(if depth == 16 {
                png::BitDepth::Sixteen
            } else {
                png::BitDepth::Eight
            });
            e.set_filter(filter);
            let mut wr = e.write_header().unwrap();
            let bytes: Vec<u8> = if depth == 16 {
                px.iter().flat_map(|v| v.to_be_bytes()).collect()
            } else {
                px.iter().map(|&v| v as u8).collect()
            };
            wr.write_image_data(&bytes).unwrap();
        }
        out
    }

    fn pixels(w: u32, h: u32, seed: u32, max: u16) -> Vec<u16> {
        let mut s = seed.wrapping_mul(2654435761).max(1);
        (0..w * h)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                ((s % 97) as u16).wrapping_add(((i % w) * 7 + (i / w) * 3) as u16) % max
            })
            .collect()
    }

    fn spec(depth: u8) -> DecodeSpec {
        DecodeSpec {
            bit_depth: depth,
            width: None,
            height: None,
            max_pixels: 1 << 30,
        }
    }

    #[test]
    fn fused_equals_straightforward() {
        let filters = [
            png::Filter::NoFilter,
            png::Filter::Sub,
            png::Filter::Up,
            png::Filter::Avg,
            png::Filter::Paeth,
            png::Filter::Adaptive,
        ];
        for (i, filter) in filters.into_iter().enumerate() {
            for (depth, max) in [(16u8, 65535u16), (8, 255)] {
                for (w, h, f, c) in [
                    (64, 64, 2, Some(16)),
                    (67, 61, 2, Some(20)),
                    (40, 40, 1, Some(17)),
                    (30, 22, 3, None),
                ] {
                    let px = pixels(w, h, i as u32 + 7 * w, max);
                    let png = encode(w, h, depth, &px, filter);
                    let full = decode_full(&png, &spec(depth)).unwrap();
                    assert_eq!(full.data, px);
                    let d = downsample(&full, f);
                    let expect = match c {
                        Some(c) => center_crop(&d, c),
                        None => d,
                    };
                    let fused = decode_transformed(&png, &spec(depth), f, c).unwrap();
                    assert_eq!(
                        fused, expect,
                        "filter {filter:?} depth {depth} {w}x{h} f{f} c{c:?}"
                    );
                    let rows = decode_transformed_rows(&png, &spec(depth), f, c).unwrap();
                    assert_eq!(rows, expect);
                }
            }
        }
    }

    #[test]
    fn inflate_only_inflates_the_rows_the_crop_needs() {
        let px = pixels(64, 64, 3, 65535);
        let png = encode(64, 64, 16, &px, png::Filter::Paeth);
        let row = 64 * 2 + 1;
        // A 16 crop of the 32x32 downsample starts at its row 8: source rows 0..48 inflated.
        assert_eq!(
            inflate_only(&png, &spec(16), 2, Some(16)).unwrap(),
            48 * row
        );
        assert_eq!(inflate_only(&png, &spec(16), 1, None).unwrap(), 64 * row);
        let depth = inflate_only(&png, &spec(8), 2, Some(16)).unwrap_err();
        assert!(depth.to_string().contains("bit depth 16"), "{depth}");
        // A reserved block type right after the zlib header: libdeflate refuses the stream.
        let at = png.windows(4).position(|w| w == b"IDAT").unwrap() + 4;
        let mut bad = png.clone();
        bad[at + 2] = 0xff;
        let err = inflate_only(&bad, &spec(16), 2, Some(16)).unwrap_err();
        assert!(err.to_string().contains("could not inflate"), "{err}");
        let err = inflate_only(b"not a png at all, not at all, no.", &spec(16), 2, None);
        assert!(err.is_err());
        let adam7 = {
            // Interlace method 1 in IHDR, and the chunk's CRC to match.
            let mut p = png.clone();
            p[28] = 1;
            let crc = crc32fast::hash(&p[12..29]).to_be_bytes();
            p[29..33].copy_from_slice(&crc);
            p
        };
        let err = inflate_only(&adam7, &spec(16), 2, Some(16)).unwrap_err();
        assert!(err.to_string().contains("interlace method 1"), "{err}");
    }

    /// Apply PNG filter `f` to `row` given the previous (unfiltered) row.
    fn filter_row(f: u8, bpp: usize, row: &[u8], prev: &[u8]) -> Vec<u8> {
        (0..row.len())
            .map(|i| {
                let a = if i >= bpp { row[i - bpp] } else { 0 };
                let b = prev[i];
                let c = if i >= bpp { prev[i - bpp] } else { 0 };
                let pred = match f {
                    0 => 0,
                    1 => a,
                    2 => b,
                    3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                    _ => {
                        let p = i32::from(a) + i32::from(b) - i32::from(c);
                        let pa = (p - i32::from(a)).abs();
                        let pb = (p - i32::from(b)).abs();
                        let pc = (p - i32::from(c)).abs();
                        if pa <= pb && pa <= pc {
                            a
                        } else if pb <= pc {
                            b
                        } else {
                            c
                        }
                    }
                };
                row[i].wrapping_sub(pred)
            })
            .collect()
    }

    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], body: &[u8]) {
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        let mut crc = kind.to_vec();
        crc.extend_from_slice(body);
        out.extend_from_slice(&crc);
        out.extend_from_slice(&crc32fast::hash(&crc).to_be_bytes());
    }

    /// A PNG written by hand: the filter of row `y` is `filters[y % len]`, and the zlib
    /// stream is split into IDAT chunks of `idat_len` bytes.
    pub(crate) fn encode_rows(
        w: u32,
        h: u32,
        depth: u8,
        px: &[u16],
        filters: &[u8],
        idat_len: usize,
    ) -> Vec<u8> {
        encode_rows_with(
            w,
            h,
            depth,
            px,
            filters,
            idat_len,
            fdeflate::compress_to_vec,
        )
    }

    /// A zlib compressor.
    type Zlib = fn(&[u8]) -> Vec<u8>;

    /// [`encode_rows`] with the zlib stream made by `zlib`.
    fn encode_rows_with(
        w: u32,
        h: u32,
        depth: u8,
        px: &[u16],
        filters: &[u8],
        idat_len: usize,
        zlib: Zlib,
    ) -> Vec<u8> {
        let bpp = usize::from(depth / 8);
        let stride = w as usize * bpp;
        let mut prev = vec![0u8; stride];
        let mut raw = Vec::new();
        for (y, row) in px.chunks_exact(w as usize).enumerate() {
            let bytes: Vec<u8> = if depth == 16 {
                row.iter().flat_map(|v| v.to_be_bytes()).collect()
            } else {
                row.iter().map(|&v| v as u8).collect()
            };
            let f = filters[y % filters.len()];
            raw.push(f);
            raw.extend(filter_row(f, bpp, &bytes, &prev));
            prev = bytes;
        }
        let z = zlib(&raw);
        let mut out = SIGNATURE.to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[depth, 0, 0, 0, 0]);
        chunk(&mut out, b"IHDR", &ihdr);
        for part in z.chunks(idat_len.max(1)) {
            chunk(&mut out, b"IDAT", part);
        }
        chunk(&mut out, b"IEND", &[]);
        out
    }

    fn straightforward(png: &[u8], depth: u8, f: u32, c: Option<u32>) -> Plane {
        let d = downsample(&decode_full(png, &spec(depth)).unwrap(), f);
        match c {
            Some(c) => center_crop(&d, c),
            None => d,
        }
    }

    #[test]
    fn a_different_filter_on_every_row() {
        for depth in [16u8, 8] {
            let max = if depth == 16 { 65535 } else { 255 };
            for (w, h, f, c, filters) in [
                (64u32, 64u32, 2u32, Some(16u32), &[0u8, 1, 2, 3, 4][..]),
                (67, 61, 2, Some(20), &[4, 3, 2, 1, 0, 4, 4, 1][..]),
                (2048, 40, 2, Some(16), &[1, 4, 2, 3, 0][..]),
                (33, 35, 3, None, &[3, 4][..]),
                (40, 40, 1, Some(17), &[2, 0, 4][..]),
                (16, 16, 2, Some(8), &[4][..]),
            ] {
                let px = pixels(w, h, w + h, max);
                for idat_len in [1usize, 7, 1 << 20] {
                    let png = encode_rows(w, h, depth, &px, filters, idat_len);
                    assert_eq!(decode_full(&png, &spec(depth)).unwrap().data, px);
                    let expect = straightforward(&png, depth, f, c);
                    let fast = decode_transformed(&png, &spec(depth), f, c).unwrap();
                    assert_eq!(
                        fast, expect,
                        "depth {depth} {w}x{h} f{f} c{c:?} idat {idat_len}"
                    );
                    let rows = decode_transformed_rows(&png, &spec(depth), f, c).unwrap();
                    assert_eq!(rows, expect);
                }
            }
        }
    }

    #[test]
    fn stored_zlib_round_trips() {
        let raw: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for (len, block) in [
            (0, 10),
            (1, 1),
            (65_535, 65_535),
            (65_536, 65_535),
            (200_000, 4_097),
        ] {
            let z = cellshard_synth::zlib_stored(&raw[..len], block);
            assert_eq!(
                fdeflate::decompress_to_vec(&z).unwrap(),
                &raw[..len],
                "{len} {block}"
            );
        }
    }

    /// Stored blocks are the case where the bulk inflate stops furthest before the end of
    /// its buffer (it will not start a block that does not fit): the rows the crop needs
    /// must still all be there, wherever the block boundaries fall.
    #[test]
    fn stored_deflate_blocks() {
        let (w, h) = (2048u32, 48u32);
        let px = pixels(w, h, 3, 65535);
        let zlibs: [Zlib; 3] = [
            |r| cellshard_synth::zlib_stored(r, 65_535),
            |r| cellshard_synth::zlib_stored(r, 40_000),
            |r| cellshard_synth::zlib_stored(r, 4_097),
        ];
        for zlib in zlibs {
            let png = encode_rows_with(w, h, 16, &px, &[4, 1], 1 << 20, zlib);
            assert_eq!(decode_full(&png, &spec(16)).unwrap().data, px);
            for c in [Some(8), Some(20), None] {
                let expect = straightforward(&png, 16, 2, c);
                assert_eq!(decode_transformed(&png, &spec(16), 2, c).unwrap(), expect);
            }
        }
    }

    #[test]
    fn interlaced_falls_back() {
        let (w, h) = (37u32, 29u32);
        let px = pixels(w, h, 5, 65535);
        // Adam7 by hand, filter type 0 in every pass.
        let mut raw = Vec::new();
        for (x0, y0, dx, dy) in [
            (0, 0, 8, 8),
            (4, 0, 8, 8),
            (0, 4, 4, 8),
            (2, 0, 4, 4),
            (0, 2, 2, 4),
            (1, 0, 2, 2),
            (0, 1, 1, 2),
        ] {
            if x0 >= w {
                continue;
            }
            for y in (y0..h).step_by(dy) {
                raw.push(0u8);
                for x in (x0..w).step_by(dx) {
                    raw.extend_from_slice(&px[(y * w + x) as usize].to_be_bytes());
                }
            }
        }
        let mut png = SIGNATURE.to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[16, 0, 0, 0, 1]);
        chunk(&mut png, b"IHDR", &ihdr);
        chunk(&mut png, b"IDAT", &fdeflate::compress_to_vec(&raw));
        chunk(&mut png, b"IEND", &[]);
        assert_eq!(decode_full(&png, &spec(16)).unwrap().data, px);
        let expect = straightforward(&png, 16, 2, Some(8));
        assert_eq!(
            decode_transformed(&png, &spec(16), 2, Some(8)).unwrap(),
            expect
        );
    }

    #[test]
    fn short_or_corrupt_streams_are_rejected() {
        let (w, h) = (32u32, 32u32);
        let px = pixels(w, h, 9, 65535);
        // A complete, CRC-valid file whose image data holds only 10 of 32 rows.
        let short = encode_rows(w, 10, 16, &px[..(w * 10) as usize], &[4], 1 << 20);
        let mut lying = short.clone();
        // Claim 32 rows in IHDR (and fix its CRC).
        lying[16 + 4..16 + 8].copy_from_slice(&h.to_be_bytes());
        let crc = crc32fast::hash(&lying[12..12 + 17]);
        lying[29..33].copy_from_slice(&crc.to_be_bytes());
        let e = decode_transformed(&lying, &spec(16), 2, Some(8)).unwrap_err();
        assert!(e.message.contains("truncated"), "{e}");
        assert_eq!(e.kind, DecodeErrorKind::Corrupt);
        // A zlib stream cut short, inside CRC-valid chunks.
        let full = encode_rows(w, h, 16, &px, &[4], 1 << 20);
        let z_start = 8 + 25 + 8;
        let z_len = u32::from_be_bytes(full[33..37].try_into().unwrap()) as usize;
        let mut cut = full[..33].to_vec();
        chunk(&mut cut, b"IDAT", &full[z_start..z_start + z_len / 3]);
        chunk(&mut cut, b"IEND", &[]);
        let e = decode_transformed(&cut, &spec(16), 2, Some(8)).unwrap_err();
        assert!(e.message.contains("truncated"), "{e}");
        // Garbage in place of the stream.
        let mut junk = full[..33].to_vec();
        chunk(
            &mut junk,
            b"IDAT",
            &[0x78, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff],
        );
        chunk(&mut junk, b"IEND", &[]);
        let e = decode_transformed(&junk, &spec(16), 2, Some(8)).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::Corrupt, "{e}");
        // An unknown filter type.
        let bad = encode_rows(w, h, 16, &px, &[4, 7], 1 << 20);
        let e = decode_transformed(&bad, &spec(16), 2, Some(8)).unwrap_err();
        assert!(e.message.contains("filter type 7"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn fast_path_equals_straightforward(
            w in 1u32..80,
            h in 1u32..40,
            depth in proptest::prop_oneof![proptest::prelude::Just(8u8), proptest::prelude::Just(16u8)],
            f in 1u32..=3,
            crop_frac in 0u32..=4,
            seed in 0u32..1000,
            filters in proptest::collection::vec(0u8..5, 1..6),
            idat_len in 1usize..300,
        ) {
            proptest::prop_assume!(w >= f && h >= f);
            let (dw, dh) = (w / f, h / f);
            let c = (crop_frac > 0).then(|| (dw.min(dh) * crop_frac / 4).max(1));
            let max = if depth == 16 { 65535 } else { 255 };
            let px = pixels(w, h, seed, max);
            let png = encode_rows(w, h, depth, &px, &filters, idat_len);
            let expect = straightforward(&png, depth, f, c);
            let fast = decode_transformed(&png, &spec(depth), f, c).unwrap();
            proptest::prop_assert_eq!(fast, expect);
        }
    }

    #[test]
    fn rejects_bad_input_with_reasons() {
        let px = pixels(16, 16, 3, 65535);
        let good = encode(16, 16, 16, &px, png::Filter::Paeth);
        let s = spec(16);
        assert!(decode_full(&[], &s).unwrap_err().message.contains("empty"));
        assert!(
            decode_full(b"GIF89a....", &s)
                .unwrap_err()
                .message
                .contains("not a PNG")
        );
        let e = decode_transformed(&good[..good.len() - 30], &s, 2, Some(4)).unwrap_err();
        assert!(e.message.contains("truncated"), "{e}");
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 20] ^= 0xff;
        assert!(
            decode_transformed(&bad, &s, 2, Some(4))
                .unwrap_err()
                .message
                .contains("CRC")
        );
        let e = decode_full(&good, &spec(8)).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::Format);
        assert!(e.message.contains("bit depth 16"), "{e}");
        let sized = DecodeSpec {
            width: Some(32),
            height: Some(32),
            ..s
        };
        assert!(
            decode_full(&good, &sized)
                .unwrap_err()
                .message
                .contains("size 16x16")
        );
        let small = DecodeSpec {
            max_pixels: 100,
            ..s
        };
        assert!(
            decode_full(&good, &small)
                .unwrap_err()
                .message
                .contains("over the limit")
        );
    }

    #[test]
    fn refuses_a_decompression_bomb_header() {
        // A valid header claiming 100000 x 100000 pixels with no data behind it.
        let mut png = SIGNATURE.to_vec();
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&[16, 0, 0, 0, 0]);
        png.extend_from_slice(&13u32.to_be_bytes());
        png.extend_from_slice(&ihdr);
        png.extend_from_slice(&crc32fast::hash(&ihdr).to_be_bytes());
        png.extend_from_slice(&0u32.to_be_bytes());
        png.extend_from_slice(b"IEND");
        png.extend_from_slice(&crc32fast::hash(b"IEND").to_be_bytes());
        let e = decode_transformed(
            &png,
            &DecodeSpec {
                bit_depth: 16,
                width: None,
                height: None,
                max_pixels: 1 << 26,
            },
            2,
            Some(512),
        )
        .unwrap_err();
        assert!(e.message.contains("100000x100000"), "{e}");
    }

    #[test]
    fn rejects_rgb() {
        let mut out = Vec::new();
        {
            let mut e = png::Encoder::new(&mut out, 4, 4);
            e.set_color(png::ColorType::Rgb);
            e.set_depth(png::BitDepth::Eight);
            e.write_header()
                .unwrap()
                .write_image_data(&[0u8; 48])
                .unwrap();
        }
        assert!(
            decode_full(&out, &spec(8))
                .unwrap_err()
                .message
                .contains("grayscale")
        );
    }
}
