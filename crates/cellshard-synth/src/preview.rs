//! Preview images of a synthetic site, for looking at (an ignored test, run by hand).

#![allow(clippy::unwrap_used)]

use cellshard_core::SiteMetadata;

use crate::{SynthConfig, encode_png, render_channel};

/// Write a site as per-channel auto-contrast 8-bit PNGs plus an RGB composite in the
/// RxRx1 viewer colours, for looking at. Run with
/// `SYNTH_PREVIEW=/tmp/preview cargo test -p cellshard-synth -- --ignored preview`.
#[test]
#[ignore]
fn preview_site() {
    let Ok(dir) = std::env::var("SYNTH_PREVIEW") else {
        return;
    };
    std::fs::create_dir_all(&dir).unwrap();
    let size: u32 = std::env::var("SYNTH_PREVIEW_SIZE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let cell_type = std::env::var("SYNTH_PREVIEW_EXPERIMENT").unwrap_or_else(|_| "HUVEC-01".into());
    let cfg = SynthConfig {
        size,
        ..SynthConfig::default()
    };
    let meta = SiteMetadata {
        cell_type: cellshard_core::metadata::cell_type_of(&cell_type),
        dataset: Some("train".into()),
        experiment: cell_type.clone(),
        plate: 1,
        well: "B02".into(),
        site: Some(1),
        well_type: "negative_control".into(),
        sirna_id: Some(1138),
        extra: vec![],
    };
    let colors: [[f32; 3]; 6] = [
        [19., 0., 249.],
        [42., 255., 31.],
        [255., 0., 25.],
        [45., 255., 252.],
        [250., 0., 253.],
        [254., 255., 40.],
    ];
    let n = (size * size) as usize;
    let mut rgb = vec![0f32; n * 3];
    for ch in 1..=6u32 {
        let img = render_channel(&cfg, &meta, ch);
        let mut sorted = img.clone();
        sorted.sort_unstable();
        let lo = f32::from(sorted[n / 100]);
        let hi = f32::from(sorted[n * 999 / 1000]);
        let scaled: Vec<u8> = img
            .iter()
            .map(|&v| ((f32::from(v) - lo) / (hi - lo) * 255.0).clamp(0.0, 255.0) as u8)
            .collect();
        let eight = SynthConfig {
            bit_depth: 8,
            ..cfg.clone()
        };
        let png = encode_png(
            &eight,
            &scaled.iter().map(|&v| u16::from(v)).collect::<Vec<_>>(),
        )
        .unwrap();
        std::fs::write(format!("{dir}/w{ch}.png"), png).unwrap();
        let c = colors[(ch - 1) as usize];
        for (i, &v) in scaled.iter().enumerate() {
            let x = f32::from(v) / 255.0;
            for k in 0..3 {
                rgb[i * 3 + k] += x * c[k];
            }
        }
    }
    let bytes: Vec<u8> = rgb.iter().map(|&v| v.clamp(0.0, 255.0) as u8).collect();
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, size, size);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()
        .unwrap()
        .write_image_data(&bytes)
        .unwrap();
    std::fs::write(format!("{dir}/composite.png"), out).unwrap();
}
