//! A JUMP-shaped plate (Cell Painting Gallery `cpg0016`, source 4): 16-bit TIFFs in a
//! Phenix's naming (`r01c01f01p01-ch1sk1fk1fl1.tiff`) under JUMP's image tree, five
//! channels whose file numbers are not their stacking order, and a `load_data.csv` that
//! says which file holds which channel. Every image is darkened towards its corners by a
//! vignetting field (`1 - v * (r / r_corner)^2`), which illumination correction must remove.

use std::sync::Arc;
use std::time::Instant;

use cellshard_core::SiteMetadata;
use cellshard_core::plate::well_name;
use object_store::path::Path;
use object_store::{ObjectStore, PutOptions, PutPayload};
use rayon::prelude::*;

use crate::{Error, Result, SynthConfig, SynthReport, render_channel};

/// The plate's barcode (its `Metadata_Plate`).
pub const JUMP_BARCODE: &str = "BR00117035";
/// The source (the store's `dataset`).
pub const JUMP_SOURCE: &str = "source_4";
/// The batch.
pub const JUMP_BATCH: &str = "2021_04_26_Batch1";
/// The plate's measurement directory below the batch's `images/`.
pub const JUMP_MEASUREMENT: &str = "BR00117035__2021-05-02T16_02_51-Measurement1";
/// The Cell Painting channels in stacking order, with the Phenix channel number of each
/// one's file (source 4: DNA is `ch5`, Mito `ch1`).
pub const JUMP_CHANNELS: [(&str, u32); 5] =
    [("DNA", 5), ("ER", 4), ("RNA", 3), ("AGP", 2), ("Mito", 1)];

/// What to write.
#[derive(Debug, Clone, PartialEq)]
pub struct JumpConfig {
    /// Wells, the first of a 384-well plate in row-major order.
    pub wells: u32,
    /// Fields per well.
    pub sites: u32,
    /// Image side, px (JUMP: 1080).
    pub size: u32,
    /// Seed.
    pub seed: u64,
    /// Vignetting strength `v`: the corners keep `1 - v` of their light.
    pub vignetting: f64,
}

impl Default for JumpConfig {
    fn default() -> Self {
        JumpConfig {
            wells: 16,
            sites: 2,
            size: 1080,
            seed: 0,
            vignetting: 0.5,
        }
    }
}

/// The vignetting field's gain at pixel (x, y) of a `size` x `size` image.
pub fn vignetting_gain(size: u32, v: f64, x: u32, y: u32) -> f64 {
    let c = (f64::from(size) - 1.0) / 2.0;
    let (dx, dy) = (f64::from(x) - c, f64::from(y) - c);
    1.0 - v * (dx * dx + dy * dy) / (2.0 * c * c).max(1.0)
}

/// The key of one file below the output prefix.
pub fn jump_key(well: &str, site: u32, file_channel: u32) -> String {
    let (r, c) = cellshard_core::plate::well_position(well).unwrap_or((0, 0));
    format!(
        "{JUMP_SOURCE}/images/{JUMP_BATCH}/images/{JUMP_MEASUREMENT}/Images/r{:02}c{:02}f{site:02}p01-ch{file_channel}sk1fk1fl1.tiff",
        r + 1,
        c + 1
    )
}

fn tiff_gray16(size: u32, samples: &[u16]) -> Result<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut enc = tiff::encoder::TiffEncoder::new(&mut out)
        .map_err(|e| Error::Task(format!("TIFF encoder: {e}")))?;
    enc.write_image::<tiff::encoder::colortype::Gray16>(size, size, samples)
        .map_err(|e| Error::Task(format!("TIFF encoder: {e}")))?;
    Ok(out.into_inner())
}

/// One site's five TIFFs, in [`JUMP_CHANNELS`] order (the synthetic stains 1..=5).
fn site_tiffs(cfg: &JumpConfig, meta: &SiteMetadata) -> Result<Vec<Vec<u8>>> {
    let synth = SynthConfig {
        size: cfg.size,
        seed: cfg.seed,
        ..SynthConfig::default()
    };
    (1..=5u32)
        .into_par_iter()
        .map(|stain| {
            let mut px = render_channel(&synth, meta, stain);
            for (i, v) in px.iter_mut().enumerate() {
                let i = u32::try_from(i).unwrap_or(0);
                let g = vignetting_gain(cfg.size, cfg.vignetting, i % cfg.size, i / cfg.size);
                // Bounded: a gain in [0, 1] times a u16.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                {
                    *v = (f64::from(*v) * g).round().clamp(0.0, 65535.0) as u16;
                }
            }
            tiff_gray16(cfg.size, &px)
        })
        .collect()
}

/// Write the plate's TIFFs and `load_data.csv` under `prefix`.
pub async fn write_jump(
    store: Arc<dyn ObjectStore>,
    prefix: &Path,
    cfg: &JumpConfig,
) -> Result<SynthReport> {
    let start = Instant::now();
    let mut report = SynthReport {
        sites: 0,
        objects: 0,
        bytes: 0,
        seconds: 0.0,
    };
    let join = |key: &str| -> Result<Path> {
        let text = if prefix.as_ref().is_empty() {
            key.to_string()
        } else {
            format!("{prefix}/{key}")
        };
        Path::parse(&text).map_err(|source| Error::Path { path: text, source })
    };
    let mut csv =
        String::from("Metadata_Source,Metadata_Batch,Metadata_Plate,Metadata_Well,Metadata_Site");
    for (name, _) in JUMP_CHANNELS {
        csv.push_str(&format!(",FileName_Orig{name},PathName_Orig{name}"));
    }
    csv.push('\n');
    let wells = cfg.wells.clamp(1, 384);
    for w in 0..wells {
        let well = well_name((w / 24) as usize, (w % 24) as usize);
        for site in 1..=cfg.sites.max(1) {
            let meta = SiteMetadata {
                cell_type: "U2OS".into(),
                dataset: Some(JUMP_SOURCE.into()),
                experiment: JUMP_BARCODE.into(),
                plate: 1,
                well: well.clone(),
                site: Some(site),
                well_type: if w % 8 == 0 {
                    "negative_control"
                } else {
                    "treatment"
                }
                .into(),
                sirna_id: Some(i32::try_from(w % 8).unwrap_or(0)),
                extra: Vec::new(),
            };
            let c = cfg.clone();
            let m = meta.clone();
            let files = tokio::task::spawn_blocking(move || site_tiffs(&c, &m))
                .await
                .map_err(|e| Error::Task(e.to_string()))??;
            csv.push_str(&format!(
                "{JUMP_SOURCE},{JUMP_BATCH},{JUMP_BARCODE},{well},{site}"
            ));
            for ((_, ch), bytes) in JUMP_CHANNELS.iter().zip(files) {
                let key = jump_key(&well, site, *ch);
                let (dir, file) = key.rsplit_once('/').unwrap_or(("", &key));
                csv.push_str(&format!(",{file},{dir}"));
                report.bytes += bytes.len() as u64;
                report.objects += 1;
                store
                    .put_opts(&join(&key)?, PutPayload::from(bytes), PutOptions::default())
                    .await?;
            }
            csv.push('\n');
            report.sites += 1;
        }
    }
    report.bytes += csv.len() as u64;
    report.objects += 1;
    store
        .put_opts(
            &join("load_data.csv")?,
            PutPayload::from(csv.into_bytes()),
            PutOptions::default(),
        )
        .await?;
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use cellshard_core::layout::{JUMP_LAYOUT, KeyMatch, LayoutTemplate};

    #[test]
    fn keys_follow_jumps_tree_and_the_vignetting_darkens_corners() {
        let t = LayoutTemplate::parse(JUMP_LAYOUT).unwrap();
        let KeyMatch::Matched(f) = t.match_key(&jump_key("B03", 2, 5)) else {
            panic!()
        };
        assert_eq!(
            (f.experiment.as_str(), f.well.as_str(), f.site, f.channel),
            (JUMP_BARCODE, "B03", 2, 5)
        );
        assert!((vignetting_gain(101, 0.5, 50, 50) - 1.0).abs() < 1e-12);
        assert!((vignetting_gain(101, 0.5, 0, 0) - 0.5).abs() < 1e-12);
    }
}
