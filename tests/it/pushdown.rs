//! Projection pushdown and partition pruning, proved by counting the bytes the object
//! store hands out (`Location::reads`, an instrumented store wrapper under every reader).

use std::collections::BTreeMap;

use cellshard_sql::{AsOf, Session};

use crate::*;

/// Live `sites` files and, per file, (path, file bytes, tensor column chunk bytes), read
/// straight from disk (not through the counted store).
async fn live_files(store: &str) -> Vec<(String, u64, u64)> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let root = cellshard_store::Location::parse(store, &BTreeMap::new()).unwrap();
    let table = cellshard_store::table::open_table(&root.child("sites"), None)
        .await
        .unwrap()
        .unwrap();
    let mut out = Vec::new();
    for uri in table.get_file_uris().unwrap() {
        let path = uri.strip_prefix("file://").unwrap_or(&uri).to_string();
        let file = std::fs::File::open(&path).unwrap();
        let size = file.metadata().unwrap().len();
        let reader = SerializedFileReader::new(file).unwrap();
        let mut tensor = 0u64;
        for rg in reader.metadata().row_groups() {
            for c in rg.columns() {
                if c.column_path().string() == "tensor" {
                    tensor += u64::try_from(c.compressed_size()).unwrap();
                }
            }
        }
        out.push((path, size, tensor));
    }
    assert!(!out.is_empty());
    out
}

/// Data bytes (not Delta log) fetched by one query, and the paths they came from.
async fn fetched(
    s: &Session,
    q: &str,
) -> (u64, Vec<String>, Vec<arrow::record_batch::RecordBatch>) {
    s.root.reads.record_paths(true);
    s.root.reads.reset();
    let rows = cellshard_sql::query(s, q).await.unwrap();
    let snap = s.root.reads.snapshot();
    (snap.data_bytes, snap.paths.keys().cloned().collect(), rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_queries_fetch_no_tensor_bytes_and_partition_filters_prune() {
    let (_dir, store) = crate::slt::fixture_store().await;
    let files = live_files(&store).await;
    let tensor_bytes: u64 = files.iter().map(|f| f.2).sum();
    let total_bytes: u64 = files.iter().map(|f| f.1).sum();
    let session = cellshard_sql::open_session(&store, &BTreeMap::new(), AsOf::Latest)
        .await
        .unwrap();

    // Projection: no tensor, no tensor bytes. Everything else in the files is far smaller
    // than one tensor column, so reading any tensor chunk would show.
    let (meta, _, rows) = fetched(
        &session,
        "SELECT cell_type, count(*) FROM sites GROUP BY 1 ORDER BY 1",
    )
    .await;
    assert_eq!(strings(&rows, 0), ["HUVEC", "RPE"]);
    let min_tensor_chunk = files.iter().map(|f| f.2).min().unwrap();
    assert!(
        meta <= total_bytes - tensor_bytes && meta < min_tensor_chunk,
        "metadata query fetched {meta} bytes; tensor chunks {tensor_bytes} of {total_bytes} file bytes"
    );

    // Metadata columns that must be read from the files (the query above is answered from
    // partition values and row counts alone): still no tensor bytes.
    let (cols, paths, rows) = fetched(
        &session,
        "SELECT well_type, count(*), avg(channel_mean[1]), max(source_paths[1]) FROM sites GROUP BY 1",
    )
    .await;
    assert!(rows.iter().map(|b| b.num_rows()).sum::<usize>() >= 2);
    assert!(
        cols > 0 && paths.len() == files.len(),
        "{cols} bytes from {paths:?}"
    );
    assert!(
        cols <= total_bytes - tensor_bytes && cols < min_tensor_chunk,
        "metadata-column query fetched {cols} bytes; tensor chunks {tensor_bytes} of {total_bytes} file bytes"
    );

    // The same rows with the tensor: every tensor chunk is fetched.
    let (full, _, rows) = fetched(
        &session,
        "SELECT cell_type, count(*), avg(tensor_mean(tensor, 1)) FROM sites GROUP BY 1",
    )
    .await;
    assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
    assert!(
        full >= tensor_bytes,
        "tensor query fetched {full} < {tensor_bytes}"
    );

    // Partition pruning: a filter on the partition column reads only that partition.
    let (pruned, paths, rows) = fetched(
        &session,
        "SELECT count(*), avg(tensor_mean(tensor, 1)) FROM sites WHERE experiment = 'HUVEC-01'",
    )
    .await;
    assert_eq!(strings(&rows, 0), ["6"]);
    assert!(!paths.is_empty());
    assert!(
        paths.iter().all(|p| p.contains("experiment=HUVEC-01/")),
        "{paths:?}"
    );
    let huvec_tensor: u64 = files
        .iter()
        .filter(|f| f.0.contains("experiment=HUVEC-01/"))
        .map(|f| f.2)
        .sum();
    assert!(
        pruned >= huvec_tensor && pruned < full,
        "{pruned} vs {huvec_tensor} / {full}"
    );

    // A metadata-only query on the other partition touches only its files.
    let (_, paths, rows) = fetched(
        &session,
        "SELECT count(*) FROM sites WHERE experiment = 'RPE-01' AND well_type = 'treatment'",
    )
    .await;
    assert!(strings(&rows, 0)[0].parse::<u32>().unwrap() <= 5);
    assert!(
        paths.iter().all(|p| p.contains("experiment=RPE-01/")),
        "{paths:?}"
    );
    eprintln!(
        "pushdown: {} live files, {total_bytes} bytes, tensor chunks {tensor_bytes}; count by cell_type {meta} B, metadata columns {cols} B, tensor query {full} B, HUVEC-01 only {pruned} B",
        files.len()
    );
}
