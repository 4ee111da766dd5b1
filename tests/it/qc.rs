//! Image QC at ingest: sites drawn out of focus on purpose (every channel of two wells
//! blurred by a Gaussian of sigma 3 px, `cellshard_synth::gaussian_blur`) rank below every
//! sharp site by focus, and are the ones flagged `out_of_focus`.

use cellshard_core::Stage;
use cellshard_core::pipeline::Stages;

use crate::*;

/// `tiny.toml` on whole 256x256 images (no downsample or crop).
fn whole_images() -> Pipeline {
    let mut p = pipeline("tiny.toml");
    let stages: Vec<Stage> = p
        .stages
        .list()
        .iter()
        .filter(|s| !matches!(s, Stage::Downsample { .. } | Stage::CenterCrop { .. }))
        .cloned()
        .collect();
    p.stages = Stages::new(stages).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blurred_sites_rank_least_in_focus_and_are_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    let design = design();
    let mut cfg = tiny_synth(11);
    cfg.plates = 1;
    cfg.wells = Some(10);
    let wells: Vec<String> = cellshard_synth::select_sites(&design, &cfg)
        .unwrap()
        .iter()
        .map(|s| s.meta.well.clone())
        .collect();
    cfg.blur_wells = vec![wells[3].clone(), wells[wells.len() - 1].clone()];
    cfg.blur_sigma = 3;
    let store = object_store::local::LocalFileSystem::new_with_prefix(&raw).unwrap();
    cellshard_synth::write_dataset(
        std::sync::Arc::new(store),
        &object_store::path::Path::from(""),
        &design,
        &cfg,
        None,
    )
    .await
    .unwrap();
    let sink = dir.path().join("store").display().to_string();
    let md = vec![raw.join("metadata.csv").display().to_string()];
    let s = run(whole_images(), &raw.display().to_string(), &md, &sink, 2).await;
    assert_eq!(s.sites.stored, 20, "{s:?}");

    let b = sql(
        &sink,
        "SELECT well, qc_focus[1], array_to_string(qc_flags, ','), qc_pass, nuclei_count FROM sites ORDER BY qc_focus[1]",
    )
    .await;
    let wells_by_focus = strings(&b, 0);
    let focus: Vec<f64> = strings(&b, 1).iter().map(|v| v.parse().unwrap()).collect();
    let flags = strings(&b, 2);
    // The four blurred sites (two wells, two sites each) are the four least in focus.
    let (blurred, sharp) = wells_by_focus.split_at(4);
    assert!(
        blurred.iter().all(|w| cfg.blur_wells.contains(w))
            && sharp.iter().all(|w| !cfg.blur_wells.contains(w)),
        "by focus: {wells_by_focus:?} {focus:?}"
    );
    for (i, w) in wells_by_focus.iter().enumerate() {
        let out = flags[i].contains("out_of_focus");
        assert_eq!(
            out,
            cfg.blur_wells.contains(w),
            "{w}: {} {focus:?}",
            flags[i]
        );
    }
    eprintln!("nuclei {:?} flags {flags:?}", strings(&b, 4));
    assert!(strings(&b, 4).iter().all(|n| n.parse::<i32>().unwrap() > 0));
    eprintln!("focus (w1) from least: {focus:.3?}");

    // The view carries the measures per channel, with the site's verdict.
    let b = sql(
        &sink,
        "SELECT count(*), count(focus), sum(CASE WHEN qc_pass THEN 0 ELSE 1 END) FROM site_qc",
    )
    .await;
    assert_eq!(
        (0..3)
            .map(|c| strings(&b, c)[0].clone())
            .collect::<Vec<_>>(),
        ["120", "120", "24"]
    );
}
