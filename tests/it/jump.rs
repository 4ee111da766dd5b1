//! A JUMP-shaped plate end to end: 16-bit TIFFs in JUMP's tree with Phenix names, channels
//! named by `load_data.csv` (not by their `ch` numbers), and a vignetting field that the
//! `illumination` stage removes, measured as the corner-to-centre intensity ratio of the
//! stored tensors before and after.

use cellshard_core::Stage;
use cellshard_core::pipeline::Stages;
use cellshard_synth::jump::{JUMP_BARCODE, JumpConfig, jump_key, write_jump};

use crate::*;

const SIZE: u32 = 256;

/// `pipelines/jump-cpg0016.toml` on `SIZE`-pixel images, without downsample and crop (so
/// the corners are kept), with or without its illumination stage.
fn jump_pipeline(illumination: bool) -> Pipeline {
    let mut p = pipeline("jump-cpg0016.toml");
    let stages: Vec<Stage> = p
        .stages
        .list()
        .iter()
        .filter(|s| match s {
            Stage::Downsample { .. } | Stage::CenterCrop { .. } => false,
            Stage::Illumination { .. } => illumination,
            _ => true,
        })
        .cloned()
        .map(|s| match s {
            Stage::Decode {
                format,
                bit_depth,
                max_pixels,
                ..
            } => Stage::Decode {
                format,
                bit_depth,
                width: Some(SIZE),
                height: Some(SIZE),
                max_pixels,
            },
            s => s,
        })
        .collect();
    p.stages = Stages::new(stages).unwrap();
    p
}

/// Per channel: the mean of the four `k` x `k` corners over the mean of the central
/// `2k` x `2k` block, of the mean image of every stored tensor.
fn corner_to_centre(tensors: &[Vec<u8>], channels: usize) -> Vec<f64> {
    let n = SIZE as usize;
    let k = n / 8;
    let mut mean = vec![0f64; channels * n * n];
    for t in tensors {
        for (m, v) in mean.iter_mut().zip(t) {
            *m += f64::from(*v);
        }
    }
    let block = |c: usize, y0: usize, x0: usize, side: usize| -> f64 {
        let mut s = 0.0;
        for y in y0..y0 + side {
            for x in x0..x0 + side {
                s += mean[c * n * n + y * n + x];
            }
        }
        s / (side * side) as f64
    };
    (0..channels)
        .map(|c| {
            let corners = [(0, 0), (0, n - k), (n - k, 0), (n - k, n - k)]
                .iter()
                .map(|&(y, x)| block(c, y, x, k))
                .sum::<f64>()
                / 4.0;
            corners / block(c, n / 2 - k, n / 2 - k, 2 * k)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jump_plate_ingests_by_load_data_and_illumination_removes_its_vignetting() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    let cfg = JumpConfig {
        wells: 16,
        sites: 2,
        size: SIZE,
        seed: 3,
        vignetting: 0.5,
    };
    let store = object_store::local::LocalFileSystem::new_with_prefix(&raw).unwrap();
    write_jump(
        std::sync::Arc::new(store),
        &object_store::path::Path::from(""),
        &cfg,
    )
    .await
    .unwrap();
    let source = raw.display().to_string();
    let md = vec![raw.join("load_data.csv").display().to_string()];

    let mut ratios = Vec::new();
    for illumination in [false, true] {
        let sink = dir.path().join(format!("store-{illumination}"));
        let sink = sink.display().to_string();
        let s = run(jump_pipeline(illumination), &source, &md, &sink, 2).await;
        assert_eq!(
            (s.sites.stored, s.objects.rejected, s.objects.ignored),
            (32, 0, 1),
            "{s:?}"
        );
        let b = sql(&sink, "SELECT tensor FROM sites ORDER BY site_id").await;
        ratios.push(corner_to_centre(&binaries(&b, 0), 5));

        // Names and where they came from.
        let b = sql(
            &sink,
            "SELECT DISTINCT experiment, plate, dataset, \"Metadata_Batch\" FROM sites",
        )
        .await;
        assert_eq!(
            (0..4).map(|c| strings(&b, c)).collect::<Vec<_>>(),
            [
                vec![JUMP_BARCODE.to_string()],
                vec!["1".to_string()],
                vec!["source_4".to_string()],
                vec!["2021_04_26_Batch1".to_string()],
            ]
        );
        let b = sql(
            &sink,
            "SELECT channel_name, coalesce(illumination_source, 'none'), CAST(illumination_shape AS VARCHAR) FROM plate_stats ORDER BY channel",
        )
        .await;
        assert_eq!(strings(&b, 0), ["DNA", "ER", "RNA", "AGP", "Mito"]);
        if illumination {
            assert_eq!(strings(&b, 1), vec!["compute"; 5]);
            assert_eq!(strings(&b, 2), vec!["[256, 256, 64, 64]"; 5]);
        } else {
            assert_eq!(strings(&b, 1), vec!["none"; 5]);
        }
        // Tensor functions take channel names.
        let b = sql(
            &sink,
            "SELECT count(*) FROM sites WHERE tensor_mean(tensor, 'DNA') = tensor_mean(tensor, 1) AND tensor_mean(tensor, 'mito') = tensor_mean(tensor, 5)",
        )
        .await;
        assert_eq!(strings(&b, 0), ["32"]);

        if !illumination {
            // Channel 1 is the file load_data.csv names FileName_OrigDNA (`ch5`), not `ch1`:
            // the stored raw crop mean equals that file's mean.
            let b = sql(
                &sink,
                "SELECT well, site, raw_channel_mean[1], raw_channel_mean[5] FROM sites WHERE site_id = 'BR00117035_1_A02_2'",
            )
            .await;
            let file_mean = |ch: u32| {
                let bytes = std::fs::read(raw.join(jump_key("A02", 2, ch))).unwrap();
                let spec = cellshard_stages::DecodeSpec {
                    bit_depth: 16,
                    width: None,
                    height: None,
                    max_pixels: 1 << 20,
                };
                let p = cellshard_stages::tiff::decode_full(&bytes, &spec).unwrap();
                p.data.iter().map(|&v| f64::from(v)).sum::<f64>() / p.data.len() as f64
            };
            let stored: Vec<f64> = [2, 3]
                .iter()
                .map(|&c| strings(&b, c)[0].parse().unwrap())
                .collect();
            assert!((stored[0] - file_mean(5)).abs() < 1e-6, "{stored:?}");
            assert!((stored[1] - file_mean(1)).abs() < 1e-6, "{stored:?}");
            assert!((stored[0] - file_mean(1)).abs() > 1.0, "{stored:?}");
        }
    }
    let (before, after) = (&ratios[0], &ratios[1]);
    // The field keeps half the light in the far corners: about 0.6 of the centre over a
    // corner block before; flat after.
    for c in 0..5 {
        assert!(before[c] < 0.7, "before: {before:?}");
        assert!(
            (0.9..1.1).contains(&after[c]),
            "after: {after:?} (before: {before:?})"
        );
    }
    eprintln!("corner/centre before {before:.3?} after {after:.3?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn illumination_from_files_reads_npy_and_a_missing_file_rejects_the_plate() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    // The same plate without vignetting: what a perfect correction gives back.
    let flat = dir.path().join("flat");
    for (path, vignetting) in [(&raw, 0.5), (&flat, 0.0)] {
        std::fs::create_dir_all(path).unwrap();
        let cfg = JumpConfig {
            wells: 16,
            sites: 2,
            size: SIZE,
            seed: 1,
            vignetting,
        };
        let store = object_store::local::LocalFileSystem::new_with_prefix(path).unwrap();
        write_jump(
            std::sync::Arc::new(store),
            &object_store::path::Path::from(""),
            &cfg,
        )
        .await
        .unwrap();
    }
    let with_files = |template: &str| {
        let mut p = jump_pipeline(true);
        let stages: Vec<Stage> = p
            .stages
            .list()
            .iter()
            .cloned()
            .map(|s| match s {
                Stage::Illumination {
                    block,
                    filter_fraction,
                    robust_min_percentile,
                    ..
                } => Stage::Illumination {
                    source: cellshard_core::pipeline::IllumSource::Files,
                    files: Some(template.to_string()),
                    block,
                    filter_fraction,
                    robust_min_percentile,
                },
                s => s,
            })
            .collect();
        p.stages = Stages::new(stages).unwrap();
        p
    };
    // JUMP's own functions: the exact vignetting field, as float64 .npy files.
    let n = SIZE as usize;
    for name in ["DNA", "ER", "RNA", "AGP", "Mito"] {
        let mut values = Vec::with_capacity(n * n);
        for y in 0..SIZE {
            for x in 0..SIZE {
                #[allow(clippy::cast_possible_truncation, reason = "a gain in [0.5, 1]")]
                values.push(cellshard_synth::jump::vignetting_gain(SIZE, 0.5, x, y) as f32);
            }
        }
        let npy = cellshard_stages::illum::write_npy_f32(SIZE, SIZE, &values);
        let dirp = raw.join(format!("illum/{JUMP_BARCODE}"));
        std::fs::create_dir_all(&dirp).unwrap();
        std::fs::write(dirp.join(format!("{JUMP_BARCODE}_Illum{name}.npy")), npy).unwrap();
    }
    let source = raw.display().to_string();
    let md = vec![raw.join("load_data.csv").display().to_string()];
    let sink = dir.path().join("store").display().to_string();
    let template = "illum/{experiment}/{experiment}_Illum{channel_name}.npy";
    let s = run(with_files(template), &source, &md, &sink, 2).await;
    assert_eq!((s.sites.stored, s.objects.rejected), (32, 0), "{s:?}");
    let b = sql(
        &sink,
        "SELECT illumination_source, CAST(illumination_shape AS VARCHAR) FROM plate_stats ORDER BY channel",
    )
    .await;
    assert!(
        strings(&b, 0)[0].ends_with("illum/BR00117035/BR00117035_IllumDNA.npy"),
        "{:?}",
        strings(&b, 0)
    );
    assert_eq!(strings(&b, 1)[0], "[256, 256, 256, 256]");
    let b = sql(&sink, "SELECT tensor FROM sites ORDER BY site_id").await;
    let corrected = corner_to_centre(&binaries(&b, 0), 5);
    let flat_store = dir.path().join("flat-store").display().to_string();
    let flat_md = vec![flat.join("load_data.csv").display().to_string()];
    let flat_src = flat.display().to_string();
    run(jump_pipeline(false), &flat_src, &flat_md, &flat_store, 2).await;
    let b = sql(&flat_store, "SELECT tensor FROM sites ORDER BY site_id").await;
    let truth = corner_to_centre(&binaries(&b, 0), 5);
    // Divided by the very field that darkened it, the plate looks as it did without it
    // (the synthetic cells thin out towards the borders: that stays).
    for c in 0..5 {
        assert!(
            (corrected[c] - truth[c]).abs() < 0.02,
            "corrected {corrected:?}, without vignetting {truth:?}"
        );
    }

    // A changed function file is a changed plate: an incremental run rebuilds it.
    let again = cellshard_runtime::run(RunOptions {
        source: Some(source.clone()),
        metadata: md.clone(),
        sink: Some(sink.clone()),
        threads: 2,
        incremental: true,
        ..RunOptions::new(with_files(template))
    })
    .await
    .unwrap();
    assert_eq!(again.sites.unchanged, 32, "{again:?}");
    let dna = raw.join(format!("illum/{JUMP_BARCODE}/{JUMP_BARCODE}_IllumDNA.npy"));
    let ones = cellshard_stages::illum::write_npy_f32(SIZE, SIZE, &vec![1.0; n * n]);
    std::fs::write(&dna, ones).unwrap();
    let rebuilt = cellshard_runtime::run(RunOptions {
        source: Some(source.clone()),
        metadata: md.clone(),
        sink: Some(sink.clone()),
        threads: 2,
        incremental: true,
        ..RunOptions::new(with_files(template))
    })
    .await
    .unwrap();
    assert_eq!(rebuilt.sites.stored, 32, "{rebuilt:?}");

    // A missing function file rejects the plate's sites, with the file named.
    let sink2 = dir.path().join("store2").display().to_string();
    let s = run(
        with_files("illum/{experiment}/missing_{channel_name}.npy"),
        &source,
        &md,
        &sink2,
        2,
    )
    .await;
    assert_eq!(s.sites.stored, 0, "{s:?}");
    // Counted per object: 32 sites of 5 files.
    assert_eq!(
        s.rejects_by_reason.get("illumination_failed"),
        Some(&160),
        "{s:?}"
    );
    let b = sql(&sink2, "SELECT DISTINCT message FROM rejects").await;
    let m = strings(&b, 0);
    assert!(m[0].contains("missing_DNA.npy"), "{m:?}");
}
