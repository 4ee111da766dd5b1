//! Incremental and targeted runs: a plate is rebuilt exactly when what produced it changed,
//! and `plan` says so beforehand without reading a pixel.

use std::collections::BTreeMap;

use cellshard_core::PlateKey;
use cellshard_runtime::PlanAction;
use cellshard_runtime::discover::PlateSelection;

use crate::*;

async fn synth_raw(dir: &std::path::Path) -> String {
    let raw = dir.join("raw");
    let loc =
        cellshard_store::Location::parse(&raw.display().to_string(), &BTreeMap::new()).unwrap();
    cellshard_synth::write_dataset(
        loc.store.clone(),
        &loc.prefix,
        &design(),
        &tiny_synth(5),
        None,
    )
    .await
    .unwrap();
    raw.display().to_string()
}

fn opts(raw: &str, store: &str) -> RunOptions {
    RunOptions {
        source: Some(raw.to_string()),
        metadata: vec![format!("{raw}/metadata.csv")],
        sink: Some(store.to_string()),
        threads: 2,
        ..RunOptions::new(pipeline("tiny.toml"))
    }
}

fn log_versions(store: &str) -> usize {
    std::fs::read_dir(format!("{store}/sites/_delta_log"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json")
        })
        .count()
}

async fn site_tensors(store: &str) -> BTreeMap<String, Vec<u8>> {
    let rows = sql(store, "SELECT site_id, tensor FROM sites ORDER BY site_id").await;
    strings(&rows, 0)
        .into_iter()
        .zip(binaries(&rows, 1))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_runs_rebuild_exactly_the_changed_plates() {
    let dir = tempfile::tempdir().unwrap();
    let raw = synth_raw(dir.path()).await;
    let store = dir.path().join("store").display().to_string();

    let first = cellshard_runtime::run(opts(&raw, &store)).await.unwrap();
    assert_eq!((first.plates_built, first.plates_unchanged), (2, 0));
    let before = site_tensors(&store).await;
    let versions = log_versions(&store);

    // Nothing changed: no pixel read, no file, no commit.
    let plan = cellshard_runtime::plan(&RunOptions {
        incremental: true,
        ..opts(&raw, &store)
    })
    .await
    .unwrap();
    assert!(
        plan.plates
            .iter()
            .all(|p| p.action == PlanAction::Unchanged),
        "{plan:?}"
    );
    assert_eq!((plan.plates_to_build, plan.bytes_to_read), (0, 0));
    let again = cellshard_runtime::run(RunOptions {
        incremental: true,
        ..opts(&raw, &store)
    })
    .await
    .unwrap();
    assert_eq!((again.plates_built, again.plates_unchanged), (0, 2));
    assert_eq!(
        again.bytes_in, 0,
        "an unchanged store is listed, never read"
    );
    assert_eq!(
        again.objects.unchanged,
        again.objects.discovered - again.objects.ignored
    );
    assert_eq!(log_versions(&store), versions, "no sites commit");
    assert_eq!(site_tensors(&store).await, before);

    // One object of plate 2 changes: plate 2 alone is rebuilt.
    let a = format!("{raw}/train/HUVEC-01/Plate2/B02_s1_w1.png");
    let b = format!("{raw}/train/HUVEC-01/Plate2/B02_s2_w1.png");
    std::fs::copy(&b, &a).unwrap();
    let plan = cellshard_runtime::plan(&RunOptions {
        incremental: true,
        ..opts(&raw, &store)
    })
    .await
    .unwrap();
    let actions: Vec<_> = plan
        .plates
        .iter()
        .map(|p| (p.plate.as_str(), p.action))
        .collect();
    assert_eq!(
        actions,
        [
            ("HUVEC-01/1", PlanAction::Unchanged),
            ("HUVEC-01/2", PlanAction::Changed)
        ]
    );
    let changed = cellshard_runtime::run(RunOptions {
        incremental: true,
        ..opts(&raw, &store)
    })
    .await
    .unwrap();
    assert_eq!((changed.plates_built, changed.plates_unchanged), (1, 1));
    let after = site_tensors(&store).await;
    assert_eq!(after.len(), before.len());
    for (site, tensor) in &after {
        if site.starts_with("HUVEC-01_1_") {
            assert_eq!(tensor, &before[site], "{site}: plate 1 was not rebuilt");
        }
    }
    assert_ne!(after["HUVEC-01_2_B02_1"], before["HUVEC-01_2_B02_1"]);

    // A forced run rebuilds both, to the same bytes.
    let forced = cellshard_runtime::run(opts(&raw, &store)).await.unwrap();
    assert_eq!(forced.plates_built, 2);
    assert_eq!(site_tensors(&store).await, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targeted_runs_take_the_named_plates_and_refuse_unknown_names() {
    let dir = tempfile::tempdir().unwrap();
    let raw = synth_raw(dir.path()).await;
    let store = dir.path().join("store").display().to_string();
    let one = PlateSelection {
        plates: vec![PlateKey {
            experiment: "HUVEC-01".into(),
            plate: 2,
        }],
        experiments: vec![],
        index: None,
    };
    let s = cellshard_runtime::run(RunOptions {
        selection: one,
        ..opts(&raw, &store)
    })
    .await
    .unwrap();
    assert_eq!(s.plates_built, 1);
    assert_eq!(s.objects.unselected, 36, "plate 1's 6 sites x 6 channels");
    let plates = strings(&sql(&store, "SELECT DISTINCT plate FROM sites").await, 0);
    assert_eq!(plates, ["2"]);

    let by_experiment = PlateSelection::parse(&[], &["HUVEC-01".into()]).unwrap();
    let s = cellshard_runtime::run(RunOptions {
        selection: by_experiment,
        incremental: true,
        ..opts(&raw, &store)
    })
    .await
    .unwrap();
    assert_eq!((s.plates_built, s.plates_unchanged), (1, 1));

    let unknown = PlateSelection::parse(&["HUVEC-01/9".into()], &["RPE-99".into()]).unwrap();
    let err = cellshard_runtime::run(RunOptions {
        selection: unknown,
        ..opts(&raw, &store)
    })
    .await
    .unwrap_err();
    assert!(
        matches!(err, cellshard_runtime::Error::Selection(_)),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("plate HUVEC-01/9") && msg.contains("experiment RPE-99"),
        "{msg}"
    );
    assert!(PlateSelection::parse(&["HUVEC-01".into()], &[]).is_err());

    // One plate per index, in listing order; past the end is an error naming the count.
    let second = PlateSelection {
        index: Some(1),
        ..Default::default()
    };
    let s = cellshard_runtime::run(RunOptions {
        selection: second.clone(),
        ..opts(&raw, &store)
    })
    .await
    .unwrap();
    assert_eq!((s.plates_built, s.objects.unselected), (1, 36));
    let plan = cellshard_runtime::plan(&RunOptions {
        selection: second,
        ..opts(&raw, &store)
    })
    .await
    .unwrap();
    assert_eq!(plan.plates.len(), 1);
    assert_eq!(plan.plates[0].plate, "HUVEC-01/2");
    let past = PlateSelection {
        index: Some(2),
        ..Default::default()
    };
    let err = cellshard_runtime::run(RunOptions {
        selection: past,
        ..opts(&raw, &store)
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("has 2 selected plates"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_plates_are_reported_and_pruned_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let raw = synth_raw(dir.path()).await;
    let store = dir.path().join("store").display().to_string();
    cellshard_runtime::run(opts(&raw, &store)).await.unwrap();
    std::fs::remove_dir_all(format!("{raw}/train/HUVEC-01/Plate2")).unwrap();

    let s = cellshard_runtime::run(RunOptions {
        incremental: true,
        ..opts(&raw, &store)
    })
    .await
    .unwrap();
    assert_eq!(s.plates_vanished, ["HUVEC-01/2"]);
    assert_eq!((s.plates_pruned, s.plates_unchanged), (0, 1));
    let count = |t: &'static str| {
        let store = store.clone();
        async move {
            strings(
                &sql(&store, &format!("SELECT count(*) FROM {t} WHERE plate = 2")).await,
                0,
            )
        }
    };
    assert_eq!(count("sites").await, ["6"], "reported, not removed");

    let mut targeted = opts(&raw, &store);
    targeted.prune = true;
    targeted.selection = PlateSelection::parse(&["HUVEC-01/1".into()], &[]).unwrap();
    let err = cellshard_runtime::run(targeted).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("--prune needs a run over every plate"),
        "{err}"
    );

    let s = cellshard_runtime::run(RunOptions {
        incremental: true,
        prune: true,
        ..opts(&raw, &store)
    })
    .await
    .unwrap();
    assert_eq!(s.plates_pruned, 1);
    for t in ["sites", "plate_stats", "rejects"] {
        assert_eq!(count(t).await, ["0"], "{t}");
    }
    assert_eq!(
        strings(
            &sql(&store, "SELECT count(*) FROM sites WHERE plate = 1").await,
            0
        ),
        ["6"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plate_whose_live_build_lost_its_statistics_is_built_again() {
    let dir = tempfile::tempdir().unwrap();
    let raw = synth_raw(dir.path()).await;
    let store = dir.path().join("store").display().to_string();
    cellshard_runtime::run(opts(&raw, &store)).await.unwrap();

    // What a lost publish race leaves: tensors with no statistics for their build.
    let loc = cellshard_store::Location::parse(&format!("{store}/plate_stats"), &BTreeMap::new())
        .unwrap();
    let stats = cellshard_store::table::open_table(&loc, None)
        .await
        .unwrap()
        .unwrap();
    stats.delete().await.unwrap();
    let paired = "SELECT count(*) FROM sites s JOIN plate_stats p ON p.build_id = s.build_id AND p.channel = 1";
    assert_eq!(
        strings(
            &sql(&store, &format!("SELECT CAST(({paired}) AS VARCHAR)")).await,
            0
        ),
        ["0"]
    );

    let incremental = || RunOptions {
        incremental: true,
        ..opts(&raw, &store)
    };
    let plan = cellshard_runtime::plan(&incremental()).await.unwrap();
    assert!(
        plan.plates
            .iter()
            .all(|p| p.action == PlanAction::Incomplete),
        "{plan:?}"
    );
    let again = cellshard_runtime::run(incremental()).await.unwrap();
    assert_eq!((again.plates_built, again.plates_unchanged), (2, 0));
    let sites = strings(
        &sql(&store, "SELECT CAST(count(*) AS VARCHAR) FROM sites").await,
        0,
    );
    assert_eq!(
        strings(
            &sql(&store, &format!("SELECT CAST(({paired}) AS VARCHAR)")).await,
            0
        ),
        sites
    );
    let after = cellshard_runtime::run(incremental()).await.unwrap();
    assert_eq!((after.plates_built, after.plates_unchanged), (0, 2));
}
