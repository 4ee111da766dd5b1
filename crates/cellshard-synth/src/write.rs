//! Writing a dataset: render and encode sites on rayon, put the PNGs and `metadata.csv`
//! into the object store.

use std::sync::Arc;
use std::time::Instant;

use cellshard_core::{KeyFields, LayoutTemplate, MetadataTable, SiteMetadata};
use futures::{StreamExt, TryFutureExt};
use object_store::path::Path;
use object_store::{ObjectStore, PutOptions, PutPayload};
use rayon::prelude::*;

use crate::{Error, Result, SynthConfig, design, encode_png, scene, select_sites};

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

/// Render and encode every channel of one site (channels in parallel on rayon).
fn site_pngs(cfg: &SynthConfig, meta: &SiteMetadata) -> Result<Vec<Vec<u8>>> {
    let scene = scene::Scene::new(cfg.size, cfg.bit_depth, cfg.seed, meta);
    let blur = cfg.blur_wells.contains(&meta.well);
    (1..=cfg.channels)
        .into_par_iter()
        .map(|ch| {
            let mut px = scene.render(ch);
            if blur {
                crate::gaussian_blur(&mut px, cfg.size, f64::from(cfg.blur_sigma));
            }
            encode_png(cfg, &px)
        })
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
                    plane: None,
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
    use cellshard_core::layout::RXRX1_LAYOUT;
    use object_store::memory::InMemory;

    use crate::fixtures::tiny_design;
    use crate::render_channel;

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
            .map(|v| u8::try_from(v).unwrap())
            .collect();
        assert_eq!(&buf[..info.buffer_size()], &expected[..]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_a_slice_of_the_real_design() {
        let design = crate::rxrx1_design().unwrap();
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
}
