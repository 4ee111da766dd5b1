//! Synthetic RxRx1-shaped Cell Painting data: six-channel 8- or 16-bit grayscale PNGs per
//! imaging site, laid out like the public bucket
//! (`{dataset}/{experiment}/Plate{plate}/{well}_s{site}_w{channel}.png`), plus a matching
//! `metadata.csv`, written to any object store.
//!
//! This crate sits beside the pipeline, not in it: integration tests, benchmarks and the
//! CLI's `synth` command use it to produce realistic inputs of any size from the real RxRx1
//! experiment design. Images look like fluorescence microscopy (cells with nuclei, nucleoli,
//! ER, actin, mitochondria, Golgi and membranes; background drift, vignetting, per-experiment
//! and per-plate gain, a small per-siRNA phenotype, shot noise). Everything is deterministic
//! in the seed and the site's identity.
//!
//! It must never read or depend on the pipeline's outputs or stages (its images must stay an
//! independent input), never write anywhere but the store and prefix it is given, never
//! block an async thread with pixel work, and never use a non-deterministic random source.

mod design;
mod error;
mod render;
mod rng;
mod scene;

use std::sync::Arc;
use std::time::Instant;

use cellshard_core::layout::RXRX1_LAYOUT;
use cellshard_core::{KeyFields, LayoutTemplate, MetadataTable, SiteMetadata};
use futures::{StreamExt, TryFutureExt};
use object_store::path::Path;
use object_store::{ObjectStore, PutOptions, PutPayload};
use rayon::prelude::*;

pub use error::{Error, Result};

/// The largest image side accepted.
const MAX_SIZE: u32 = 16_384;

/// PNG compression effort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SynthCompression {
    /// Fast deflate: quick, a little larger (png `Compression::Fast`).
    #[default]
    Fast,
    /// Balanced, zlib-level-6-like (png `Compression::Balanced`).
    Default,
    /// Slowest, smallest (png `Compression::High`).
    High,
}

impl SynthCompression {
    fn png(self) -> png::Compression {
        match self {
            SynthCompression::Fast => png::Compression::Fast,
            SynthCompression::Default => png::Compression::Balanced,
            SynthCompression::High => png::Compression::High,
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthConfig {
    /// Experiments to generate; `None` = the first experiment of the design (by name).
    pub experiments: Option<Vec<String>>,
    /// The first N plates (by plate number) of each chosen experiment.
    pub plates: u32,
    /// Cap on wells per plate (wells in sorted order, always including the negative control
    /// well B02 where the plate has it); `None` = all wells.
    pub wells: Option<u32>,
    /// Sites per well (the RxRx1 design has 2).
    pub sites: u32,
    /// Image width = height, px (RxRx1 originals: 2048).
    pub size: u32,
    /// 8 or 16 bits per sample.
    pub bit_depth: u8,
    /// Seed of everything random (cell layouts, textures, noise).
    pub seed: u64,
    /// Channels per site (the six Cell Painting stains; above 6 the stain models repeat).
    pub channels: u32,
    /// Object-key layout template, relative to the output prefix.
    pub layout: String,
    /// PNG compression effort.
    pub compression: SynthCompression,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            experiments: None,
            plates: 1,
            wells: None,
            sites: 2,
            size: 2048,
            bit_depth: 16,
            seed: 0,
            channels: 6,
            layout: RXRX1_LAYOUT.to_string(),
            compression: SynthCompression::Fast,
        }
    }
}

impl SynthConfig {
    /// Check the values; the error names the field and what is allowed.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.bit_depth != 8 && self.bit_depth != 16 {
            return bad(format!("bit_depth is {}, must be 8 or 16", self.bit_depth));
        }
        if self.size == 0 || self.size > MAX_SIZE {
            return bad(format!("size is {}, must be 1..={MAX_SIZE}", self.size));
        }
        if self.channels == 0 || self.channels > 64 {
            return bad(format!("channels is {}, must be 1..=64", self.channels));
        }
        if self.plates == 0 {
            return bad("plates is 0, must be at least 1".into());
        }
        if self.sites == 0 {
            return bad("sites is 0, must be at least 1".into());
        }
        if self.wells == Some(0) {
            return bad("wells is 0, must be at least 1 (or unset for all wells)".into());
        }
        LayoutTemplate::parse(&self.layout)?;
        Ok(())
    }
}

/// One site to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSite {
    /// The site's design row, with `site = Some(n)`.
    pub meta: SiteMetadata,
}

/// What [`write_dataset`] wrote.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SynthReport {
    /// Sites written.
    pub sites: usize,
    /// Objects written: the PNGs plus `metadata.csv`.
    pub objects: usize,
    /// Bytes written, all objects.
    pub bytes: u64,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// Select the sites of the design that the config asks for, in (experiment, plate, well,
/// site) order. Errors name an unknown experiment, or more plates or sites than the design
/// has.
pub fn select_sites(design: &MetadataTable, cfg: &SynthConfig) -> Result<Vec<SynthSite>> {
    design::select_sites(design, cfg)
}

/// `metadata.csv` content for `sites` in the RxRx1 dialect (what [`write_dataset`] writes),
/// for callers that lay the images out themselves.
pub fn metadata_csv(design: &MetadataTable, sites: &[SynthSite]) -> Result<Vec<u8>> {
    design::metadata_csv(design, sites)
}

/// Render one channel (1-based) of one site: `size * size` samples, row-major (values below
/// 256 when `bit_depth` is 8). Pure and deterministic in (seed, site, channel); experiment,
/// plate, well and site of `site` place the cells, its cell type shapes them, its well type
/// and siRNA give the phenotype. Only `size`, `bit_depth` (8, else 16-bit values) and `seed`
/// of `cfg` matter here.
pub fn render_channel(cfg: &SynthConfig, site: &SiteMetadata, channel: u32) -> Vec<u16> {
    scene::Scene::new(cfg.size, cfg.bit_depth, cfg.seed, site).render(channel)
}

/// Encode `size * size` samples as a grayscale PNG of `cfg.bit_depth` bits.
pub fn encode_png(cfg: &SynthConfig, samples: &[u16]) -> Result<Vec<u8>> {
    let side = cfg.size as usize;
    if samples.len() != side * side {
        return Err(Error::Config(format!(
            "{} samples do not make a {side} x {side} image",
            samples.len()
        )));
    }
    let (depth, bytes) = match cfg.bit_depth {
        8 => {
            let mut bytes = Vec::with_capacity(samples.len());
            for &v in samples {
                let b = u8::try_from(v)
                    .map_err(|_| Error::Config(format!("sample {v} does not fit 8 bits")))?;
                bytes.push(b);
            }
            (png::BitDepth::Eight, bytes)
        }
        16 => (
            png::BitDepth::Sixteen,
            samples.iter().flat_map(|v| v.to_be_bytes()).collect(),
        ),
        other => {
            return Err(Error::Config(format!(
                "bit_depth is {other}, must be 8 or 16"
            )));
        }
    };
    let mut out = Vec::with_capacity(bytes.len() / 2 + 1024);
    let mut encoder = png::Encoder::new(&mut out, cfg.size, cfg.size);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(depth);
    encoder.set_compression(cfg.compression.png());
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&bytes)?;
    writer.finish()?;
    Ok(out)
}

/// `raw` as a zlib stream of stored (uncompressed) deflate blocks of at most `block` bytes
/// (clamped to 1..=65,535): what some encoders write at level 0, and the case where a
/// bounded inflate stops furthest before the end of its buffer. For tests of decoders.
pub fn zlib_stored(raw: &[u8], block: usize) -> Vec<u8> {
    let block = block.clamp(1, 65_535);
    let mut z = Vec::with_capacity(raw.len() + raw.len() / block * 5 + 11);
    z.extend_from_slice(&[0x78, 0x01]);
    let mut blocks = raw.chunks(block).peekable();
    if blocks.peek().is_none() {
        // An empty final stored block.
        z.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(b) = blocks.next() {
        z.push(u8::from(blocks.peek().is_none()));
        let len = b.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(b);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &v in raw {
        a = (a + u32::from(v)) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    z
}

/// Render and encode every channel of one site (channels in parallel on rayon).
fn site_pngs(cfg: &SynthConfig, meta: &SiteMetadata) -> Result<Vec<Vec<u8>>> {
    let scene = scene::Scene::new(cfg.size, cfg.bit_depth, cfg.seed, meta);
    (1..=cfg.channels)
        .into_par_iter()
        .map(|ch| encode_png(cfg, &scene.render(ch)))
        .collect()
}

/// `prefix/key` as an object path.
fn join(prefix: &Path, key: &str) -> Result<Path> {
    let text = if prefix.as_ref().is_empty() {
        key.to_string()
    } else {
        format!("{prefix}/{key}")
    };
    Path::parse(&text).map_err(|source| Error::Path { path: text, source })
}

/// Render and encode all selected sites (on rayon, a bounded number of sites in flight so
/// memory stays small), write every PNG under `prefix` of `store`, then write
/// `prefix/metadata.csv` in the RxRx1 dialect (`site_id,well_id,cell_type,dataset,
/// experiment,plate,well,site,well_type,sirna_id` plus the design's extra columns, one row
/// per selected site). `progress` is called with the number of sites written so far.
pub async fn write_dataset(
    store: Arc<dyn ObjectStore>,
    prefix: &Path,
    design: &MetadataTable,
    cfg: &SynthConfig,
    progress: Option<&(dyn Fn(usize) + Sync)>,
) -> Result<SynthReport> {
    let start = Instant::now();
    cfg.validate()?;
    let layout = LayoutTemplate::parse(&cfg.layout)?;
    let sites = select_sites(design, cfg)?;

    // All keys first: a bad key fails the run before any pixel work.
    let mut jobs = Vec::with_capacity(sites.len());
    for site in &sites {
        let m = &site.meta;
        let s = m.site.unwrap_or(1);
        if layout.has_dataset() && m.dataset.as_deref().is_none_or(str::is_empty) {
            return Err(Error::MissingDataset {
                site_id: format!("{}_{}_{}_{}", m.experiment, m.plate, m.well, s),
                layout: cfg.layout.clone(),
            });
        }
        let keys = (1..=cfg.channels)
            .map(|channel| {
                let fields = KeyFields {
                    dataset: m.dataset.clone(),
                    experiment: m.experiment.clone(),
                    plate: m.plate,
                    well: m.well.clone(),
                    site: s,
                    channel,
                };
                join(prefix, &layout.render(&fields))
            })
            .collect::<Result<Vec<_>>>()?;
        jobs.push((m.clone(), keys));
    }

    let cfg_shared = Arc::new(cfg.clone());
    // Enough sites in flight to keep every rayon thread busy while puts complete.
    let in_flight = rayon::current_num_threads().max(1) + 1;
    let mut results = futures::stream::iter(jobs)
        .map(|(meta, keys)| {
            let cfg = Arc::clone(&cfg_shared);
            let store = Arc::clone(&store);
            async move {
                let pngs = tokio::task::spawn_blocking(move || site_pngs(&cfg, &meta))
                    .await
                    .map_err(|e| Error::Task(e.to_string()))??;
                let bytes: u64 = pngs.iter().map(|p| p.len() as u64).sum();
                let count = pngs.len();
                let puts = keys.iter().zip(pngs).map(|(key, png)| {
                    store
                        .put_opts(key, PutPayload::from(png), PutOptions::default())
                        .map_err(Error::from)
                });
                futures::future::try_join_all(puts).await?;
                Ok::<_, Error>((count, bytes))
            }
        })
        .buffer_unordered(in_flight);

    let mut report = SynthReport {
        sites: 0,
        objects: 0,
        bytes: 0,
        seconds: 0.0,
    };
    while let Some(result) = results.next().await {
        let (count, bytes) = result?;
        report.sites += 1;
        report.objects += count;
        report.bytes += bytes;
        if let Some(progress) = progress {
            progress(report.sites);
        }
    }
    drop(results);

    let csv = design::metadata_csv(design, &sites)?;
    report.bytes += csv.len() as u64;
    store
        .put_opts(
            &join(prefix, "metadata.csv")?,
            PutPayload::from(csv),
            PutOptions::default(),
        )
        .await?;
    report.objects += 1;
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn site(experiment: &str, plate: u32, well: &str) -> SiteMetadata {
        SiteMetadata {
            cell_type: cellshard_core::metadata::cell_type_of(experiment),
            dataset: Some("train".into()),
            experiment: experiment.into(),
            plate,
            well: well.into(),
            site: Some(1),
            well_type: "treatment".into(),
            sirna_id: Some(42),
            extra: vec![],
        }
    }

    fn small(size: u32) -> SynthConfig {
        SynthConfig {
            size,
            ..SynthConfig::default()
        }
    }

    fn percentile(v: &[u16], p: f64) -> u16 {
        let mut s = v.to_vec();
        s.sort_unstable();
        s[((s.len() - 1) as f64 * p) as usize]
    }

    fn mean(v: &[u16]) -> f64 {
        v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64
    }

    #[test]
    fn rendering_is_deterministic_in_seed_site_and_channel() {
        let cfg = small(128);
        let s = site("HUVEC-01", 1, "B03");
        for ch in 1..=6 {
            let a = render_channel(&cfg, &s, ch);
            assert_eq!(a.len(), 128 * 128);
            assert_eq!(a, render_channel(&cfg, &s, ch), "channel {ch}");
        }
        let other_seed = SynthConfig {
            seed: 1,
            ..cfg.clone()
        };
        assert_ne!(
            render_channel(&cfg, &s, 1),
            render_channel(&other_seed, &s, 1)
        );
        assert_ne!(render_channel(&cfg, &s, 1), render_channel(&cfg, &s, 2));
        assert_ne!(
            render_channel(&cfg, &s, 1),
            render_channel(&cfg, &site("HUVEC-01", 1, "B04"), 1)
        );
        let s2 = SiteMetadata {
            site: Some(2),
            ..s.clone()
        };
        assert_ne!(render_channel(&cfg, &s, 1), render_channel(&cfg, &s2, 1));
    }

    #[test]
    fn nuclei_stand_out_of_a_dark_background() {
        let cfg = small(256);
        for experiment in ["HUVEC-01", "HEPG2-03", "RPE-02", "U2OS-01"] {
            let img = render_channel(&cfg, &site(experiment, 1, "B02"), 1);
            let (median, p99) = (percentile(&img, 0.5), percentile(&img, 0.99));
            assert!(
                median > 150 && median < 1500,
                "{experiment}: median {median}"
            );
            assert!(p99 > 5 * median, "{experiment}: p99 {p99}, median {median}");
            assert!(p99 > 4_000, "{experiment}: p99 {p99}");
        }
    }

    #[test]
    fn every_channel_has_structure_and_differs() {
        let cfg = small(256);
        let s = site("U2OS-01", 2, "C05");
        let images: Vec<Vec<u16>> = (1..=6).map(|ch| render_channel(&cfg, &s, ch)).collect();
        for (i, img) in images.iter().enumerate() {
            let (p10, p50, p99) = (
                percentile(img, 0.1),
                percentile(img, 0.5),
                percentile(img, 0.99),
            );
            assert!(p10 > 100, "channel {}: p10 {p10}", i + 1);
            assert!(
                f64::from(p99) > 2.5 * f64::from(p50),
                "channel {}: p50 {p50} p99 {p99}",
                i + 1
            );
        }
        // Hoechst (nuclear) and WGA (membranes) put their light in different places.
        let corr = correlation(&images[0], &images[5]);
        assert!(corr < 0.5, "channels 1 and 6 correlate {corr}");
    }

    fn correlation(a: &[u16], b: &[u16]) -> f64 {
        let (ma, mb) = (mean(a), mean(b));
        let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
        for (&x, &y) in a.iter().zip(b) {
            let (dx, dy) = (f64::from(x) - ma, f64::from(y) - mb);
            sab += dx * dy;
            saa += dx * dx;
            sbb += dy * dy;
        }
        sab / (saa * sbb).sqrt()
    }

    #[test]
    fn eight_bit_output_fits_a_byte() {
        let cfg = SynthConfig {
            bit_depth: 8,
            ..small(256)
        };
        let s = SiteMetadata {
            well_type: "positive_control".into(),
            sirna_id: Some(1110),
            ..site("U2OS-02", 3, "D10")
        };
        for ch in 1..=6 {
            let img = render_channel(&cfg, &s, ch);
            assert!(img.iter().all(|&v| v < 256), "channel {ch}");
            assert!(
                percentile(&img, 0.999) > 20,
                "channel {ch} is too dark for 8 bits"
            );
        }
        assert!(encode_png(&cfg, &render_channel(&cfg, &s, 1)).is_ok());
        assert!(encode_png(&cfg, &[300; 256 * 256]).is_err());
        assert!(encode_png(&cfg, &[1; 10]).is_err());
    }

    #[test]
    fn experiment_and_plate_gain_change_the_mean() {
        // Find the dimmest and brightest experiments of the design's naming scheme.
        let names: Vec<String> = (1..=24).map(|i| format!("HUVEC-{i:02}")).collect();
        let gain = |e: &str| scene::batch_gain(e, 1, 1);
        let lo = names
            .iter()
            .min_by(|a, b| gain(a).total_cmp(&gain(b)))
            .unwrap();
        let hi = names
            .iter()
            .max_by(|a, b| gain(a).total_cmp(&gain(b)))
            .unwrap();
        assert!(gain(hi) > 1.5 * gain(lo), "{} vs {}", gain(hi), gain(lo));
        let cfg = small(256);
        let mean_of = |e: &str, plate| {
            let img = render_channel(&cfg, &site(e, plate, "B02"), 1);
            mean(&img) - 200.0 // camera offset
        };
        let (m_lo, m_hi) = (mean_of(lo, 1), mean_of(hi, 1));
        assert!(m_hi > 1.3 * m_lo, "{hi}: {m_hi}, {lo}: {m_lo}");
        // Plate gain: the same experiment differs between plates, within [0.85, 1.15]^2.
        let plates: Vec<f32> = (1..=4)
            .map(|p| scene::batch_gain("HUVEC-01", p, 1))
            .collect();
        assert!(
            plates
                .iter()
                .all(|g| (0.6 * 0.85 * 0.9..1.4 * 1.15 * 1.1).contains(g))
        );
        let spread = plates.iter().cloned().fold(f32::MIN, f32::max)
            / plates.iter().cloned().fold(f32::MAX, f32::min);
        assert!(spread > 1.02, "plate gains {plates:?}");
    }

    #[test]
    fn config_validation_names_the_field() {
        let bad = SynthConfig {
            bit_depth: 12,
            ..SynthConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("bit_depth")
        );
        let bad = SynthConfig {
            layout: "{experiment}/x.png".into(),
            ..SynthConfig::default()
        };
        assert!(bad.validate().is_err());
        assert!(SynthConfig::default().validate().is_ok());
    }

    fn tiny_design() -> MetadataTable {
        let csv = "site_id,well_id,cell_type,dataset,experiment,plate,well,site,well_type,sirna_id,plate_group\n\
                   HUVEC-01_1_B02_1,HUVEC-01_1_B02,HUVEC,train,HUVEC-01,1,B02,1,negative_control,1138,2\n\
                   HUVEC-01_1_B02_2,HUVEC-01_1_B02,HUVEC,train,HUVEC-01,1,B02,2,negative_control,1138,2\n\
                   HUVEC-01_1_B03_1,HUVEC-01_1_B03,HUVEC,train,HUVEC-01,1,B03,1,treatment,513,2\n\
                   HUVEC-01_1_B03_2,HUVEC-01_1_B03,HUVEC,train,HUVEC-01,1,B03,2,treatment,513,2\n\
                   HUVEC-01_2_B02_1,HUVEC-01_2_B02,HUVEC,train,HUVEC-01,2,B02,1,negative_control,1138,3\n\
                   HUVEC-01_2_B02_2,HUVEC-01_2_B02,HUVEC,train,HUVEC-01,2,B02,2,negative_control,1138,3\n\
                   RPE-09_1_C04_1,RPE-09_1_C04,RPE,test,RPE-09,1,C04,1,treatment,,0\n";
        let mut t = MetadataTable::new();
        t.add_csv("metadata.csv", csv.as_bytes()).unwrap();
        t
    }

    #[tokio::test]
    async fn writes_pngs_and_metadata_to_a_store() {
        let store = Arc::new(InMemory::new());
        let design = tiny_design();
        let cfg = SynthConfig {
            experiments: Some(vec!["HUVEC-01".into(), "RPE-09".into()]),
            plates: 1,
            size: 64,
            sites: 1,
            ..SynthConfig::default()
        };
        let prefix = Path::from("raw/run1");
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let progress = |_n: usize| {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        };
        let report = write_dataset(store.clone(), &prefix, &design, &cfg, Some(&progress))
            .await
            .unwrap();
        // HUVEC-01 plate 1: B02, B03; RPE-09 plate 1: C04. One site each.
        assert_eq!(report.sites, 3);
        assert_eq!(report.objects, 3 * 6 + 1);
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 3);

        let listed: Vec<object_store::ObjectMeta> =
            futures::TryStreamExt::try_collect(store.list(Some(&prefix)))
                .await
                .unwrap();
        assert_eq!(listed.len(), report.objects);
        assert_eq!(listed.iter().map(|m| m.size).sum::<u64>(), report.bytes);
        let mut keys: Vec<String> = listed.iter().map(|m| m.location.to_string()).collect();
        keys.sort();
        assert!(keys.contains(&"raw/run1/metadata.csv".to_string()));
        assert!(
            keys.contains(&"raw/run1/train/HUVEC-01/Plate1/B02_s1_w1.png".to_string()),
            "{keys:?}"
        );
        assert!(
            keys.contains(&"raw/run1/test/RPE-09/Plate1/C04_s1_w6.png".to_string()),
            "{keys:?}"
        );
        let layout = LayoutTemplate::parse(RXRX1_LAYOUT).unwrap();
        for key in keys.iter().filter(|k| k.ends_with(".png")) {
            let rel = key.strip_prefix("raw/run1/").unwrap();
            assert!(
                matches!(
                    layout.match_key(rel),
                    cellshard_core::layout::KeyMatch::Matched(_)
                ),
                "{key}"
            );
            let bytes =
                object_store::ObjectStoreExt::get(store.as_ref(), &Path::from(key.as_str()))
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
            let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
            let reader = decoder.read_info().unwrap();
            let info = reader.info();
            assert_eq!((info.width, info.height), (64, 64));
            assert_eq!(info.bit_depth, png::BitDepth::Sixteen);
            assert_eq!(info.color_type, png::ColorType::Grayscale);
        }

        let csv =
            object_store::ObjectStoreExt::get(store.as_ref(), &Path::from("raw/run1/metadata.csv"))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
        let mut back = MetadataTable::new();
        assert_eq!(back.add_csv("metadata.csv", &csv).unwrap(), 3);
        assert!(back.row_errors.is_empty(), "{:?}", back.row_errors);
        assert_eq!(back.extra_columns(), ["plate_group"]);
        let rpe = back.rows().find(|r| r.experiment == "RPE-09").unwrap();
        assert_eq!(
            (rpe.site, rpe.sirna_id, rpe.dataset.as_deref()),
            (Some(1), None, Some("test"))
        );
        assert_eq!(rpe.extra, vec![Some("0".to_string())]);
    }

    #[tokio::test]
    async fn eight_bit_pngs_decode_to_the_same_samples() {
        let store = Arc::new(InMemory::new());
        let cfg = SynthConfig {
            size: 48,
            bit_depth: 8,
            sites: 1,
            wells: Some(1),
            ..SynthConfig::default()
        };
        let report = write_dataset(store.clone(), &Path::from(""), &tiny_design(), &cfg, None)
            .await
            .unwrap();
        assert_eq!(report.objects, 7);
        let bytes = object_store::ObjectStoreExt::get(
            store.as_ref(),
            &Path::from("train/HUVEC-01/Plate1/B02_s1_w3.png"),
        )
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        let design = tiny_design();
        let meta = select_sites(&design, &cfg).unwrap().remove(0).meta;
        let expected: Vec<u8> = render_channel(&cfg, &meta, 3)
            .into_iter()
            .map(|v| v as u8)
            .collect();
        assert_eq!(&buf[..info.buffer_size()], &expected[..]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_a_slice_of_the_real_design() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/data/rxrx1/metadata.csv"
        );
        let mut design = MetadataTable::new();
        design
            .add_csv("metadata.csv", &std::fs::read(path).unwrap())
            .unwrap();
        let cfg = SynthConfig {
            experiments: Some(vec!["HUVEC-01".into()]),
            wells: Some(2),
            size: 64,
            ..SynthConfig::default()
        };
        let prefix = Path::from("synth");
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let future = write_dataset(Arc::clone(&store), &prefix, &design, &cfg, None);
        fn assert_send<T: Send>(t: T) -> T {
            t
        }
        let report = assert_send(future).await.unwrap();
        // Plate 1, wells B02 and B03, two sites each.
        assert_eq!(report.sites, 4);
        assert_eq!(report.objects, 4 * 6 + 1);
        let listed: Vec<object_store::ObjectMeta> =
            futures::TryStreamExt::try_collect(store.list(None))
                .await
                .unwrap();
        assert_eq!(listed.len(), 25);
        assert!(
            listed
                .iter()
                .any(|m| m.location.as_ref() == "synth/train/HUVEC-01/Plate1/B03_s2_w6.png")
        );
        let csv =
            object_store::ObjectStoreExt::get(store.as_ref(), &Path::from("synth/metadata.csv"))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
        let text = String::from_utf8(csv.to_vec()).unwrap();
        assert_eq!(text.lines().count(), 5);
        assert!(text.contains(
            "HUVEC-01_1_B02_1,HUVEC-01_1_B02,HUVEC,train,HUVEC-01,1,B02,1,negative_control,1138,"
        ));
    }

    #[tokio::test]
    async fn unknown_experiment_is_a_clear_error() {
        let store = Arc::new(InMemory::new());
        let cfg = SynthConfig {
            experiments: Some(vec!["HUVEC-99".into()]),
            size: 32,
            ..SynthConfig::default()
        };
        let err = write_dataset(store, &Path::from("x"), &tiny_design(), &cfg, None)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "experiment HUVEC-99 is not in the design (it has HUVEC-01, RPE-09)"
        );
    }

    /// Time one 2048 x 2048 16-bit site, six channels, render + encode, single-threaded.
    /// Run with `cargo test -p cellshard-synth --release -- --ignored --nocapture timing`.
    #[test]
    #[ignore]
    fn timing_full_size_site() {
        let cfg = SynthConfig::default();
        let s = site("HUVEC-01", 1, "B03");
        let t0 = Instant::now();
        let scene = scene::Scene::new(cfg.size, cfg.bit_depth, cfg.seed, &s);
        let _ = scene.owner();
        let t_owner = t0.elapsed();
        let mut total_png = 0;
        for ch in 1..=6 {
            let t = Instant::now();
            let img = scene.render(ch);
            let t_render = t.elapsed();
            let png = encode_png(&cfg, &img).unwrap();
            println!(
                "channel {ch}: render {t_render:?}, encode {:?}, {} bytes",
                t.elapsed() - t_render,
                png.len()
            );
            total_png += png.len();
        }
        println!(
            "scene + owner {t_owner:?}; site total {:?} ({} cells, {total_png} bytes)",
            t0.elapsed(),
            scene.cells.len()
        );
        let t = Instant::now();
        let pngs = site_pngs(&cfg, &s).unwrap();
        println!(
            "site_pngs (rayon over channels): {:?}, {} objects",
            t.elapsed(),
            pngs.len()
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod preview {
    use super::*;

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
        let cell_type =
            std::env::var("SYNTH_PREVIEW_EXPERIMENT").unwrap_or_else(|_| "HUVEC-01".into());
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
}
