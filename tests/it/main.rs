//! End-to-end tests of cellshard, linked into one test binary.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod bad_input;
mod cluster;
mod crash;
mod discovery;
mod e2e;
mod embeddings;
mod export;
mod feed;
mod interop;
mod jump;
mod layout;
mod map;
mod pushdown;
mod qc;
mod race;
mod real_data;
mod rebuild;
mod s3;
mod slt;
mod tiff;
mod view;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::record_batch::RecordBatch;
use cellshard_core::{MetadataTable, Pipeline};
use cellshard_runtime::{RunOptions, RunSummary};

pub use cellshard_tests::repo;

/// The real RxRx1 test data in the repository: 40 PNGs and the Kaggle-dialect CSVs.
pub fn test_data() -> PathBuf {
    repo().join("tests/data/rxrx1")
}

/// The real RxRx1 design, as the repository carries it (zstd-compressed CSV).
pub fn design_file() -> String {
    repo()
        .join("data/rxrx1/metadata.csv.zst")
        .display()
        .to_string()
}

/// The real RxRx1 design (built into the binary).
pub fn design() -> MetadataTable {
    cellshard_synth::rxrx1_design().unwrap()
}

/// The test-sized synthetic set: HUVEC-01, 2 plates x 3 wells x 2 sites, 256x256 16-bit
/// (12 sites, 72 PNGs), for `pipelines/tiny.toml`.
pub fn tiny_synth(seed: u64) -> cellshard_synth::SynthConfig {
    cellshard_synth::SynthConfig {
        experiments: Some(vec!["HUVEC-01".into()]),
        plates: 2,
        wells: Some(3),
        sites: 2,
        size: 256,
        bit_depth: 16,
        seed,
        ..Default::default()
    }
}

/// A pipeline from `pipelines/`.
pub fn pipeline(name: &str) -> Pipeline {
    let path = repo().join("pipelines").join(name);
    Pipeline::from_toml(name, &std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Run a pipeline with source/metadata/sink overrides.
pub async fn run(
    p: Pipeline,
    source: &str,
    metadata: &[String],
    sink: &str,
    threads: usize,
) -> RunSummary {
    cellshard_runtime::run(RunOptions {
        source: Some(source.to_string()),
        metadata: metadata.to_vec(),
        sink: Some(sink.to_string()),
        threads,
        ..RunOptions::new(p)
    })
    .await
    .unwrap()
}

/// Run SQL over a store.
pub async fn sql(store: &str, q: &str) -> Vec<RecordBatch> {
    let ctx = cellshard_sql::open_session(store, &BTreeMap::new(), cellshard_sql::AsOf::Latest)
        .await
        .unwrap();
    cellshard_sql::query(&ctx, q).await.unwrap()
}

/// First column of a result as strings.
pub fn strings(batches: &[RecordBatch], col: usize) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let c = arrow::compute::cast(b.column(col), &arrow::datatypes::DataType::Utf8).unwrap();
        let c = c.as_string::<i32>();
        out.extend((0..c.len()).map(|i| {
            if c.is_null(i) {
                "NULL".to_string()
            } else {
                c.value(i).to_string()
            }
        }));
    }
    out
}

/// Binary column values.
pub fn binaries(batches: &[RecordBatch], col: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for b in batches {
        let c = b.column(col);
        match c.data_type() {
            arrow::datatypes::DataType::Binary => {
                out.extend(c.as_binary::<i32>().iter().map(|v| v.unwrap().to_vec()))
            }
            arrow::datatypes::DataType::LargeBinary => {
                out.extend(c.as_binary::<i64>().iter().map(|v| v.unwrap().to_vec()))
            }
            arrow::datatypes::DataType::BinaryView => {
                out.extend(c.as_binary_view().iter().map(|v| v.unwrap().to_vec()))
            }
            other => panic!("not binary: {other}"),
        }
    }
    out
}

/// Every file below `dir`, recursively.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p)
            } else {
                out.push(p)
            }
        }
    }
    out.sort();
    out
}

/// Reference implementation of the per-plate percentile normalization to u8, written
/// independently of the stages crate: nearest-rank percentiles over all pixels of the
/// plate, clip, scale with round-half-to-even.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a rank clamped to 1..=n, and a value scaled into 0..=255"
)]
pub fn reference_normalize(
    plate_pixels: &[Vec<u16>],
    low: f64,
    high: f64,
    site: &[u16],
) -> Vec<u8> {
    let mut all: Vec<u16> = plate_pixels.iter().flatten().copied().collect();
    all.sort_unstable();
    let n = all.len() as f64;
    // ceil(p/100*n), treating products within 1e-9 of an integer as that integer.
    let rank = |p: f64| {
        let x = p / 100.0 * n;
        let x = if (x - x.round()).abs() < 1e-9 * x.abs().max(1.0) {
            x.round()
        } else {
            x
        };
        (x.ceil().clamp(1.0, n) as usize) - 1
    };
    let (lo, hi) = (all[rank(low)] as f64, all[rank(high)] as f64);
    site.iter()
        .map(|&x| {
            if hi <= lo {
                return if f64::from(x) <= lo { 0 } else { 255 };
            }
            let v = (f64::from(x).clamp(lo, hi) - lo) * 255.0 / (hi - lo);
            let f = v.floor();
            let r = if v - f > 0.5 || (v - f == 0.5 && f % 2.0 == 1.0) {
                f + 1.0
            } else {
                f
            };
            r as u8
        })
        .collect()
}
