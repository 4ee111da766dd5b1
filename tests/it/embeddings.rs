//! The `embeddings` table: a model's rows are replaced in one commit, so a reader running
//! beside a writer sees the old rows or the new ones, never a mix; other models stay.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cellshard_store::Location;
use cellshard_store::embeddings::write_embeddings;

use crate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrite_is_atomic_and_leaves_other_models_alone() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("store").display().to_string();
    let root = Location::parse(&url, &BTreeMap::new()).unwrap();
    root.create_local_dir().unwrap();
    let ids = |p: &str, n: usize| (0..n).map(|i| format!("{p}{i}")).collect::<Vec<_>>();
    // Another model of another width, written once.
    write_embeddings(&root, "other", &ids("o", 3), 2, &[0.5; 6])
        .await
        .unwrap();
    // Version A: 4 rows of 1.0; version B: 2 rows of 2.0 (dim 4).
    write_embeddings(&root, "m", &ids("a", 4), 4, &[1.0; 16])
        .await
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (url, done) = (url.clone(), done.clone());
        tokio::spawn(async move {
            let (mut seen, mut reads) = (std::collections::BTreeSet::new(), 0);
            while !done.load(Ordering::Relaxed) {
                reads += 1;
                let b = sql(
                    &url,
                    "SELECT count(*), min(vector[1]), max(vector[1]), min(site_id), min(dim) FROM embeddings WHERE model = 'm'",
                )
                .await;
                let row: Vec<String> = (0..5).map(|c| strings(&b, c)[0].clone()).collect();
                assert!(
                    row == ["4", "1.0", "1.0", "a0", "4"] || row == ["2", "2.0", "2.0", "b0", "4"],
                    "a mix of two writes: {row:?}"
                );
                seen.insert(row[0].clone());
            }
            (seen, reads)
        })
    };
    for _ in 0..8 {
        write_embeddings(&root, "m", &ids("b", 2), 4, &[2.0; 8])
            .await
            .unwrap();
        write_embeddings(&root, "m", &ids("a", 4), 4, &[1.0; 16])
            .await
            .unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let (seen, reads) = reader.await.unwrap();
    // The reader ran through the writes and saw both versions.
    assert!(reads >= 5 && seen.len() == 2, "{reads} reads saw {seen:?}");
    let b = sql(
        &url,
        "SELECT model, count(*), min(dim), CAST(min(vector[2]) AS VARCHAR) FROM embeddings GROUP BY model ORDER BY model",
    )
    .await;
    assert_eq!(strings(&b, 0), ["m", "other"]);
    assert_eq!(strings(&b, 1), ["4", "3"]);
    assert_eq!(strings(&b, 2), ["4", "2"]);
    assert_eq!(strings(&b, 3), ["1.0", "0.5"]);
    // Bad input is refused with its reason, and nothing is written.
    let e = write_embeddings(&root, "m", &ids("c", 2), 4, &[1.0; 7])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("do not make vectors of 4"), "{e}");
    let b = sql(&url, "SELECT count(*) FROM embeddings WHERE model = 'm'").await;
    assert_eq!(strings(&b, 0), ["4"]);
}
