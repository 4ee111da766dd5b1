//! Per-stage throughput on one realistic raw channel (2048 x 2048, 16-bit, rendered by
//! `cellshard-synth` and encoded zlib-level-6-like), in bytes of the stage's input.
//!
//! `cargo bench -p cellshard-stages` measures; `cargo test --all-targets` runs each
//! benchmark once as a smoke test. The end-to-end figures come from `cellshard-bench ingest`.
#![allow(missing_docs, clippy::unwrap_used)] // A bench harness; panics are failures.

use cellshard_core::{NormalizeMethod, OutputDtype};
use cellshard_stages::crop::center_crop;
use cellshard_stages::downsample::downsample;
use cellshard_stages::png::{PngChunks, decode_full, decode_transformed, unfilter};
use cellshard_stages::tensor::stack;
use cellshard_stages::{ChannelNorm, DecodeSpec, Histogram, PlateNorm};
use cellshard_synth::{SynthCompression, SynthConfig};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const SIDE: u32 = 2048;

fn channel_pixels() -> Vec<u16> {
    let cfg = SynthConfig {
        size: SIDE,
        compression: SynthCompression::Default,
        ..Default::default()
    };
    let site = cellshard_core::metadata::SiteMetadata {
        cell_type: "HUVEC".into(),
        dataset: Some("train".into()),
        experiment: "HUVEC-01".into(),
        plate: 1,
        well: "B03".into(),
        site: Some(1),
        well_type: "treatment".into(),
        sirna_id: Some(607),
        extra: Vec::new(),
    };
    cellshard_synth::render_channel(&cfg, &site, 1)
}

fn channel_png() -> Vec<u8> {
    let cfg = SynthConfig {
        size: SIDE,
        compression: SynthCompression::Default,
        ..Default::default()
    };
    cellshard_synth::encode_png(&cfg, &channel_pixels()).unwrap()
}

/// The same pixels as a TIFF, in 16-row strips (as microscopes write them).
fn channel_tiff(compression: tiff::encoder::Compression, predict: bool) -> Vec<u8> {
    use tiff::encoder::{TiffEncoder, colortype::Gray16};
    let px = channel_pixels();
    let mut out = std::io::Cursor::new(Vec::new());
    let mut e = TiffEncoder::new(&mut out)
        .unwrap()
        .with_compression(compression);
    if predict {
        e = e.with_predictor(tiff::tags::Predictor::Horizontal);
    }
    e.write_image::<Gray16>(SIDE, SIDE, &px).unwrap();
    out.into_inner()
}

/// TIFF against PNG on the same pixels, per pixel decoded and transformed (one core).
fn tiff_vs_png(c: &mut Criterion) {
    use cellshard_core::ImageFormat;
    use cellshard_stages::image;
    use tiff::encoder::{Compression, DeflateLevel};
    let s = spec();
    let files = [
        ("png", channel_png()),
        ("tiff_none", channel_tiff(Compression::Uncompressed, false)),
        ("tiff_lzw_predictor", channel_tiff(Compression::Lzw, true)),
        (
            "tiff_deflate_predictor",
            channel_tiff(Compression::Deflate(DeflateLevel::Balanced), true),
        ),
        ("tiff_packbits", channel_tiff(Compression::Packbits, false)),
    ];
    let mut g = c.benchmark_group("tiff_vs_png");
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::from(SIDE) * u64::from(SIDE)));
    for (name, bytes) in &files {
        g.bench_function(BenchmarkId::new("decode_transformed", name), |b| {
            b.iter(|| {
                image::decode_transformed(
                    black_box(bytes),
                    name,
                    ImageFormat::Auto,
                    &s,
                    2,
                    Some(512),
                )
                .unwrap()
            })
        });
    }
    g.finish();
}

fn spec() -> DecodeSpec {
    DecodeSpec {
        bit_depth: 16,
        width: Some(SIDE),
        height: Some(SIDE),
        max_pixels: 1 << 26,
    }
}

fn decode(c: &mut Criterion) {
    let png = channel_png();
    let s = spec();
    let mut g = c.benchmark_group("decode");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(png.len() as u64));
    g.bench_function("walk_chunks", |b| {
        b.iter(|| PngChunks::read(black_box(&png)).unwrap().header)
    });
    g.bench_function("crop_aware", |b| {
        b.iter(|| decode_transformed(black_box(&png), &s, 2, Some(512)).unwrap())
    });
    g.bench_function("full_then_downsample_then_crop", |b| {
        b.iter(|| {
            let full = decode_full(black_box(&png), &s).unwrap();
            center_crop(&downsample(&full, 2), 512)
        })
    });
    g.finish();
}

fn unfilter_rows(c: &mut Criterion) {
    // The bytes one 2048-wide 16-bit row needs for a 512 crop after 2x: columns 0..1536.
    let n = 1536 * 2;
    let raw: Vec<u8> = (0..n).map(|i| u8::try_from(i * 7 % 251).unwrap()).collect();
    let prev: Vec<u8> = (0..n)
        .map(|i| u8::try_from(i * 13 % 241).unwrap())
        .collect();
    let mut cur = vec![0u8; n];
    let mut g = c.benchmark_group("unfilter");
    g.throughput(Throughput::Bytes(n as u64));
    for (name, f) in [
        ("none", 0u8),
        ("sub", 1),
        ("up", 2),
        ("avg", 3),
        ("paeth", 4),
    ] {
        g.bench_with_input(BenchmarkId::from_parameter(name), &f, |b, &f| {
            b.iter(|| unfilter(f, 2, black_box(&raw), &prev, &mut cur).unwrap())
        });
    }
    g.finish();
}

fn plate_math(c: &mut Criterion) {
    let png = channel_png();
    let plane = decode_transformed(&png, &spec(), 2, Some(512)).unwrap();
    let planes = vec![plane.clone(); 6];
    let mut h = Histogram::new();
    h.add(&plane.data);
    let norm = ChannelNorm::from_histogram(NormalizeMethod::Percentile, 0.1, 99.9, &h).unwrap();
    let plate = PlateNorm::new(vec![norm; 6], OutputDtype::U8);
    let site_bytes = 6 * plane.data.len() as u64 * 2;
    let mut g = c.benchmark_group("plate");
    g.throughput(Throughput::Bytes(site_bytes));
    g.bench_function("histograms_6ch", |b| {
        b.iter(|| {
            let mut h = Histogram::new();
            for p in &planes {
                h.add(black_box(&p.data));
            }
            h
        })
    });
    g.bench_function("normalize_stack_6ch", |b| {
        b.iter(|| stack(black_box(&planes), &plate))
    });
    // Image QC of a site at ingest (focus, saturation, foreground per channel, nuclei in
    // the DNA channel), against the per-site cost of the pipeline.
    g.bench_function("qc_6ch", |b| {
        b.iter(|| cellshard_stages::qc::site_qc(black_box(&planes), 16, 0))
    });
    let tensor = stack(&planes, &plate).bytes;
    g.throughput(Throughput::Bytes(tensor.len() as u64));
    for level in [1, 3] {
        g.bench_with_input(BenchmarkId::new("zstd_tensor", level), &level, |b, &l| {
            b.iter(|| zstd::bulk::compress(black_box(&tensor), l).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, decode, unfilter_rows, plate_math, tiff_vs_png);
criterion_main!(benches);
