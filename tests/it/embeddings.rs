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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nearest_returns_the_brute_force_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("store").display().to_string();
    let root = Location::parse(&url, &BTreeMap::new()).unwrap();
    root.create_local_dir().unwrap();
    let (n, dim) = (3000usize, 24usize);
    // Deterministic pseudo-random vectors.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let values: Vec<f32> = (0..n * dim)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    let ids: Vec<String> = (0..n).map(|i| format!("s{i:05}")).collect();
    write_embeddings(&root, "m", &ids, dim, &values)
        .await
        .unwrap();
    let norm = |v: &[f32]| v.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
    let cos = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum::<f64>()
            / (norm(a) * norm(b))
    };
    let row = |i: usize| &values[i * dim..(i + 1) * dim];
    // By site: itself left out.
    let q = 17;
    let mut want: Vec<(usize, f64)> = (0..n)
        .filter(|&i| i != q)
        .map(|i| (i, cos(row(i), row(q))))
        .collect();
    want.sort_by(|a, b| b.1.total_cmp(&a.1));
    let b = sql(
        &url,
        "SELECT rank, site_id, similarity FROM nearest('embeddings', 'm', 's00017', 10)",
    )
    .await;
    assert_eq!(
        strings(&b, 0),
        (1..=10).map(|r| r.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(
        strings(&b, 1),
        want[..10]
            .iter()
            .map(|(i, _)| ids[*i].clone())
            .collect::<Vec<_>>()
    );
    for (got, (_, w)) in strings(&b, 2).iter().zip(&want) {
        assert!((got.parse::<f64>().unwrap() - w).abs() < 1e-5, "{got} {w}");
    }
    // By vector: the query's own row is its nearest.
    let arr = row(42)
        .iter()
        .map(|v| format!("{v:e}"))
        .collect::<Vec<_>>()
        .join(", ");
    let b = sql(
        &url,
        &format!("SELECT site_id FROM nearest('embeddings', 'm', make_array({arr}), 3)"),
    )
    .await;
    assert_eq!(strings(&b, 0)[0], "s00042");
    // Errors name the cause.
    let ctx = cellshard_sql::open_session(&url, &BTreeMap::new(), cellshard_sql::AsOf::Latest)
        .await
        .unwrap();
    for (q, why) in [
        (
            "SELECT * FROM nearest('embeddings', 'm', 'nope', 3)",
            "has no vector",
        ),
        (
            "SELECT * FROM nearest('embeddings', 'other', 's00001', 3)",
            "no vectors of model",
        ),
        (
            "SELECT * FROM nearest('embeddings', 'm', 's00001', 0)",
            "k must be",
        ),
        (
            "SELECT * FROM nearest('embeddings', 'm', make_array(1.0, 2.0), 3)",
            "the query has 2 values",
        ),
    ] {
        let e = cellshard_sql::query(&ctx, q).await.unwrap_err().to_string();
        assert!(e.contains(why), "{q}: {e}");
    }
}
