//! synth -> run -> sql on synthetic raw data, checked against an independent computation.

use std::collections::BTreeMap;
use std::fs::File;

use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::*;

async fn synth_tiny(dir: &Path) -> String {
    let raw = dir.join("raw");
    let cfg = tiny_synth(7);
    let loc =
        cellshard_store::Location::parse(&raw.display().to_string(), &BTreeMap::new()).unwrap();
    let report =
        cellshard_synth::write_dataset(loc.store.clone(), &loc.prefix, &design(), &cfg, None)
            .await
            .unwrap();
    assert_eq!(report.sites, 12);
    raw.display().to_string()
}

fn decode16(path: &Path) -> (u32, u32, Vec<u16>) {
    let bytes = std::fs::read(path).unwrap();
    let mut d = png::Decoder::new(std::io::Cursor::new(&bytes[..]));
    d.set_transformations(png::Transformations::IDENTITY);
    let mut r = d.read_info().unwrap();
    let mut buf = vec![0u8; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    assert_eq!(info.bit_depth, png::BitDepth::Sixteen);
    let px = buf[..info.buffer_size()]
        .chunks_exact(2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .collect();
    (info.width, info.height, px)
}

/// Naive 2x2 mean with round-half-to-even, then the centred crop.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "the rounded mean of four u16 samples, in 0..=65535"
)]
fn downsample_crop(w: u32, h: u32, px: &[u16], crop: u32) -> Vec<u16> {
    let (dw, dh) = (w / 2, h / 2);
    let (ox, oy) = ((dw - crop) / 2, (dh - crop) / 2);
    let mut out = Vec::new();
    for y in oy..oy + crop {
        for x in ox..ox + crop {
            let at = |xx: u32, yy: u32| f64::from(px[(yy * w + xx) as usize]);
            let m = (at(2 * x, 2 * y)
                + at(2 * x + 1, 2 * y)
                + at(2 * x, 2 * y + 1)
                + at(2 * x + 1, 2 * y + 1))
                / 4.0;
            let f = m.floor();
            let r = if m - f > 0.5 || (m - f == 0.5 && f % 2.0 == 1.0) {
                f + 1.0
            } else {
                f
            };
            out.push(r as u16);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synth_run_sql_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let raw = synth_tiny(dir.path()).await;
    let store_path = dir.path().join("store");
    let store = store_path.display().to_string();
    let md = vec![format!("{raw}/metadata.csv")];

    let s = run(pipeline("tiny.toml"), &raw, &md, &store, 2).await;
    assert_eq!(s.objects.discovered, 73, "{s:?}");
    assert_eq!(
        (s.objects.stored, s.objects.rejected, s.objects.ignored),
        (72, 0, 1)
    );
    assert_eq!((s.sites.discovered, s.sites.stored, s.plates), (12, 12, 2));
    assert_eq!(s.reject_fraction, 0.0);
    assert!(s.bytes_in > 0 && s.bytes_out > 0);

    // Partitions on disk: one cell type, one experiment; every shard holds one plate.
    let sites_dir = store_path.join("sites");
    let shards: Vec<PathBuf> = files(&sites_dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert!(!shards.is_empty());
    for shard in &shards {
        let rel = shard
            .strip_prefix(&sites_dir)
            .unwrap()
            .display()
            .to_string();
        assert!(
            rel.starts_with("cell_type=HUVEC/experiment=HUVEC-01/"),
            "{rel}"
        );
        let reader = SerializedFileReader::new(File::open(shard).unwrap()).unwrap();
        let meta = reader.metadata();
        let schema = meta.file_metadata().schema_descr();
        let tensor_idx = (0..schema.num_columns())
            .find(|&i| schema.column(i).name() == "tensor")
            .unwrap();
        let plate_idx = (0..schema.num_columns())
            .find(|&i| schema.column(i).name() == "plate")
            .unwrap();
        let mut plates = std::collections::BTreeSet::new();
        for rg in 0..meta.num_row_groups() {
            let rgm = meta.row_group(rg);
            let col = rgm.column(tensor_idx);
            assert!(
                matches!(col.compression(), parquet::basic::Compression::ZSTD(_)),
                "{:?}",
                col.compression()
            );
            assert!(col.statistics().is_none(), "tensor statistics must be off");
            assert!(
                col.dictionary_page_offset().is_none(),
                "tensor dictionary must be off"
            );
            // One value per data page.
            let mut pages = reader
                .get_row_group(rg)
                .unwrap()
                .get_column_page_reader(tensor_idx)
                .unwrap();
            let mut data_pages = 0;
            while let Some(page) = pages.get_next_page().unwrap() {
                if page.page_type() != parquet::basic::PageType::DICTIONARY_PAGE {
                    assert_eq!(page.num_values(), 1);
                    data_pages += 1;
                }
            }
            assert_eq!(data_pages as i64, rgm.num_rows());
            // The small columns are LZ4, so a reader opens them without zstd contexts.
            assert_eq!(
                rgm.column(plate_idx).compression(),
                parquet::basic::Compression::LZ4_RAW
            );
            let stats = rgm.column(plate_idx).statistics().unwrap();
            let (lo, hi) = match stats {
                parquet::file::statistics::Statistics::Int32(s) => {
                    (*s.min_opt().unwrap(), *s.max_opt().unwrap())
                }
                other => panic!("{other:?}"),
            };
            plates.insert(lo);
            plates.insert(hi);
        }
        assert_eq!(plates.len(), 1, "{rel} spans plates {plates:?}");
    }

    // Delta log: table creation plus one commit per plate.
    let log: Vec<PathBuf> = files(&sites_dir.join("_delta_log"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(log.len(), 3, "{log:?}");
    let commit = std::fs::read_to_string(&log[1]).unwrap();
    assert!(
        commit.contains("\"add\"") && commit.contains("\"experiment\":\"HUVEC-01\""),
        "{commit}"
    );

    // SQL: counts per plate and row order.
    let rows = sql(
        &store,
        "SELECT plate, count(*) FROM sites GROUP BY plate ORDER BY plate",
    )
    .await;
    assert_eq!(strings(&rows, 0), ["1", "2"]);
    assert_eq!(strings(&rows, 1), ["6", "6"]);
    let rows = sql(&store, "SELECT count(*) FROM plate_stats").await;
    assert_eq!(strings(&rows, 0), ["12"]);

    // Tensor bytes equal an independent computation of the whole transform for plate 1.
    let rows = sql(
        &store,
        "SELECT site_id, source_paths, tensor FROM sites WHERE plate = 1 ORDER BY well, site",
    )
    .await;
    let ids = strings(&rows, 0);
    let tensors = binaries(&rows, 2);
    assert_eq!(ids.len(), 6);
    let raw_dir = PathBuf::from(&raw);
    let mut cropped: Vec<Vec<Vec<u16>>> = Vec::new(); // [site][channel]
    for id in &ids {
        let parts: Vec<&str> = id.rsplitn(3, '_').collect(); // site, well, rest
        let (site, well) = (parts[0], parts[1]);
        let mut chans = Vec::new();
        for ch in 1..=6 {
            let p = raw_dir.join(format!("train/HUVEC-01/Plate1/{well}_s{site}_w{ch}.png"));
            let (w, h, px) = decode16(&p);
            chans.push(downsample_crop(w, h, &px, 64));
        }
        cropped.push(chans);
    }
    for (i, tensor) in tensors.iter().enumerate() {
        assert_eq!(tensor.len(), 6 * 64 * 64);
        for ch in 0..6 {
            let plate: Vec<Vec<u16>> = cropped.iter().map(|s| s[ch].clone()).collect();
            let expect = reference_normalize(&plate, 0.1, 99.9, &cropped[i][ch]);
            assert!(
                tensor[ch * 4096..(ch + 1) * 4096] == expect[..],
                "site {} channel {}",
                ids[i],
                ch + 1
            );
        }
    }

    // A rerun replaces each plate atomically: same rows, new files, old ones removed.
    let before = sql(&store, "SELECT site_id, tensor FROM sites ORDER BY site_id").await;
    let s2 = run(pipeline("tiny.toml"), &raw, &md, &store, 1).await;
    assert_eq!(s2.sites.stored, 12);
    let after = sql(&store, "SELECT site_id, tensor FROM sites ORDER BY site_id").await;
    assert_eq!(strings(&before, 0), strings(&after, 0));
    assert_eq!(
        binaries(&before, 1),
        binaries(&after, 1),
        "same inputs must give identical tensors"
    );
    let rows = sql(&store, "SELECT count(*) FROM plate_stats").await;
    assert_eq!(strings(&rows, 0), ["12"]);
    let rows = sql(&store, "SELECT count(*), count(DISTINCT run_id) FROM runs").await;
    assert_eq!(strings(&rows, 0), ["2"]);
    let log: Vec<PathBuf> = files(&sites_dir.join("_delta_log"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(log.len(), 5);
    let last = std::fs::read_to_string(log.last().unwrap()).unwrap();
    assert!(
        last.contains("\"remove\""),
        "the rerun must remove the plate's earlier files"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_read_budget_bounds_bytes_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let raw = synth_tiny(dir.path()).await;
    let md = vec![format!("{raw}/metadata.csv")];
    let mut p = pipeline("tiny.toml");
    p.source.max_inflight = "1MiB".parse().unwrap();
    let small = run(p, &raw, &md, &dir.path().join("a").display().to_string(), 2).await;
    // One tiny site is ~0.5 MB of PNGs: a 1 MiB budget admits about two at a time.
    let site_bytes = small.bytes_in / 12;
    assert!(
        small.peak_inflight_bytes <= 1 << 20,
        "{}",
        small.peak_inflight_bytes
    );
    assert!(
        small.peak_inflight_bytes >= site_bytes,
        "{} < {site_bytes}",
        small.peak_inflight_bytes
    );
    let big = run(
        pipeline("tiny.toml"),
        &raw,
        &md,
        &dir.path().join("b").display().to_string(),
        2,
    )
    .await;
    assert!(
        big.peak_inflight_bytes > small.peak_inflight_bytes,
        "{} vs {}",
        big.peak_inflight_bytes,
        small.peak_inflight_bytes
    );
    let a = sql(
        &dir.path().join("a").display().to_string(),
        "SELECT tensor FROM sites ORDER BY site_id",
    )
    .await;
    let b = sql(
        &dir.path().join("b").display().to_string(),
        "SELECT tensor FROM sites ORDER BY site_id",
    )
    .await;
    assert_eq!(binaries(&a, 0), binaries(&b, 0));
}

/// Site ids of each shard file of a store, by plate; a file's ids in row order.
fn shard_site_ids(store: &Path) -> BTreeMap<i32, Vec<Vec<String>>> {
    let mut out: BTreeMap<i32, Vec<Vec<String>>> = BTreeMap::new();
    for shard in files(&store.join("sites"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
    {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            File::open(&shard).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        let schema = batches[0].schema();
        let ids = strings(&batches, schema.index_of("site_id").unwrap());
        let plates = strings(&batches, schema.index_of("plate").unwrap());
        let plate: i32 = plates[0].parse().unwrap();
        assert!(
            plates.iter().all(|p| p == &plates[0]),
            "{}",
            shard.display()
        );
        out.entry(plate).or_default().push(ids);
    }
    // Files in the order of their first site (file names are random).
    out.values_mut().for_each(|v| v.sort());
    out
}

/// A plate bigger than `target_file_size` is cut into files of whole sites, in site order;
/// the cut depends on the pipeline only, so one thread and two write the same files, and the
/// tensors equal those of a run that writes one file per plate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plates_are_cut_into_files_in_site_order_whatever_the_threads() {
    let dir = tempfile::tempdir().unwrap();
    let raw = synth_tiny(dir.path()).await;
    let md = vec![format!("{raw}/metadata.csv")];
    let tensor = 6 * 64 * 64u64;
    let cut = |threads: usize, name: &str| {
        let mut p = pipeline("tiny.toml");
        // Two sites per file, one per row group.
        p.sink.target_file_size = cellshard_core::ByteSize(2 * tensor + 100);
        p.sink.row_group_size = cellshard_core::ByteSize(tensor);
        let store = dir.path().join(name);
        let raw = raw.clone();
        let md = md.clone();
        async move {
            let s = run(p, &raw, &md, &store.display().to_string(), threads).await;
            assert_eq!(s.sites.stored, 12);
            store
        }
    };
    let one = cut(1, "one").await;
    let two = cut(2, "two").await;
    let files_one = shard_site_ids(&one);
    assert_eq!(files_one, shard_site_ids(&two));
    for (plate, files) in &files_one {
        assert_eq!(files.len(), 3, "plate {plate}: {files:?}");
        assert!(
            files.iter().all(|f| f.len() == 2),
            "plate {plate}: {files:?}"
        );
        // Whole, in order: the files of a plate concatenate to its sorted site ids.
        let all: Vec<String> = files.concat();
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(all, sorted, "plate {plate}");
    }
    let whole = dir.path().join("whole");
    run(
        pipeline("tiny.toml"),
        &raw,
        &md,
        &whole.display().to_string(),
        2,
    )
    .await;
    assert_eq!(
        shard_site_ids(&whole).values().map(Vec::len).sum::<usize>(),
        2
    );
    let q = "SELECT site_id, tensor FROM sites ORDER BY site_id";
    let a = sql(&two.display().to_string(), q).await;
    let b = sql(&whole.display().to_string(), q).await;
    assert_eq!(strings(&a, 0), strings(&b, 0));
    assert_eq!(binaries(&a, 1), binaries(&b, 1));
}
