//! The training feed's guarantees, against a real store.

use std::collections::{BTreeMap, BTreeSet};

use cellshard_feed::{Cursor, Error, Feed, FeedOptions, SplitSpec, Tail};

use crate::*;

/// A store of 48 sites (2 experiments x 2 plates x 6 wells x 2 sites, 6x64x64 uint8).
async fn store(dir: &Path) -> String {
    let raw = dir.join("raw").display().to_string();
    let loc = cellshard_store::Location::parse(&raw, &BTreeMap::new()).unwrap();
    let cfg = cellshard_synth::SynthConfig {
        experiments: Some(vec!["HUVEC-01".into(), "RPE-01".into()]),
        wells: Some(6),
        ..tiny_synth(21)
    };
    cellshard_synth::write_dataset(loc.store.clone(), &loc.prefix, &design(), &cfg, None)
        .await
        .unwrap();
    let store = dir.join("store").display().to_string();
    let s = run(
        pipeline("tiny.toml"),
        &raw,
        &[format!("{raw}/metadata.csv")],
        &store,
        2,
    )
    .await;
    assert_eq!(s.sites.stored, 48);
    store
}

fn opts(store: &str, g: u64, w: u64, rank: u64) -> FeedOptions {
    FeedOptions {
        seed: 5,
        global_batch: g,
        world_size: w,
        rank,
        ..FeedOptions::new(store)
    }
}

/// Every rank's samples of every step of an epoch: `[step][rank] -> slots`.
async fn epoch(store: &str, g: u64, w: u64, tail: Tail, e: u64) -> Vec<Vec<Vec<Option<u64>>>> {
    let mut feeds = Vec::new();
    for r in 0..w {
        feeds.push(
            Feed::open(FeedOptions {
                tail,
                ..opts(store, g, w, r)
            })
            .await
            .unwrap(),
        );
    }
    let steps = feeds[0].steps(0);
    assert!(
        feeds.iter().all(|f| f.steps(0) == steps),
        "every rank runs the same steps"
    );
    (0..steps)
        .map(|t| feeds.iter().map(|f| f.samples(e, t * g)).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epochs_are_topology_free_exactly_once_and_equal_in_steps() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let n = 48u64;
    let global = |steps: &Vec<Vec<Vec<Option<u64>>>>| -> Vec<u64> {
        steps
            .iter()
            .flatten()
            .flatten()
            .flatten()
            .copied()
            .collect()
    };
    let one = epoch(&store, 10, 1, Tail::PadMasked, 0).await;
    assert_eq!(one.len(), 5);
    for w in [2, 3, 4] {
        let many = epoch(&store, 10, w, Tail::PadMasked, 0).await;
        assert_eq!(global(&many), global(&one), "W={w}: the same global order");
        for step in &many {
            let sizes: Vec<usize> = step.iter().map(|s| s.iter().flatten().count()).collect();
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(hi - lo <= 1, "W={w}: {sizes:?}");
            assert!(
                step.iter().all(|s| s.len() == step[0].len()),
                "fixed shapes"
            );
        }
    }
    let mut seen = global(&one);
    seen.sort_unstable();
    assert_eq!(seen, (0..n).collect::<Vec<_>>(), "every row exactly once");
    let other = epoch(&store, 10, 1, Tail::PadMasked, 1).await;
    assert_ne!(global(&other), global(&one), "another epoch, another order");

    // Shuffle quality: an exact shuffle mixes plates more than runs of 8 rows do.
    let exact = Feed::open(opts(&store, 12, 1, 0))
        .await
        .unwrap()
        .shuffle_quality(0);
    let clumped = Feed::open(FeedOptions {
        clump: 8,
        ..opts(&store, 12, 1, 0)
    })
    .await
    .unwrap()
    .shuffle_quality(0);
    assert!(
        exact.plates_per_batch > clumped.plates_per_batch,
        "{exact:?} {clumped:?}"
    );
    assert!(
        exact.diff_entropy_bits > clumped.diff_entropy_bits,
        "{exact:?} {clumped:?}"
    );

    let dropped = global(&epoch(&store, 10, 3, Tail::Drop, 0).await);
    assert_eq!(dropped.len(), 40);
    let repeated = global(&epoch(&store, 10, 3, Tail::Repeat, 0).await);
    assert_eq!(repeated.len(), 50);
    assert_eq!(repeated.iter().collect::<BTreeSet<_>>().len(), 48);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_hold_the_stored_tensors_and_cursors_resume_anywhere() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let rows = sql(&store, "SELECT site_id, tensor FROM sites").await;
    let stored: BTreeMap<String, Vec<u8>> = strings(&rows, 0)
        .into_iter()
        .zip(binaries(&rows, 1))
        .collect();

    let feed = Feed::open(FeedOptions {
        columns: vec!["well_type".into(), "plate".into()],
        ..opts(&store, 8, 2, 1)
    })
    .await
    .unwrap();
    assert_eq!(feed.tensor_dims(), [6, 64, 64]);
    let len = feed.tensor_bytes();
    for t in 0..feed.steps(0) {
        let b = feed.read(2, t * 8).await.unwrap();
        assert_eq!(b.tensors.len(), 4 * len);
        assert_eq!(b.meta.num_rows(), 4);
        for (slot, site) in b.site_ids.iter().enumerate() {
            let got = &b.tensors[slot * len..(slot + 1) * len];
            match site {
                Some(s) => assert_eq!(got, &stored[s][..], "{s}"),
                None => assert!(got.iter().all(|&x| x == 0) && !b.valid[slot]),
            }
        }
    }

    // Resume after 2 of 6 steps: with the same G on another world size the global batches
    // from there on are the same; with another G every unseen sample comes exactly once.
    let uninterrupted = epoch(&store, 8, 2, Tail::PadMasked, 3).await;
    let cursor = feed.cursor(3, 2 * 8);
    let bytes = cursor.to_bytes();
    assert_eq!(bytes.len(), cellshard_feed::cursor::CURSOR_BYTES);
    let cursor = Cursor::from_bytes(&bytes).unwrap();
    let mut resumed = Vec::new();
    for r in 0..4 {
        let f = Feed::from_cursor(opts(&store, 8, 4, r), &cursor)
            .await
            .unwrap();
        assert_eq!(f.steps(cursor.position), 4);
        resumed.push(f);
    }
    for t in 0..4u64 {
        let got: Vec<u64> = resumed
            .iter()
            .flat_map(|f| f.samples(3, cursor.position + t * 8))
            .flatten()
            .collect();
        let want: Vec<u64> = uninterrupted[2 + usize::try_from(t).unwrap()]
            .iter()
            .flatten()
            .flatten()
            .copied()
            .collect();
        assert_eq!(got, want, "step {}", 2 + t);
    }
    let seen_before: Vec<u64> = uninterrupted[..2]
        .iter()
        .flatten()
        .flatten()
        .flatten()
        .copied()
        .collect();
    let g5 = Feed::from_cursor(opts(&store, 5, 3, 0), &cursor)
        .await
        .unwrap();
    let mut rest = Vec::new();
    for t in 0..g5.steps(cursor.position) {
        for r in 0..3 {
            let f = Feed::from_cursor(opts(&store, 5, 3, r), &cursor)
                .await
                .unwrap();
            rest.extend(f.samples(3, cursor.position + t * 5).into_iter().flatten());
        }
    }
    let mut all: Vec<u64> = seen_before.into_iter().chain(rest).collect();
    all.sort_unstable();
    assert_eq!(all, (0..48).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_resumes_only_on_the_store_it_was_taken_on() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (store(a.path()).await, store(b.path()).await);
    let cursor = Feed::open(opts(&a, 8, 1, 0)).await.unwrap().cursor(0, 8);
    assert!(Feed::from_cursor(opts(&a, 8, 1, 0), &cursor).await.is_ok());
    // Same pipeline, same images, same version and selection: only the store differs.
    let Err(e) = Feed::from_cursor(opts(&b, 8, 1, 0), &cursor).await else {
        panic!("a cursor of another store is accepted");
    };
    assert!(matches!(e, Error::Usage(_)), "{e:?}");
    assert!(e.to_string().contains("another store"), "{e}");
    // A format-1 cursor (no store identity, from an earlier release) still resumes.
    let mut v1 = b"CSF\x01".to_vec();
    for v in [
        cursor.version.unsigned_abs(),
        cursor.selection,
        cursor.seed,
        0,
        8,
    ] {
        v1.extend(v.to_le_bytes());
    }
    v1.extend(8u32.to_le_bytes());
    v1.extend(1u32.to_le_bytes());
    v1.push(cursor.to_bytes()[cellshard_feed::cursor::CURSOR_BYTES - 1]);
    let old = Cursor::from_bytes(&v1).unwrap();
    assert_eq!(old.store, [0; 16]);
    assert!(Feed::from_cursor(opts(&b, 8, 1, 0), &old).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_reads_its_pinned_version_and_refuses_bad_options_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let feed = Feed::open(FeedOptions {
        predicate: Some("well_type = 'treatment' AND plate = 1".into()),
        ..opts(&store, 4, 1, 0)
    })
    .await
    .unwrap();
    let want = strings(
        &sql(
            &store,
            "SELECT count(*) FROM sites WHERE well_type = 'treatment' AND plate = 1",
        )
        .await,
        0,
    );
    assert_eq!(feed.len().to_string(), want[0]);
    let before = feed.read(0, 0).await.unwrap();

    // A later commit (a rebuild with other percentiles) does not reach a running epoch.
    let raw = dir.path().join("raw").display().to_string();
    let mut p = pipeline("tiny.toml");
    let text = std::fs::read_to_string(repo().join("pipelines/tiny.toml")).unwrap();
    p = Pipeline::from_toml(
        "b",
        &text.replace("kind = \"normalize\"", "kind = \"normalize\"\nlow = 5.0"),
    )
    .unwrap_or(p);
    run(p, &raw, &[format!("{raw}/metadata.csv")], &store, 2).await;
    let after = feed.read(0, 0).await.unwrap();
    assert_eq!(after.tensors, before.tensors);
    let latest = Feed::open(FeedOptions {
        predicate: Some("well_type = 'treatment' AND plate = 1".into()),
        ..opts(&store, 4, 1, 0)
    })
    .await
    .unwrap();
    assert!(latest.version() > feed.version());
    assert_ne!(latest.read(0, 0).await.unwrap().tensors, before.tensors);

    let err = |o: FeedOptions| async move { Feed::open(o).await.unwrap_err() };
    let e = err(FeedOptions {
        predicate: Some("no_such_column = 1".into()),
        ..opts(&store, 4, 1, 0)
    })
    .await;
    assert!(
        matches!(e, Error::Predicate { .. }) && e.to_string().contains("no_such_column"),
        "{e}"
    );
    let e = err(FeedOptions {
        predicate: Some("plate = = 1".into()),
        ..opts(&store, 4, 1, 0)
    })
    .await;
    assert!(matches!(e, Error::Predicate { .. }), "{e}");
    let e = err(FeedOptions {
        version: Some(999),
        ..opts(&store, 4, 1, 0)
    })
    .await;
    assert!(e.to_string().contains("999"), "{e}");
    let missing = dir.path().join("nope").display().to_string();
    let e = err(opts(&missing, 4, 1, 0)).await;
    assert!(e.to_string().contains("nope"), "{e}");
    let e = err(opts(&store, 4, 2, 2)).await;
    assert!(matches!(e, Error::Usage(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splits_keep_the_sites_of_a_well_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let wells = |take: &str| {
        let store = store.clone();
        let take = take.to_string();
        async move {
            let f = Feed::open(FeedOptions {
                split: Some(SplitSpec::parse("train:0.5,val:0.5", &take).unwrap()),
                ..opts(&store, 4, 1, 0)
            })
            .await
            .unwrap();
            let ids: BTreeSet<String> = f.site_ids().iter().cloned().collect();
            ids
        }
    };
    let (train, val) = (wells("train").await, wells("val").await);
    assert_eq!(train.len() + val.len(), 48);
    assert!(!train.is_empty() && !val.is_empty());
    let well = |s: &String| s.rsplit_once('_').unwrap().0.to_string();
    let train_wells: BTreeSet<String> = train.iter().map(well).collect();
    assert!(
        val.iter().all(|s| !train_wells.contains(&well(s))),
        "a well in both splits"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_ahead_gives_the_same_batches_for_any_thread_count_and_budget() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    // Per step: tensors and samples.
    type Steps = Vec<(Vec<u8>, Vec<Option<u64>>)>;
    let mut reference: Option<Steps> = None;
    // One decode thread, no read-ahead (a memory budget of exactly one batch) and a read
    // budget smaller than one page; then all cores, deep read-ahead and a large budget.
    let probe = Feed::open(opts(&store, 7, 2, 1)).await.unwrap();
    let one_batch = probe.tensor_bytes() as u64 * probe.rank_batch();
    for (threads, read_budget, memory_budget) in [(1, 1, one_batch), (2, 1 << 30, 1 << 30)] {
        let feed = std::sync::Arc::new(
            Feed::open(FeedOptions {
                threads,
                read_budget,
                memory_budget,
                ..opts(&store, 7, 2, 1)
            })
            .await
            .unwrap(),
        );
        assert_eq!(feed.threads(), threads);
        let starts: Vec<u64> = (0..feed.steps(0)).map(|t| t * 7).collect();
        let mut stream = feed.stream(4, starts.clone());
        let mut got = Vec::new();
        while let Some(b) = stream.next().await {
            let b = b.unwrap();
            assert_eq!(b.start, starts[got.len()]);
            let direct = feed.read(4, b.start).await.unwrap();
            assert_eq!(direct.tensors, b.tensors);
            let len = feed.tensor_bytes();
            for (slot, s) in b.samples.iter().enumerate() {
                let t = &b.tensors[slot * len..(slot + 1) * len];
                assert_eq!(s.is_none(), t.iter().all(|&x| x == 0), "slot {slot}");
            }
            got.push((b.tensors.clone(), b.samples));
            // Reused buffers hold older batches: padded slots must still come out zero.
            feed.recycle(b.tensors);
            feed.recycle(direct.tensors);
        }
        assert_eq!(got.len(), 7);
        match &reference {
            None => reference = Some(got),
            Some(r) => assert!(r == &got, "the batches changed with the threads or budgets"),
        }
    }
    // A stream dropped half way stops its reads; the feed goes on.
    let feed = std::sync::Arc::new(Feed::open(opts(&store, 7, 1, 0)).await.unwrap());
    let mut stream = feed.stream(0, vec![0, 7, 14, 21]);
    assert!(stream.next().await.unwrap().is_ok());
    drop(stream);
    assert_eq!(
        feed.read(0, 42)
            .await
            .unwrap()
            .valid
            .iter()
            .filter(|v| **v)
            .count(),
        6
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_pruning_opens_only_the_files_a_predicate_can_match() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let count = |pred: &'static str| {
        let store = store.clone();
        async move {
            let rows = sql(&store, &format!("SELECT count(*) FROM sites WHERE {pred}")).await;
            strings(&rows, 0)[0].parse::<u64>().unwrap()
        }
    };
    let all = Feed::open(opts(&store, 4, 1, 0)).await.unwrap().files();
    let pred = "(cell_type = 'HUVEC') AND well_type = 'treatment'";
    let huvec = Feed::open(FeedOptions {
        predicate: Some(pred.into()),
        ..opts(&store, 4, 1, 0)
    })
    .await
    .unwrap();
    let files = huvec.files();
    assert!(!files.is_empty() && files.len() < all.len(), "{files:?}");
    assert!(
        files.iter().all(|f| f.contains("cell_type=HUVEC")),
        "{files:?}"
    );
    assert_eq!(huvec.len(), count(pred).await);
    // An OR across a partition column and another column prunes nothing.
    let either = "cell_type = 'HUVEC' OR well_type = 'treatment'";
    let f = Feed::open(FeedOptions {
        predicate: Some(either.into()),
        ..opts(&store, 4, 1, 0)
    })
    .await
    .unwrap();
    assert_eq!(f.files(), all);
    assert_eq!(f.len(), count(either).await);
}

/// Every tensor of an epoch, by sample, through the feed.
async fn tensors_by_sample(store: &str) -> BTreeMap<u64, Vec<u8>> {
    let feed = Feed::open(opts(store, 8, 1, 0)).await.unwrap();
    let per = feed.tensor_bytes();
    let mut out = BTreeMap::new();
    for step in 0..feed.steps(0) {
        let b = feed.read(0, step * 8).await.unwrap();
        for (slot, s) in b.samples.iter().enumerate() {
            if let Some(s) = s {
                out.insert(*s, b.tensors[slot * per..(slot + 1) * per].to_vec());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lz4_and_uncompressed_stores_feed_the_same_tensors_as_zstd() {
    let dir = tempfile::tempdir().unwrap();
    let zstd = store(dir.path()).await;
    let raw = dir.path().join("raw").display().to_string();
    let want = tensors_by_sample(&zstd).await;
    assert_eq!(want.len(), 48);
    let mut sizes = BTreeMap::new();
    for codec in ["lz4", "none"] {
        let mut p = pipeline("tiny.toml");
        p.sink.tensor_codec = match codec {
            "lz4" => cellshard_core::pipeline::TensorCodec::Lz4,
            _ => cellshard_core::pipeline::TensorCodec::None,
        };
        assert_ne!(
            p.hash(),
            pipeline("tiny.toml").hash(),
            "the codec is in the hash"
        );
        let out = dir.path().join(codec).display().to_string();
        let s = run(p, &raw, &[format!("{raw}/metadata.csv")], &out, 2).await;
        assert_eq!(s.sites.stored, 48);
        assert_eq!(tensors_by_sample(&out).await, want, "{codec}");
        let feed = Feed::open(opts(&out, 8, 1, 0)).await.unwrap();
        let (rate, name) = feed.codec_limit(4, 0.01, 1).await.unwrap();
        assert_eq!(name, codec);
        assert!(rate > 0.0);
        sizes.insert(codec, feed.bytes_to_read());
        // Other readers: DataFusion reads the column in its codec.
        let q = "SELECT CAST(sum(tensor_mean(tensor, 2)) AS VARCHAR) FROM sites";
        assert_eq!(
            strings(&sql(&out, q).await, 0),
            strings(&sql(&zstd, q).await, 0),
            "{codec}"
        );
    }
    let zstd_bytes = Feed::open(opts(&zstd, 8, 1, 0))
        .await
        .unwrap()
        .bytes_to_read();
    assert!(
        zstd_bytes < sizes["lz4"] && sizes["lz4"] < sizes["none"],
        "zstd {zstd_bytes}, {sizes:?}"
    );
}
