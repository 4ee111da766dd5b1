//! The two references the decode ceiling is compared with. Neither is on the ingest path.
//!
//! - [`decode_transformed_rows`]: the previous fused decoder, the `png` crate's row reader
//!   downsampling as rows arrive and stopping after the last needed row.
//! - [`inflate_only`]: the crop-aware decoder's chunk walk and bulk inflate, and nothing
//!   else: no unfiltering, no downsampling. No decoder that checks the file as this one
//!   does and inflates with libdeflate can be faster.

use std::cell::RefCell;
use std::io::Cursor;

use anyhow::{Result, anyhow, bail};
use cellshard_stages::Plane;
use cellshard_stages::crop::center_crop;
use cellshard_stages::downsample::{downsample, mean_round_half_even};
use cellshard_stages::png::{BulkInflater, CropGeometry, DecodeSpec, PngChunks, decode_full};

/// The previous fused path: the `png` crate's row reader, downsampling as rows arrive and
/// stopping after the last needed row. The file is walked and its header checked first, as
/// the library's decoders do. Interlaced images take the straightforward path.
pub fn decode_transformed_rows(
    bytes: &[u8],
    spec: &DecodeSpec,
    factor: u32,
    crop: Option<u32>,
) -> Result<Plane> {
    let png = PngChunks::read(bytes)?;
    png.header.check(spec)?;
    let g = CropGeometry::new(&png.header, factor, crop)?;
    if png.header.interlaced {
        let d = downsample(&decode_full(bytes, spec)?, factor);
        return Ok(match crop {
            Some(c) => center_crop(&d, c),
            None => d,
        });
    }
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info()?;
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
        let row = reader
            .next_row()?
            .ok_or_else(|| anyhow!("truncated: image data ends before row {y}"))?;
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

thread_local! {
    /// Per thread, as the decoder's: the IDAT scratch buffer and the inflater.
    static INFLATER: RefCell<(Vec<u8>, BulkInflater)> = RefCell::default();
}

/// Only the walking and inflating that `decode_transformed` does: the chunks walked (CRCs
/// included) and the header checked, the IDAT gathered and inflated with libdeflate up to
/// the last row the crop needs. Returns the bytes inflated.
pub fn inflate_only(
    bytes: &[u8],
    spec: &DecodeSpec,
    factor: u32,
    crop: Option<u32>,
) -> Result<usize> {
    let png = PngChunks::read(bytes)?;
    png.header.check(spec)?;
    if png.header.interlaced {
        bail!("interlace method 1 (Adam7); the crop-aware decoder takes non-interlaced PNGs");
    }
    let limit = CropGeometry::new(&png.header, factor, crop)?.inflated_len();
    INFLATER.with(|cell| {
        let (scratch, inflater) = &mut *cell.borrow_mut();
        match inflater.inflate(png.zlib_stream(scratch), limit) {
            Some(_) => Ok(limit),
            None => bail!("libdeflate could not inflate the {limit} bytes of rows the crop needs"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellshard_stages::png::decode_transformed;
    use cellshard_stages::png::fixtures::{encode, pixels, spec};

    #[test]
    fn rows_baseline_equals_straightforward() {
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
                    let px = pixels(w, h, u32::try_from(i).unwrap() + 7 * w, max);
                    let png = encode(w, h, depth, &px, filter);
                    let d = downsample(&decode_full(&png, &spec(depth)).unwrap(), f);
                    let expect = match c {
                        Some(c) => center_crop(&d, c),
                        None => d,
                    };
                    let rows = decode_transformed_rows(&png, &spec(depth), f, c).unwrap();
                    assert_eq!(rows, expect);
                    let fused = decode_transformed(&png, &spec(depth), f, c).unwrap();
                    assert_eq!(rows, fused);
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
        // The chunk's CRC is made to match, or the walk would refuse the file first.
        let at = png.windows(4).position(|w| w == b"IDAT").unwrap() + 4;
        let mut bad = png.clone();
        bad[at + 2] = 0xff;
        let len = u32::from_be_bytes(bad[at - 8..at - 4].try_into().unwrap()) as usize;
        let crc = crc32fast::hash(&bad[at - 4..at + len]).to_be_bytes();
        bad[at + len..at + len + 4].copy_from_slice(&crc);
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
}
