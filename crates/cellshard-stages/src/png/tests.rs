//! The decoders through their entry points: each against the straightforward
//! `center_crop(downsample(decode_full(..)))` and the pixels the file was written from, and
//! every kind of bad input rejected with a reason.

use super::chunks::SIGNATURE;
use super::fixtures::{Zlib, chunk, encode, encode_rows, encode_rows_with, pixels, spec};
use super::*;
use crate::crop::center_crop;
use crate::downsample::downsample;

fn straightforward(png: &[u8], depth: u8, f: u32, c: Option<u32>) -> Plane {
    let d = downsample(&decode_full(png, &spec(depth)).unwrap(), f);
    match c {
        Some(c) => center_crop(&d, c),
        None => d,
    }
}

#[test]
fn fused_equals_straightforward() {
    let filters = [
        ::png::Filter::NoFilter,
        ::png::Filter::Sub,
        ::png::Filter::Up,
        ::png::Filter::Avg,
        ::png::Filter::Paeth,
        ::png::Filter::Adaptive,
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
            }
        }
    }
}

#[test]
#[allow(
    clippy::cast_possible_truncation,
    reason = "keeps the low byte: a pseudo-random byte pattern"
)]
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
    let good = encode(16, 16, 16, &px, ::png::Filter::Paeth);
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
        let mut e = ::png::Encoder::new(&mut out, 4, 4);
        e.set_color(::png::ColorType::Rgb);
        e.set_depth(::png::BitDepth::Eight);
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
