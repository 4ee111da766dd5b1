//! PNG decoding to u16 samples, with guards, and the crop-aware fused path.
//!
//! [`decode_full`] decodes every row. [`decode_transformed`] produces exactly
//! `center_crop(downsample(decode_full(png)))` but reads rows one by one, accumulates the
//! downsample as rows arrive, touches only the columns that feed the crop and stops
//! inflating after the last row the crop needs. Because stopping early would skip the
//! checksums of the rest of the file, every chunk's CRC and the file's completeness are
//! verified up front by [`verify_chunks`] (a cheap CRC pass), so a truncated or corrupt
//! file is rejected whichever path runs.

use std::fmt;
use std::io::Cursor;

use crate::Plane;
use crate::crop::crop_offset;
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
    fn corrupt(message: impl Into<String>) -> Self {
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

/// Open a decoder after checking the header against the spec (before allocating pixels).
fn open<'a>(
    bytes: &'a [u8],
    spec: &DecodeSpec,
) -> Result<png::Reader<Cursor<&'a [u8]>>, DecodeError> {
    verify_chunks(bytes)?;
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
    Ok(decoder.read_info()?)
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

/// Decode, downsample by `factor` and center-crop to `crop` in one pass over the rows,
/// stopping after the last needed row. Equals `center_crop(downsample(decode_full(..)))`.
pub fn decode_transformed(
    bytes: &[u8],
    spec: &DecodeSpec,
    factor: u32,
    crop: Option<u32>,
) -> Result<Plane, DecodeError> {
    let mut reader = open(bytes, spec)?;
    let (w, h) = reader.info().size();
    let (dw, dh) = (w / factor, h / factor);
    let (cw, ch, ox, oy) = match crop {
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
    if reader.info().interlaced {
        // Interlaced rows arrive in passes; take the straightforward path.
        let full = decode_full(bytes, spec)?;
        let d = crate::downsample::downsample(&full, factor);
        return Ok(match crop {
            Some(c) => crate::crop::center_crop(&d, c),
            None => d,
        });
    }
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
mod tests {
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
                }
            }
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
