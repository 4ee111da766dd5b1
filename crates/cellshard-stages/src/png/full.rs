//! Full decode: every pixel of a grayscale PNG, interlaced or not.
//!
//! A non-interlaced image is the crop-aware decoder's identity geometry (factor 1, no
//! crop), so both decoders share one inflate and one unfilter. An interlaced (Adam7) image
//! arrives as seven reduced images, each filtered on its own; it is inflated whole,
//! unfiltered pass by pass and scattered into place. The output is the same `Plane` either
//! way: the tests compare it with the pixels the file was written from and with the `png`
//! crate's decoder.

use super::chunks::PngChunks;
use super::crop::{CropGeometry, with_thread_decoder};
use super::error::DecodeError;
use super::unfilter::unfilter;
use crate::Plane;

/// The Adam7 passes: first column, first row, column step, row step.
const ADAM7: [(usize, usize, usize, usize); 7] = [
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
];

/// Decode every pixel of `png`, whose header the caller has checked (grayscale, 8 or 16
/// bits, within the pixel limit).
pub(crate) fn decode(png: &PngChunks<'_>) -> Result<Plane, DecodeError> {
    if png.header.interlaced {
        return deinterlace(png);
    }
    let g = CropGeometry::new(&png.header, 1, None)?;
    with_thread_decoder(|d| d.decode(png, &g))
}

/// Width and height of an Adam7 pass over a `w` x `h` image (zero when the pass is empty).
fn pass_size(w: usize, h: usize, (x0, y0, dx, dy): (usize, usize, usize, usize)) -> (usize, usize) {
    let n = |len: usize, start: usize, step: usize| len.saturating_sub(start).div_ceil(step);
    (n(w, x0, dx), n(h, y0, dy))
}

/// Decode an interlaced image: inflate every pass, unfilter each pass's rows against the
/// pass's previous row, and put each sample at its place in the full image.
fn deinterlace(png: &PngChunks<'_>) -> Result<Plane, DecodeError> {
    let header = png.header;
    let (w, h) = (header.width as usize, header.height as usize);
    let bpp = usize::from(header.bit_depth / 8);
    let total: usize = ADAM7
        .iter()
        .map(|&pass| match pass_size(w, h, pass) {
            (0, _) | (_, 0) => 0,
            (pw, ph) => ph * (1 + pw * bpp),
        })
        .sum();
    let mut idat = Vec::new();
    let raw = inflate_exact(png.zlib_stream(&mut idat), total)?;
    let mut data = vec![0u16; w * h];
    let (mut prev, mut cur) = (Vec::new(), Vec::new());
    let mut pos = 0;
    for pass in ADAM7 {
        let (pw, ph) = pass_size(w, h, pass);
        if pw == 0 || ph == 0 {
            continue;
        }
        let (x0, y0, dx, dy) = pass;
        let stride = pw * bpp;
        for v in [&mut prev, &mut cur] {
            v.clear();
            v.resize(stride, 0);
        }
        for py in 0..ph {
            let y = y0 + py * dy;
            let row = &raw[pos..pos + 1 + stride];
            pos += 1 + stride;
            unfilter(row[0], bpp, &row[1..], &prev, &mut cur)
                .map_err(|kind| DecodeError::bad_filter(kind, y))?;
            let out = data[y * w..(y + 1) * w].iter_mut().skip(x0).step_by(dx);
            if bpp == 2 {
                for (o, b) in out.zip(cur.chunks_exact(2)) {
                    *o = u16::from_be_bytes([b[0], b[1]]);
                }
            } else {
                for (o, &b) in out.zip(&cur) {
                    *o = u16::from(b);
                }
            }
            std::mem::swap(&mut prev, &mut cur);
        }
    }
    Ok(Plane::new(header.width, header.height, data))
}

/// Inflate exactly `len` bytes from the start of the zlib `stream`.
fn inflate_exact(stream: &[u8], len: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = vec![0u8; len];
    let mut inflater = fdeflate::Decompressor::new();
    inflater.ignore_adler32();
    let (mut in_pos, mut out_pos) = (0, 0);
    let short = |at: usize| {
        DecodeError::corrupt(format!(
            "truncated: interlaced image data ends after {at} of {len} bytes"
        ))
    };
    while out_pos < len {
        if inflater.is_done() {
            return Err(short(out_pos));
        }
        let (consumed, produced) = inflater
            .read(&stream[in_pos..], &mut out, out_pos, true)
            .map_err(|e| match e {
                fdeflate::DecompressionError::InsufficientInput => short(out_pos),
                e => DecodeError::corrupt(format!("invalid PNG: corrupt deflate stream: {e:?}")),
            })?;
        in_pos += consumed;
        out_pos += produced;
        if consumed == 0 && produced == 0 {
            return Err(short(out_pos));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::png::chunks::SIGNATURE;
    use crate::png::fixtures::{chunk, encode, filter_row, pixels, spec};
    use crate::png::{DecodeErrorKind, decode_full};

    /// The `png` crate's decoder, as an independent reference.
    fn reference(png: &[u8]) -> Vec<u16> {
        let mut reader = ::png::Decoder::new(std::io::Cursor::new(png))
            .read_info()
            .unwrap();
        let mut buf = vec![0u8; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let buf = &buf[..info.buffer_size()];
        match info.bit_depth {
            ::png::BitDepth::Sixteen => buf
                .chunks_exact(2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .collect(),
            _ => buf.iter().map(|&b| u16::from(b)).collect(),
        }
    }

    /// An Adam7 PNG written by hand: row `r` (counted over all passes) has filter
    /// `filters[r % len]`, and the zlib stream is cut into IDAT chunks of `idat_len` bytes.
    #[allow(
        clippy::cast_possible_truncation,
        reason = "an 8-bit image keeps each sample's low byte"
    )]
    fn adam7(w: u32, h: u32, depth: u8, px: &[u16], filters: &[u8], idat_len: usize) -> Vec<u8> {
        let bpp = usize::from(depth / 8);
        let mut raw = Vec::new();
        let mut r = 0;
        for pass in ADAM7 {
            let (pw, ph) = pass_size(w as usize, h as usize, pass);
            if pw == 0 || ph == 0 {
                continue;
            }
            let (x0, y0, dx, dy) = pass;
            let mut prev = vec![0u8; pw * bpp];
            for py in 0..ph {
                let y = y0 + py * dy;
                let row: Vec<u8> = (0..pw)
                    .flat_map(|i| {
                        let v = px[y * w as usize + x0 + i * dx];
                        if depth == 16 {
                            v.to_be_bytes().to_vec()
                        } else {
                            vec![v as u8]
                        }
                    })
                    .collect();
                let f = filters[r % filters.len()];
                r += 1;
                raw.push(f);
                raw.extend(filter_row(f, bpp, &row, &prev));
                prev = row;
            }
        }
        let mut png = SIGNATURE.to_vec();
        let mut ihdr = w.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[depth, 0, 0, 0, 1]);
        chunk(&mut png, b"IHDR", &ihdr);
        for part in fdeflate::compress_to_vec(&raw).chunks(idat_len) {
            chunk(&mut png, b"IDAT", part);
        }
        chunk(&mut png, b"IEND", &[]);
        png
    }

    #[test]
    fn non_interlaced_matches_the_png_crate() {
        for depth in [8u8, 16] {
            let max = if depth == 16 { 65535 } else { 255 };
            for (w, h) in [(1u32, 1u32), (3, 70), (129, 5), (64, 64)] {
                let px = pixels(w, h, w * h, max);
                let png = encode(w, h, depth, &px, ::png::Filter::Adaptive);
                let full = decode_full(&png, &spec(depth)).unwrap();
                assert_eq!((full.width, full.height), (w, h));
                assert_eq!(full.data, reference(&png));
                assert_eq!(full.data, px);
            }
        }
    }

    #[test]
    fn a_short_interlaced_stream_is_truncated() {
        let px = pixels(20, 20, 1, 65535);
        let png = adam7(20, 20, 16, &px, &[4], 1 << 20);
        let c = PngChunks::read(&png).unwrap();
        let mut short = png[..33].to_vec();
        chunk(&mut short, b"IDAT", &c.idat()[0][..c.idat()[0].len() / 2]);
        chunk(&mut short, b"IEND", &[]);
        let e = decode_full(&short, &spec(16)).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::Corrupt);
        assert!(e.message.contains("truncated"), "{e}");
        let bad = adam7(20, 20, 16, &px, &[4, 6], 1 << 20);
        let e = decode_full(&bad, &spec(16)).unwrap_err();
        assert!(e.message.contains("unknown filter type 6"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn interlaced_matches_the_pixels_and_the_png_crate(
            w in 1u32..40,
            h in 1u32..40,
            depth in proptest::prop_oneof![proptest::prelude::Just(8u8), proptest::prelude::Just(16u8)],
            seed in 0u32..1000,
            filters in proptest::collection::vec(0u8..5, 1..6),
            idat_len in 1usize..300,
        ) {
            let max = if depth == 16 { 65535 } else { 255 };
            let px = pixels(w, h, seed, max);
            let png = adam7(w, h, depth, &px, &filters, idat_len);
            let full = decode_full(&png, &spec(depth)).unwrap();
            proptest::prop_assert_eq!(&full.data, &px);
            proptest::prop_assert_eq!(full.data, reference(&png));
        }
    }
}
