//! Test fixtures: PNG files written with the `png` crate's encoder, or by hand with a
//! chosen filter per row and the zlib stream split into IDAT chunks of a chosen size.
//! Built for this crate's tests and, with the `fixtures` feature, for other crates' tests.
#![allow(clippy::unwrap_used)] // Fixtures fail loudly on purpose.

use super::chunks::DecodeSpec;
use super::chunks::SIGNATURE;

/// Encode a grayscale PNG; `filter` varies per image so every unfilter path is exercised.
#[allow(
    clippy::cast_possible_truncation,
    reason = "an 8-bit image keeps each sample's low byte"
)]
pub fn encode(w: u32, h: u32, depth: u8, px: &[u16], filter: ::png::Filter) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut e = ::png::Encoder::new(&mut out, w, h);
        e.set_color(::png::ColorType::Grayscale);
        e.set_depth(if depth == 16 {
            ::png::BitDepth::Sixteen
        } else {
            ::png::BitDepth::Eight
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

/// `w` x `h` deterministic pseudo-random samples below `max`, with a gradient.
#[allow(
    clippy::cast_possible_truncation,
    reason = "the gradient wraps at 16 bits by design"
)]
pub fn pixels(w: u32, h: u32, seed: u32, max: u16) -> Vec<u16> {
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

/// A decode spec for `depth`-bit images of any size.
pub fn spec(depth: u8) -> DecodeSpec {
    DecodeSpec {
        bit_depth: depth,
        width: None,
        height: None,
        max_pixels: 1 << 30,
    }
}

/// Apply PNG filter `f` to `row` given the previous (unfiltered) row.
pub fn filter_row(f: u8, bpp: usize, row: &[u8], prev: &[u8]) -> Vec<u8> {
    (0..row.len())
        .map(|i| {
            let a = if i >= bpp { row[i - bpp] } else { 0 };
            let b = prev[i];
            let c = if i >= bpp { prev[i - bpp] } else { 0 };
            let pred = match f {
                0 => 0,
                1 => a,
                2 => b,
                3 => u8::try_from((u16::from(a) + u16::from(b)) / 2).unwrap(),
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

/// Append the PNG chunk `kind` with `body` and its CRC to `out`.
pub fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], body: &[u8]) {
    out.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    let mut crc = kind.to_vec();
    crc.extend_from_slice(body);
    out.extend_from_slice(&crc);
    out.extend_from_slice(&crc32fast::hash(&crc).to_be_bytes());
}

/// A PNG written by hand: the filter of row `y` is `filters[y % len]`, and the zlib
/// stream is split into IDAT chunks of `idat_len` bytes.
pub fn encode_rows(
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
pub type Zlib = fn(&[u8]) -> Vec<u8>;

/// [`encode_rows`] with the zlib stream made by `zlib`.
#[allow(
    clippy::cast_possible_truncation,
    reason = "an 8-bit image keeps each sample's low byte"
)]
pub fn encode_rows_with(
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
