//! TIFF decoding to u16 samples, with the PNG path's guards: grayscale 8- or 16-bit,
//! uncompressed, LZW, Deflate or PackBits (with or without a horizontal predictor), in
//! strips or tiles, as microscopes (Phenix, ImageXpress, CellVoyager) write them. The first
//! image of the file is read. The header is checked against the [`DecodeSpec`] before any
//! pixel buffer is allocated, and the decoder's own limits hold every buffer to the
//! pixels the spec allows.

use std::io::Cursor;

use tiff::ColorType;
use tiff::decoder::{ChunkType, Decoder, DecodingResult, Limits};
use tiff::tags::{ByteOrder, Tag};

use crate::Plane;
use crate::png::{DecodeError, DecodeSpec};

/// The first bytes of a TIFF (little- or big-endian; classic or BigTIFF).
pub fn is_tiff(bytes: &[u8]) -> bool {
    matches!(
        bytes.get(..4),
        Some([b'I', b'I', 42, 0] | [b'M', b'M', 0, 42] | [b'I', b'I', 43, 0] | [b'M', b'M', 0, 43])
    )
}

fn corrupt(e: impl std::fmt::Display) -> DecodeError {
    DecodeError::corrupt(format!("invalid TIFF: {e}"))
}

/// Decode every pixel of the first image.
pub fn decode_full(bytes: &[u8], spec: &DecodeSpec) -> Result<Plane, DecodeError> {
    if !is_tiff(bytes) {
        return Err(DecodeError::corrupt(
            "not a TIFF file (no II*\\0 or MM\\0* signature)",
        ));
    }
    // Bytes of the largest image the spec allows, at two bytes a sample.
    let most = usize::try_from(spec.max_pixels.saturating_mul(2)).unwrap_or(usize::MAX);
    let mut limits = Limits::default();
    limits.decoding_buffer_size = most;
    limits.intermediate_buffer_size = most;
    let mut d = Decoder::new(Cursor::new(bytes))
        .map_err(corrupt)?
        .with_limits(limits);
    let (width, height) = d.dimensions().map_err(corrupt)?;
    spec.check_pixels(width, height)?;
    let depth = match d.colortype().map_err(corrupt)? {
        ColorType::Gray(b) => b,
        other => {
            return Err(DecodeError::format(format!(
                "TIFF of {other:?} samples: only single-channel grayscale is accepted"
            )));
        }
    };
    spec.check_depth_and_size(width, height, depth)?;
    if d.find_tag_unsigned::<u16>(Tag::Compression)
        .map_err(corrupt)?
        == Some(LZW)
    {
        let data = lzw_image(&mut d, bytes, width, height, depth)?;
        return Ok(Plane::new(width, height, data));
    }
    let data = match d.read_image().map_err(corrupt)? {
        DecodingResult::U16(v) => v,
        DecodingResult::U8(v) => v.into_iter().map(u16::from).collect(),
        _ => {
            return Err(DecodeError::format(
                "TIFF samples are not unsigned integers (floating point or signed)",
            ));
        }
    };
    let want = usize::try_from(u64::from(width) * u64::from(height)).unwrap_or(usize::MAX);
    if data.len() != want {
        return Err(corrupt(format!(
            "{} samples for a {width}x{height} image",
            data.len()
        )));
    }
    Ok(Plane::new(width, height, data))
}

/// TIFF's compression code for LZW.
const LZW: u16 = 5;

/// An LZW image, chunk by chunk. The `tiff` crate requires every chunk's end code and
/// reads it at the width the dictionary has after the last data code, one bit narrower
/// than libtiff (and tifffile) write it when the dictionary fills a width exactly at the
/// end; a chunk is complete once its pixels are out, so here the end code is not needed.
fn lzw_image(
    d: &mut Decoder<Cursor<&[u8]>>,
    bytes: &[u8],
    width: u32,
    height: u32,
    depth: u8,
) -> Result<Vec<u16>, DecodeError> {
    let tiles = d.get_chunk_type() == ChunkType::Tile;
    let (offsets, counts) = if tiles {
        (Tag::TileOffsets, Tag::TileByteCounts)
    } else {
        (Tag::StripOffsets, Tag::StripByteCounts)
    };
    let list = |d: &mut Decoder<Cursor<&[u8]>>, tag| {
        d.find_tag_unsigned_vec::<u64>(tag)
            .map_err(corrupt)?
            .ok_or_else(|| corrupt(format!("no {tag:?}")))
    };
    let (offsets, counts) = (list(d, offsets)?, list(d, counts)?);
    let predictor = d
        .find_tag_unsigned::<u16>(Tag::Predictor)
        .map_err(corrupt)?
        .unwrap_or(1);
    if !matches!(predictor, 1 | 2) {
        return Err(DecodeError::format(format!(
            "TIFF predictor {predictor}: only none (1) and horizontal (2) are read"
        )));
    }
    let big_endian = d.byte_order() == ByteOrder::BigEndian;
    let (cw, ch) = d.chunk_dimensions();
    let (cw, ch) = (
        usize::try_from(cw).unwrap_or(0),
        usize::try_from(ch).unwrap_or(0),
    );
    let (w, h) = (
        usize::try_from(width).unwrap_or(0),
        usize::try_from(height).unwrap_or(0),
    );
    if cw == 0 || ch == 0 || offsets.len() != counts.len() {
        return Err(corrupt("bad chunk layout"));
    }
    let across = if tiles { w.div_ceil(cw) } else { 1 };
    let down = h.div_ceil(ch);
    if offsets.len() < across * down {
        return Err(corrupt(format!(
            "{} chunks for a {width}x{height} image of {cw}x{ch} chunks",
            offsets.len()
        )));
    }
    let bps = usize::from(depth / 8);
    let mut out = vec![0u16; w * h];
    let mut chunk = Vec::new();
    for (i, (&off, &n)) in offsets.iter().zip(&counts).take(across * down).enumerate() {
        let (tx, ty) = (i % across, i / across);
        // A strip at the bottom holds only the rows left; a tile is always whole.
        let rows = if tiles { ch } else { ch.min(h - ty * ch) };
        let start = usize::try_from(off).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(n).unwrap_or(usize::MAX));
        let data = bytes
            .get(start..end)
            .ok_or_else(|| corrupt(format!("chunk {i} lies outside the file")))?;
        chunk.clear();
        chunk.resize(cw * rows * bps, 0);
        let mut lzw = weezl::decode::Configuration::with_tiff_size_switch(weezl::BitOrder::Msb, 8)
            .with_yield_on_full_buffer(true)
            .build();
        let (mut read, mut written) = (0, 0);
        while written < chunk.len() {
            let r = lzw.decode_bytes(&data[read..], &mut chunk[written..]);
            read += r.consumed_in;
            written += r.consumed_out;
            match r.status {
                Ok(weezl::LzwStatus::Ok) if r.consumed_in + r.consumed_out > 0 => {}
                Ok(_) if written < chunk.len() => {
                    return Err(corrupt(format!(
                        "LZW chunk {i} ends after {written} of {} bytes",
                        chunk.len()
                    )));
                }
                Ok(_) => {}
                Err(e) => return Err(corrupt(format!("LZW chunk {i}: {e}"))),
            }
        }
        for (r, row) in chunk.chunks_exact(cw * bps).enumerate() {
            let y = ty * ch + r;
            if y >= h {
                break;
            }
            let mut samples: Vec<u16> = if bps == 1 {
                row.iter().map(|&b| u16::from(b)).collect()
            } else if big_endian {
                row.chunks_exact(2)
                    .map(|b| u16::from_be_bytes([b[0], b[1]]))
                    .collect()
            } else {
                row.chunks_exact(2)
                    .map(|b| u16::from_le_bytes([b[0], b[1]]))
                    .collect()
            };
            if predictor == 2 {
                let mask = if bps == 1 { 0xff } else { 0xffff };
                for x in 1..samples.len() {
                    samples[x] = samples[x].wrapping_add(samples[x - 1]) & mask;
                }
            }
            let x0 = tx * cw;
            let n = cw.min(w - x0);
            out[y * w + x0..y * w + x0 + n].copy_from_slice(&samples[..n]);
        }
    }
    Ok(out)
}

/// Decode, downsample by `factor` and center-crop to `crop`: equal to
/// `center_crop(downsample(decode_full(..)))`.
pub fn decode_transformed(
    bytes: &[u8],
    spec: &DecodeSpec,
    factor: u32,
    crop: Option<u32>,
) -> Result<Plane, DecodeError> {
    let full = decode_full(bytes, spec)?;
    if let Some(c) = crop {
        let (w, h) = (full.width / factor.max(1), full.height / factor.max(1));
        if c > w || c > h {
            return Err(DecodeError::format(format!(
                "a {}x{} TIFF downsampled {factor}x is {w}x{h}, smaller than the {c}x{c} crop",
                full.width, full.height
            )));
        }
    }
    Ok(crate::crop::downsample_then_crop(full, factor, crop))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DecodeSpec {
        DecodeSpec {
            bit_depth: 16,
            width: None,
            height: None,
            max_pixels: 1 << 16,
        }
    }

    #[test]
    fn signatures_and_non_tiffs() {
        assert!(is_tiff(b"II*\0....") && is_tiff(b"MM\0*....") && is_tiff(b"II+\0...."));
        assert!(!is_tiff(b"\x89PNG") && !is_tiff(b"II"));
        let e = decode_full(b"\x89PNG\r\n\x1a\n", &spec()).unwrap_err();
        assert!(e.message.contains("not a TIFF"), "{e}");
    }

    proptest::proptest! {
        /// Any bytes after a TIFF signature decode or are refused, never a panic.
        #[test]
        fn any_bytes_decode_or_are_refused(
            le in proptest::bool::ANY,
            rest in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
        ) {
            let mut b: Vec<u8> = if le { b"II*\0".to_vec() } else { b"MM\0*".to_vec() };
            b.extend(rest);
            let _ = decode_full(&b, &spec());
        }
    }
}
