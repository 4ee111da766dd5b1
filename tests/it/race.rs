//! Concurrent writers on one plate: N runs of the same plate index race against one store,
//! half with one pipeline and half with another, for R rounds. After every round the plate
//! is one whole build (its tensors equal that pipeline's reference run), its live build has
//! its statistics, `validate --store` finds nothing incomplete, and every run has its own id.

use std::collections::{BTreeMap, BTreeSet};

use crate::crash::{content, references, spawn, synth};
use crate::*;

/// Writers and rounds (`CELLSHARD_RACE=WRITERS,ROUNDS` for a longer run).
fn size() -> (usize, usize) {
    std::env::var("CELLSHARD_RACE")
        .ok()
        .and_then(|v| {
            let (w, r) = v.split_once(',')?;
            Some((w.parse().ok()?, r.parse().ok()?))
        })
        .unwrap_or((3, 4))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_racing_on_one_plate_leave_it_whole_every_round() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw").display().to_string();
    synth(&raw, &BTreeMap::new()).await;
    let refs = references(&raw, dir.path()).await;
    let store = dir.path().join("store").display().to_string();
    let root = cellshard_store::Location::parse(&store, &BTreeMap::new()).unwrap();
    let spec = |pipeline: &str| {
        serde_json::json!({
            "source": raw, "sink": store, "pipeline": pipeline, "plate_index": 0,
        })
    };
    let (writers, rounds) = size();
    let (mut whole, mut winners) = (0, BTreeSet::new());
    for round in 0..rounds {
        let mut children: Vec<_> = (0..writers)
            .map(|i| spawn(&spec(if (i + round) % 2 == 0 { "a" } else { "b" }), None))
            .collect();
        for w in &mut children {
            let out = finish(w);
            assert!(out.0.success(), "round {round}: a writer failed: {}", out.1);
        }
        // The views: one build per plate, paired with its own statistics (checked inside).
        let seen = content(&store, &BTreeMap::new()).await;
        assert_eq!(
            seen.plates.len(),
            1,
            "round {round}: {:?}",
            seen.plates.keys()
        );
        for (plate, (pipe, tensors)) in &seen.plates {
            let r = &refs[usize::from(pipe == "tiny-b")];
            assert_eq!(
                Some(tensors),
                r.plates.get(plate).map(|p| &p.1),
                "round {round}: {plate} is not one whole build of {pipe}"
            );
            winners.insert(pipe.clone());
        }
        let check = cellshard_store::maintain::check_store(&root).await.unwrap();
        assert_eq!(check.plates, 1);
        assert!(
            check.incomplete.is_empty(),
            "round {round}: {:?}",
            check.incomplete
        );
        let live_stats = strings(
            &sql(
                &store,
                "SELECT CAST(count(*) AS VARCHAR) FROM plate_stats p \
                 WHERE p.build_id IN (SELECT DISTINCT build_id FROM sites)",
            )
            .await,
            0,
        );
        assert_eq!(live_stats, ["6"], "round {round}: one row per channel");
        let ids = strings(&sql(&store, "SELECT run_id FROM runs").await, 0);
        let distinct: BTreeSet<_> = ids.iter().collect();
        assert_eq!(ids.len(), writers * (round + 1), "round {round}: runs rows");
        assert_eq!(distinct.len(), ids.len(), "round {round}: run ids repeat");
        whole += 1;
    }
    eprintln!(
        "race: {rounds} rounds x {writers} writers on one plate: {whole} of {rounds} whole; \
         winning pipelines seen: {winners:?}"
    );
}

/// Wait for a child, draining its stderr first (a full pipe would stall it).
fn finish(child: &mut std::process::Child) -> (std::process::ExitStatus, String) {
    use std::io::Read;
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (child.wait().unwrap(), err)
}
